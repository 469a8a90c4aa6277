"""Pure parsing of what CVS hands a `CVSROOT/loginfo` command, and the message made of it.

CVS 1.12 with `ALL cvsmsg loginfo %p %{sVv}` passes the directory (relative to the
repository root) and, per file, name / old revision / new revision as separate arguments,
`NONE` for an added file's old and a removed file's new revision. The log text comes on
stdin. It runs once per committed directory, and also for `cvs import`
(`"- Imported sources" NONE NONE`) and `cvs add` of a directory (`"- New directory" NONE
NONE`). With `UseNewInfoFmtStrings=no` the same arrives as one argument,
`"proj a.txt,1.1,1.2 b.txt,NONE,1.1"`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cvsmsg.config import LoginfoRule
from cvsmsg.cvs import COMMIT_WATCHES, WatchNotice, notice_directory
from cvsmsg.errors import RecipientError, UsageError
from cvsmsg.recipients import normalize_recipient

COMMIT = "commit"
IMPORT = "import"
NEW_DIRECTORY = "new directory"
_SPECIAL = {"- Imported sources": IMPORT, "- New directory": NEW_DIRECTORY}

NONE = "NONE"
_REVISION = re.compile(r"NONE|[0-9]+(?:\.[0-9]+)*")
# The old format's one argument: "DIR name,old,new name,old,new". Names may hold spaces
# (not commas); revisions cannot, which is what lets us find the boundaries.
_OLD_TRIPLE = re.compile(r"(?P<name>[^,]+?),(?P<old>NONE|[0-9.]+),(?P<new>NONE|[0-9.]+)(?: |$)")
_OLD_SPECIAL = re.compile(
    r"^(?P<dir>.*?) (?P<what>- (?:Imported sources|New directory)),NONE,NONE$"
)

USAGE_HINT = "use 'ALL cvsmsg loginfo %p %{sVv}' in CVSROOT/loginfo"
_SECTIONS = {"Modified Files:": "modified", "Added Files:": "added", "Removed Files:": "removed"}


@dataclass(frozen=True)
class FileChange:
    """One file of a commit; `old` is None when added, `new` is None when removed."""

    name: str
    old: str | None
    new: str | None

    @property
    def change(self) -> str:
        """`added`, `modified` or `removed`."""
        if self.old is None:
            return "added"
        if self.new is None:
            return "removed"
        return "modified"


@dataclass(frozen=True)
class ImportStatus:
    """What `cvs import` appends to the log text."""

    vendor_tag: str = ""
    release_tags: str = ""
    files: tuple[str, ...] = ()  # "N proj/x.txt", "U …", "C …" as CVS prints them
    summary: str = ""  # "No conflicts created by this import", or the merge advice


@dataclass(frozen=True)
class LogText:
    """The parts of the stdin text we use; empty when CVS's layout is not found."""

    update_of: str = ""  # the repository directory, e.g. /srv/cvsroot/proj/sub
    in_directory: str = ""  # host:path of the committer's working directory
    tag: str = ""  # the branch committed on ("      Tag: BR1")
    sections: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    message: str = ""
    import_status: ImportStatus | None = None


@dataclass(frozen=True)
class Commit:
    """One loginfo run: a directory, what happened in it, and the log text."""

    directory: str
    kind: str  # COMMIT, IMPORT or NEW_DIRECTORY
    files: tuple[FileChange, ...]
    log: LogText


def _revision(value: str) -> str | None:
    return None if value == NONE else value


def _triples(values: Sequence[str]) -> tuple[FileChange, ...] | None:
    """Files from name/old/new triples; None when the values do not look like that."""
    if len(values) % 3:
        return None
    files = []
    for i in range(0, len(values), 3):
        name, old, new = values[i : i + 3]
        if not _REVISION.fullmatch(old) or not _REVISION.fullmatch(new) or not name:
            return None
        files.append(FileChange(name, _revision(old), _revision(new)))
    return tuple(files)


def _directory_from_text(log: LogText, cvsroot: str | None) -> str:
    """The repository-relative directory from `Update of …`, when %p was not passed."""
    path = log.update_of
    root = (cvsroot or "").rpartition(":")[2].rstrip("/")  # ":local:/srv/cvs" -> /srv/cvs
    if root and path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return path


def _parse_old_format(value: str, log: LogText) -> tuple[str, str, tuple[FileChange, ...]]:
    """`DIR name,old,new …` (UseNewInfoFmtStrings=no): directory, kind, files."""
    special = _OLD_SPECIAL.match(value)
    if special:
        return special["dir"], _SPECIAL[special["what"]], ()
    # The directory ends at a space; when it holds spaces itself, `Update of` tells where.
    starts = [m.start() for m in re.finditer(" ", value)]
    if log.update_of:
        starts.sort(key=lambda i: not log.update_of.endswith("/" + value[:i]))
    for start in starts:
        rest = value[start + 1 :]
        matches = list(_OLD_TRIPLE.finditer(rest))
        if matches and "".join(m[0] for m in matches) == rest:
            files = tuple(
                FileChange(m["name"], _revision(m["old"]), _revision(m["new"])) for m in matches
            )
            return value[:start], COMMIT, files
    if " " not in value or log.update_of.endswith("/" + value):
        return value, COMMIT, ()  # a directory alone (`%p`, or %s with nothing after it)
    raise UsageError(f"cannot read the loginfo argument {value!r}: {USAGE_HINT}")


def parse_args(
    args: Sequence[str], log: LogText, cvsroot: str | None = None
) -> tuple[str, str, tuple[FileChange, ...]]:
    """Directory, kind and files from the command's arguments (any format CVS uses)."""
    args = list(args)
    if not args:
        raise UsageError(f"no arguments from CVS: {USAGE_HINT}")
    if len(args) == 1:
        return _parse_old_format(args[0], log)
    if len(args) == 4 and args[1] in _SPECIAL and args[2:] == [NONE, NONE]:
        return args[0], _SPECIAL[args[1]], ()
    if len(args) % 3 == 1:
        files = _triples(args[1:])
        if files is not None:
            return args[0], COMMIT, files
    elif len(args) % 3 == 0 and (files := _triples(args)) is not None:
        # `%{sVv}` without `%p`: the directory comes from the text.
        return _directory_from_text(log, cvsroot), COMMIT, files
    raise UsageError(
        f"cannot read the loginfo arguments {' '.join(args)!r} as "
        f"'DIRECTORY NAME OLD NEW ...': {USAGE_HINT}"
    )


def _parse_import_status(text: str) -> ImportStatus:
    vendor = release = ""
    files: list[str] = []
    summary: list[str] = []
    for line in text.split("\n"):
        if line.startswith("Vendor Tag:"):
            vendor = line.partition(":")[2].strip()
        elif line.startswith("Release Tags:"):
            release = " ".join(line.partition(":")[2].split())
        elif re.match(r"[NUCILT] \S", line) and not summary:
            files.append(line)
        elif line.strip() and (files or summary):
            summary.append(line.strip())
    return ImportStatus(vendor, release, tuple(files), "\n".join(summary))


def parse_text(text: str) -> LogText:
    """The `Update of`, `In directory`, file sections, tag and log message of CVS's text."""
    head, sep, message = text.partition("\nLog Message:\n")
    if not sep and text.startswith("Log Message:\n"):
        head, sep, message = "", "x", text[len("Log Message:\n") :]
    update_of = in_directory = tag = ""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in head.split("\n"):
        if line.startswith("Update of "):
            update_of = line[len("Update of ") :]
        elif line.startswith("In directory "):
            in_directory = line[len("In directory ") :]
        elif line in _SECTIONS:
            current = sections.setdefault(_SECTIONS[line], [])
        elif line.strip().startswith("Tag:") and not line.startswith("\t"):
            tag = tag or line.strip()[len("Tag:") :].strip()
        elif line.startswith("\t") and current is not None:
            # Names separated by spaces, wrapped; ambiguous for names with spaces, which is
            # why the arguments are what we trust.
            current.extend(line.split())
    status = None
    if sep:
        # `cvs import` appends its report to the message; the last one is CVS's.
        cut = message.rfind("\nStatus:\n\nVendor Tag:")
        if cut >= 0:
            status = _parse_import_status(message[cut + len("\nStatus:\n") :])
            message = message[:cut]
    return LogText(
        update_of, in_directory, tag, {k: tuple(v) for k, v in sections.items()},
        message.strip("\n") if sep else "", status,
    )


def parse_loginfo(args: Sequence[str], text: str, cvsroot: str | None = None) -> Commit:
    """Everything one loginfo run says, from its arguments and its stdin text."""
    log = parse_text(text)
    directory, kind, files = parse_args(args, log, cvsroot)
    if log.import_status is not None and kind == COMMIT and not files:
        kind = IMPORT
    return Commit(directory, kind, files, log)


@dataclass(frozen=True)
class Layout:
    """How a commit message is laid out: web-viewer links and how many files it lists.

    `viewer_url` makes a diff link for each modified file, `viewer_file_url` a link for
    each added or removed one (templates with VIEWER_FIELDS; see config). Past
    `max_files` the list ends with `… and N more files`."""

    viewer_url: str = ""
    viewer_file_url: str = ""
    max_files: int | None = None
    # diffstat (opt-in): (directory, file) -> lines added, removed; files left without
    # figures when its time bound ran out
    stats: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)
    stats_skipped: int = 0


def viewer_link(template: str, directory: str, change: FileChange) -> str:
    """`template` filled in for one file: {path} the repository-relative directory,
    {file} its name, {old}/{new} the revisions ("" for none), {rev} the one it has."""
    from urllib.parse import quote

    return template.format_map({
        "path": quote(directory, safe="/"), "file": quote(change.name, safe=""),
        "old": quote(change.old or "", safe=""), "new": quote(change.new or "", safe=""),
        "rev": quote(change.new or change.old or "", safe=""),
    })


def _file_line(change: FileChange) -> str:
    if change.change == "added":
        return f"  {change.name} {change.new}"
    if change.change == "removed":
        return f"  {change.name} {change.old}"
    return f"  {change.name} {change.old} -> {change.new}"


class _Budget:
    """How many more files a message may list; counts the ones left out."""

    def __init__(self, most: int | None) -> None:
        self.left = most
        self.skipped = 0

    def take(self) -> bool:
        if self.left is None:
            return True
        if self.left > 0:
            self.left -= 1
            return True
        self.skipped += 1
        return False

    def note(self, layout: Layout | None = None) -> list[str]:
        """`… and 212 more files`, and files the diffstat had no time for."""
        lines = []
        if self.skipped:
            lines.append(f"… and {self.skipped} more file{'s' if self.skipped != 1 else ''}")
        if layout is not None and layout.stats_skipped:
            lines.append(f"(no diffstat for {layout.stats_skipped} file(s): it ran out of time)")
        return lines


def _file_groups(commit: Commit, layout: Layout | None = None,
                 budget: _Budget | None = None) -> list[str]:
    """`Added:` / `Modified:` / `Removed:` with one indented line per file (and its
    viewer link on the next line), as many files as `budget` allows."""
    layout = layout or Layout()
    budget = budget or _Budget(None)
    groups: dict[str, list[str]] = {"added": [], "modified": [], "removed": []}
    if commit.files:
        for change in commit.files:
            if not budget.take():
                continue
            figures = layout.stats.get((commit.directory, change.name))
            stat = f" +{figures[0]} -{figures[1]}" if figures else ""
            groups[change.change].append(_file_line(change) + stat)
            template = layout.viewer_url if change.change == "modified" else (
                layout.viewer_file_url)
            if template:
                groups[change.change].append(
                    "    " + viewer_link(template, commit.directory, change))
    else:  # no revisions in the arguments (`%p` alone): the names from the text
        for kind, names in commit.log.sections.items():
            groups[kind] += [f"  {name}" for name in names if budget.take()]
    lines: list[str] = []
    for kind, entries in groups.items():
        if entries:
            lines += [f"{kind.capitalize()}:", *entries]
    return lines


def format_message(commit: Commit, user: str, layout: Layout | None = None) -> tuple[str, str]:
    """Subject and body: who did what where, the files by kind of change, the log message."""
    where = commit.log.update_of or commit.directory
    subject = f"CVS {commit.kind}: {commit.directory} by {user}"
    if commit.kind == NEW_DIRECTORY:
        # CVS's log text here is its own "Directory … put under version control".
        return subject, f"New directory by {user}: {where}"
    lines: list[str] = []
    if commit.kind == IMPORT:
        lines.append(f"Import by {user} into {where}")
        status = commit.log.import_status or ImportStatus()
        tags = [f"vendor tag {status.vendor_tag}"] if status.vendor_tag else []
        if status.release_tags:
            tags.append(f"release tags {status.release_tags}")
        if tags:
            text = ", ".join(tags)
            lines.append(text[0].upper() + text[1:])
        if status.files:
            lines += ["", *status.files]
        if status.summary:
            lines += ["", status.summary]
    else:
        branch = f" on branch {commit.log.tag}" if commit.log.tag else ""
        lines.append(f"Commit by {user} in {where}{branch}")
        budget = _Budget(layout.max_files if layout else None)
        groups = _file_groups(commit, layout, budget) + budget.note(layout)
        if groups:
            lines += ["", *groups]
    if commit.log.message:
        lines += ["", "Log message:", commit.log.message]
    return subject, "\n".join(lines)


def format_commit(commits: Sequence[Commit], user: str, layout: Layout | None = None
                  ) -> tuple[str, str]:
    """One message for a commit touching several directories: each directory's files
    under its name, the log message once. One directory: `format_message`."""
    if len(commits) == 1:
        return format_message(commits[0], user, layout)
    import posixpath

    first = commits[0]
    common = posixpath.commonpath([c.directory for c in commits])
    root = first.log.update_of
    if root.endswith("/" + first.directory):
        root = root[: -len(first.directory) - 1]
    where = "/".join(p for p in (root, common) if p) or common
    several = f"{len(commits)} directories"
    subject = f"CVS commit: {f'{common} ({several})' if common else several} by {user}"
    tag = next((c.log.tag for c in commits if c.log.tag), "")
    branch = f" on branch {tag}" if tag else ""
    lines = [f"Commit by {user} in {where}{branch}, {several}"]
    budget = _Budget(layout.max_files if layout else None)
    for commit in commits:
        groups = _file_groups(commit, layout, budget)
        if groups:
            lines += ["", f"{commit.directory}:", *groups]
    if budget.note(layout):
        lines += ["", *budget.note(layout)]
    message = next((c.log.message for c in commits if c.log.message), "")
    if message:
        lines += ["", "Log message:", message]
    return subject, "\n".join(lines)


def followers(commits: Sequence[Commit], to: Sequence[str], rules: Iterable[LoginfoRule]
              ) -> list[tuple[list[str], list[Commit]]]:
    """Who gets which directories of a commit: (recipients, their directories) groups,
    each recipient in exactly one group (every directory one of their rules matches;
    `to` gets them all), in order of first appearance."""
    rules = list(rules)
    wanted: dict[str, list[int]] = {}
    for i, commit in enumerate(commits):
        for jid in [*to, *route(commit.directory, rules)]:
            indexes = wanted.setdefault(jid, [])
            if i not in indexes:
                indexes.append(i)
    groups: dict[tuple[int, ...], list[str]] = {}
    for jid, indexes in wanted.items():
        groups.setdefault(tuple(indexes), []).append(jid)
    return [(jids, [commits[i] for i in key]) for key, jids in groups.items()]


def route(directory: str, rules: Iterable[LoginfoRule], *, rooms: bool = False) -> list[str]:
    """Recipients (`rooms`: the rooms) for `directory`, CVS's way: the first regex that
    matches (or the DEFAULT rule when none does), plus every ALL rule. Deduplicated, in
    config order."""
    return list(route_why(directory, rules, rooms=rooms))


def route_why(directory: str, rules: Iterable[LoginfoRule], *, rooms: bool = False
              ) -> dict[str, int]:
    """`route`, with why: each recipient (or room) and the number (from 1, in the config)
    of the first `[[loginfo]]` rule that names them."""
    rules = list(rules)
    chosen = next(
        (r for r in rules if r.match not in ("ALL", "DEFAULT") and re.search(r.match, directory)),
        None,
    ) or next((r for r in rules if r.match == "DEFAULT"), None)
    recipients: dict[str, int] = {}
    for number, rule in enumerate(rules, 1):
        if rule is chosen or rule.match == "ALL":
            for jid in rule.rooms if rooms else rule.to:
                recipients.setdefault(jid, number)
    return recipients


def commit_message_followers(
    notice: WatchNotice | None, values: Iterable[str], rules: Sequence[LoginfoRule],
    default_domain: str | None,
) -> dict[str, str]:
    """Which notify recipients (as given) follow the directory of a commit-watch notice
    through `[[loginfo]]`, each with why: they get the commit message, so with
    `commit_watch_for_followers = false` the watch notification skips them."""
    if notice is None or notice.kind not in COMMIT_WATCHES:
        return {}
    directory = notice_directory(notice)
    followers = route_why(directory, rules)
    skipped: dict[str, str] = {}
    for value in values:
        try:
            jid = normalize_recipient(value, default_domain)
        except RecipientError:
            continue  # the run reports it
        if jid in followers:
            skipped[value] = (f"follows {directory} through {rule_text(rules, followers[jid])}; "
                              "commit_watch_for_followers = false")
    return skipped


def rule_text(rules: Sequence[LoginfoRule], number: int) -> str:
    """`[[loginfo]] rule 2 (match ^proj(/|$))`: which rule (counted from 1 in the config)
    and its pattern as written."""
    return f"[[loginfo]] rule {number} (match {rules[number - 1].match})"
