"""The body of every command, without click: the click CLI and the fast path both call
these, with the options `cvsmsg.options` describes (a dict keyed by each option's dest).

A body sets up logging, does its work through the library and returns an ExitStatus.
It never catches an exception to report it: it raises, and `cvsmsg.main` reports.
"""

from __future__ import annotations

import os
import sys

from cvsmsg import logs
from cvsmsg.errors import CvsmsgError
from cvsmsg.inputs import read_file, read_stdin
from cvsmsg.logs import get_logger
from cvsmsg.record import Record, replace
from cvsmsg.report import print_dropped, print_flush, print_queue, print_report
from cvsmsg.status import ExitStatus

TYPE_CHECKING = False  # no `typing` at run time: the fast path's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import IO, Any, TextIO

    from cvsmsg.config import Config
    from cvsmsg.loginfo import Commit
    from cvsmsg.spool import Spool

    Options = Mapping[str, Any]

log = get_logger("cvsmsg")

NO_MESSAGE = "no message: pipe the text on stdin or use --file PATH"
NO_RECIPIENT = "Missing argument 'RECIPIENT...': give a JID, or --room ROOM"
NO_LOG_TEXT = ("no log text on stdin: CVS runs this from CVSROOT/loginfo "
               "(ALL cvsmsg loginfo %p %{sVv})")


class Io(Record):
    """What a command reads and writes besides its options (httpie's Environment):
    injected, so tests and the fast path hand in exactly what the process has."""

    environ: Mapping[str, str]
    stdin: IO[bytes] | None
    stdout: TextIO
    stderr: TextIO

    @classmethod
    def of_process(cls) -> Io:
        return cls(os.environ, sys.stdin.buffer if sys.stdin else None, sys.stdout, sys.stderr)


def notify(opts: Options, io: Io) -> ExitStatus:
    """Send stdin (or --file) to each recipient who is available and not dnd."""
    _log_to_stderr(opts, io, lazy=True)  # the hand-off logs nothing when all is well
    # The whole message first, before anything can fail: see cvsmsg.inputs.
    file = opts["file"]
    raw = read_file(file) if file is not None and file != "-" else read_stdin(
        io.stdin, NO_MESSAGE)
    if not opts["recipients"] and not opts["rooms"]:
        from cvsmsg.errors import UsageError

        raise UsageError(NO_RECIPIENT)
    cfg = _config(opts, io, subject=opts["subject"], message_type=opts["message_type"],
                  server=opts["server"], timeout=opts["timeout"])
    from cvsmsg.cvs import COMMIT_WATCHES, parse_notify
    from cvsmsg.message import clean_text

    text = clean_text(raw)
    why = dict.fromkeys(opts["recipients"], "given on the command line")
    notice = parse_notify(text)
    # A commit gives a watcher this and, if they follow the directory, the loginfo message:
    # the lines say which is which, and followers may be left to the commit message.
    label = "watch" if notice is not None and notice.kind in COMMIT_WATCHES else ""
    skipped: dict[str, str] = {}
    if label and not cfg.commit_watch_for_followers and cfg.loginfo:
        from cvsmsg.loginfo import commit_message_followers

        skipped = commit_message_followers(notice, why, cfg.loginfo, cfg.default_domain)
        for value in skipped:
            del why[value]
    return _send(cfg, list(why), cfg.subject, text, opts, io, opts["rooms"], why, label,
                 skipped)


def loginfo(opts: Options, io: Io) -> ExitStatus:
    """Tell the people who follow a directory about a commit (CVSROOT/loginfo)."""
    _log_to_stderr(opts, io)
    raw = read_stdin(io.stdin, NO_LOG_TEXT)

    from cvsmsg.account import committer
    from cvsmsg.loginfo import (
        Layout,
        followers,
        format_commit,
        parse_loginfo,
        route,
    )
    from cvsmsg.message import clean_text, decode

    # Arguments are bytes to CVS, its log message too: Latin-1 is read as such (`decode`).
    args = [decode(os.fsencode(a)) for a in opts["cvs_args"]]
    text = decode(raw.replace(b"\0", b""))
    commit = parse_loginfo(args, text, io.environ.get("CVSROOT"))
    user = committer(io.environ)
    commits = _commit_parts(opts, io, commit, args, text, user)
    if not commits:
        return ExitStatus.OK  # more directories of this commit to come
    cfg = _config(opts, io, message_type=opts["message_type"], server=opts["server"],
                  timeout=opts["timeout"])
    groups = followers(commits, opts["to"], cfg.loginfo)
    rooms = list(dict.fromkeys([
        *opts["rooms"], *(room for c in commits for room in route(c.directory, cfg.loginfo,
                                                                   rooms=True)),
    ]))
    if not groups and not rooms:
        nothing = (f"nothing to send for {', '.join(c.directory for c in commits)}: "
                   "no [[loginfo]] rule names anyone and no --to")
        if opts["dry_run"]:
            io.stdout.write(f"dry run: {nothing}\n")
        log.info("%s", nothing)
        return ExitStatus.OK
    from cvsmsg.dispatch import dispatch
    from cvsmsg.report import Report

    layout = Layout(cfg.viewer_url, cfg.viewer_file_url, cfg.max_files)
    if cfg.diffstat:
        import dataclasses

        from cvsmsg.diffstat import diffstat

        stats, skipped = diffstat(commits, _repository(commits[0], io.environ), io.environ)
        layout = dataclasses.replace(layout, stats=stats, stats_skipped=skipped)
    outcomes = []
    failure: CvsmsgError | None = None
    sends = [(recipients, theirs, ()) for recipients, theirs in groups]
    if rooms:  # a room reads the whole commit
        sends.append(([], commits, tuple(rooms)))
    if opts["dry_run"]:
        status = ExitStatus.OK
        for recipients, theirs, room_values in sends:
            subject, body = format_commit(theirs, user, layout)
            why = {jid: _why_loginfo(jid, theirs, opts["to"], cfg) for jid in recipients}
            why |= dict.fromkeys(room_values, "a group-chat room")
            status = max(status, _send(cfg, [*recipients, *room_values], subject,
                                       clean_text(body.encode("utf-8")), opts, io, (), why))
        return ExitStatus(status)
    for recipients, theirs, room_values in sends:
        subject, body = format_commit(theirs, user, layout)
        try:
            outcomes += dispatch(cfg, recipients, subject, clean_text(body.encode("utf-8")),
                                 io.environ, list(room_values)).outcomes
        except CvsmsgError as exc:
            # Followers of other directories get their own message: after one session
            # failed, the rest go to the spool (no second wait); the error is the run's.
            failure = failure or exc
            cfg = replace(cfg, delivery="background")
    status = print_report(Report(outcomes), opts["quiet"], io.stderr, "commit")
    if failure is not None:
        raise failure
    return status


def _repository(commit: Commit, env: Mapping[str, str]) -> str:
    """The repository's path, for the diffstat's `cvs -R -d`: from `Update of` (the
    directory's path in the repository) less the directory, else $CVSROOT."""
    update_of = commit.log.update_of
    if update_of.endswith("/" + commit.directory):
        return update_of[: -len(commit.directory) - 1]
    return env.get("CVSROOT", "").rpartition(":")[2]


def _why_loginfo(jid: str, commits: Sequence[Commit], to: Sequence[str], cfg: Config
                 ) -> str:
    """--dry-run: why `jid` hears about this commit (--to, or the first rule naming them)."""
    from cvsmsg.loginfo import route_why, rule_text

    if jid in to:
        return "given with --to"
    for commit in commits:
        number = route_why(commit.directory, cfg.loginfo).get(jid)
        if number is not None:
            return rule_text(cfg.loginfo, number)
    return "given on the command line"


def _commit_parts(opts: Options, io: Io, commit: Commit, args: list[str], text: str,
                  user: str) -> list[Commit]:
    """Every directory of the commit when this run is its last (commitinfo recorded
    them); [] when more are to come; this directory alone without a record."""
    from cvsmsg.loginfo import COMMIT, parse_loginfo

    if commit.kind != COMMIT:
        return [commit]  # import, new directory: CVS runs no commitinfo for those
    from cvsmsg.commits import Part, add_part, commit_key

    spool, _shared = _spool_location(opts, io)
    try:
        parts = add_part(spool, commit_key(io.environ, user), commit.directory,
                         commit.log.update_of, Part(tuple(args), text))
    except CvsmsgError as exc:
        log.warning("%s: sending %s on its own", exc, commit.directory)
        return [commit]
    if parts is None:
        return [commit]
    if not parts:
        log.info("%s recorded; the commit's last directory sends the message",
                 commit.directory)
        return []
    cvsroot = io.environ.get("CVSROOT")
    return [parse_loginfo(list(p.args), p.text, cvsroot) for p in parts]


def commitinfo(opts: Options, io: Io) -> ExitStatus:
    """Record a directory of a commit for `loginfo` (CVSROOT/commitinfo); never fails
    a commit (`cvsmsg.main` turns every error into exit 0)."""
    _log_to_stderr(opts, io)
    from cvsmsg.errors import UsageError

    if not opts["cvs_args"]:
        raise UsageError("no directory from CVS: use 'ALL cvsmsg commitinfo %p' "
                         "in CVSROOT/commitinfo")
    from cvsmsg.account import committer
    from cvsmsg.commits import commit_key, record_directory, relative_directory
    from cvsmsg.message import decode

    # read as loginfo reads it, so the two name a directory alike
    directory = relative_directory(decode(os.fsencode(opts["cvs_args"][0])), io.environ)
    spool, shared = _spool_location(opts, io)
    record_directory(spool, shared, commit_key(io.environ, committer(io.environ)),
                     directory)
    return ExitStatus.OK


def _spool_location(opts: Options, io: Io) -> tuple[str, bool]:
    """The spool directory (and whether it is shared), without reading the password."""
    from cvsmsg.config import peek_spool_settings
    from cvsmsg.spool import resolve_spool_dir

    settings = peek_spool_settings(opts["config_path"], io.environ)
    path, shared, warning = resolve_spool_dir(settings.get("spool_dir"), io.environ)
    if warning:
        log.warning("%s", warning)
    return path, shared


def check(opts: Options, io: Io) -> ExitStatus:
    """Check the setup and say why someone would not be notified (stdout)."""
    logs.to_stderr(False, opts["verbose"], opts["debug"], io.stderr)
    from cvsmsg.check import run_check

    def out(line: str) -> None:
        io.stdout.write(line + "\n")
        io.stdout.flush()  # each step as it completes: the next may take seconds

    return run_check(opts["config_path"], {"server": opts["server"], "timeout": opts["timeout"]},
                     opts["jids"], out, env=io.environ,
                     on_config=lambda cfg: logs.add_secret(cfg.password))


def flush(opts: Options, io: Io) -> ExitStatus:
    """Deliver every queued message whose recipient is available now."""
    _log_to_stderr(opts, io)
    cfg, spool = _spool(opts, io, server=opts["server"], timeout=opts["timeout"])
    if not spool.ids():
        if not opts["quiet"]:
            io.stdout.write(f"no messages queued in {spool.path}\n")
        return ExitStatus.OK
    _before_slixmpp(cfg)
    import asyncio

    from cvsmsg.drain import flush as drain_flush

    stats = asyncio.run(drain_flush(cfg, spool))
    if not opts["quiet"]:
        print_flush(stats, io.stdout)
    return ExitStatus.WITHHELD if spool.ids() else ExitStatus.OK


def serve(opts: Options, io: Io) -> ExitStatus:
    """Stay connected and deliver queued messages as recipients become available."""
    quiet = opts["quiet"]
    logs.to_stderr(quiet, max(opts["verbose"], 0 if quiet else 1), opts["debug"], io.stderr)
    cfg, spool = _spool(opts, io)
    _before_slixmpp(cfg)  # ~4 MB less RSS, for months
    from cvsmsg.serve import run_serve

    run_serve(cfg, spool)
    return ExitStatus.OK


def _before_slixmpp(cfg: Config) -> None:
    """What flush, the deliverer and serve do before slixmpp loads (dispatch.py does the
    same for notify and loginfo): no pygments, and no aiodns when `server` is set."""
    from cvsmsg.slixmpp_compat import skip_optional_imports

    skip_optional_imports(server_configured=bool(cfg.server))


def queue(opts: Options, io: Io) -> ExitStatus:
    """List the spool, or drop messages from it (--drop ID)."""
    logs.to_stderr(False, 0, opts["debug"], io.stderr)
    _cfg, spool = _spool(opts, io)
    if not opts["drop"]:
        import time

        print_queue(spool, io.stdout, time.time())
        return ExitStatus.OK
    from cvsmsg.errors import UsageError

    ids = spool.ids()
    for prefix in opts["drop"]:
        matches = [i for i in ids if i == prefix] or [i for i in ids if i.startswith(prefix)]
        if not matches:
            raise UsageError(f"no queued message {prefix!r} in {spool.path}")
        if len(matches) > 1:
            raise UsageError(f"{prefix!r} matches {len(matches)} messages: give more of the ID")
        entry = spool.drop(matches[0])
        if entry is None:
            raise UsageError(f"message {matches[0]} is being delivered right now (or is gone)")
        print_dropped(entry, io.stdout)
    return ExitStatus.OK


def deliver(opts: Options, io: Io) -> ExitStatus:
    """The detached background deliverer `notify` starts; logs to deliver.log."""
    os.chdir("/")  # never keep CVS's temporary directory busy
    logs.to_stderr(False, 1, False, io.stderr)  # /dev/null, until the log file is open
    cfg, spool = _spool(opts, io, server=opts["server"], timeout=opts["timeout"])
    _before_slixmpp(cfg)
    from cvsmsg.drain import run_deliverer
    from cvsmsg.paths import deliver_log
    from cvsmsg.spool import DELIVER_LOCK

    spool.ensure()
    logs.to_file(deliver_log(spool.directory), [cfg.password])
    fd = opts["lock_fd"] if opts["lock_fd"] is not None else spool.try_lock(DELIVER_LOCK)
    if fd is None:
        log.info("a deliverer is already running")
        return ExitStatus.OK
    run_deliverer(cfg, spool, fd)
    return ExitStatus.OK


def config(opts: Options, io: Io) -> ExitStatus:
    """Print the example config (--example), or which config file a run would read."""
    if opts["example"]:
        from cvsmsg.paths import example_config

        io.stdout.write(example_config())
        return ExitStatus.OK
    from cvsmsg.config import default_config_paths, find_config_file
    from cvsmsg.errors import ConfigError

    found = find_config_file(opts["config_path"], io.environ)
    for path in default_config_paths(io.environ):
        io.stdout.write(f"{'*' if path == found else ' '} {path}\n")
    if found is None:
        raise ConfigError("no configuration found: 'cvsmsg config --example' prints one "
                          "to start from")
    if found not in default_config_paths(io.environ):
        io.stdout.write(f"* {found}\n")
    io.stdout.write(f"cvsmsg reads {found}\n")
    return ExitStatus.OK


# Each command's body, by name: what `cvsmsg.main` runs after either parser.
BODIES: dict[str, Callable[[Options, Io], ExitStatus]] = {
    "notify": notify, "loginfo": loginfo, "check": check, "flush": flush, "serve": serve,
    "queue": queue, "deliver": deliver, "commitinfo": commitinfo, "config": config,
}


def _log_to_stderr(opts: Options, io: Io, *, lazy: bool = False) -> None:
    logs.to_stderr(opts["quiet"], opts["verbose"], opts["debug"], io.stderr, lazy=lazy)


def _config(opts: Options, io: Io, **overrides: Any) -> Config:
    """The config, read once per run; from here on the password is redacted."""
    from cvsmsg.config import load_config

    cfg = load_config(opts["config_path"], io.environ, overrides)
    logs.add_secret(cfg.password)
    return cfg


def _spool(opts: Options, io: Io, **overrides: Any) -> tuple[Config, Spool]:
    from cvsmsg.handoff import open_spool

    cfg = _config(opts, io, **overrides)
    return cfg, open_spool(cfg, io.environ)


def _send(cfg: Config, recipients: list[str], subject: str, text: str, opts: Options,
          io: Io, rooms: Sequence[str] = (), why: Mapping[str, str] | None = None,
          label: str = "", skipped: Mapping[str, str] | None = None) -> ExitStatus:
    """How `notify` and `loginfo` both deliver: `dispatch` decides hand-off or direct;
    we print one line per recipient and room (`label`led, and one per `skipped`
    recipient). With --dry-run: only say what would be sent, to whom and `why` (stdout),
    without connecting or touching the spool."""
    if opts["dry_run"]:
        from cvsmsg.report import print_preview

        why = {**dict.fromkeys(rooms, "a group-chat room (--room)"), **(why or {})}
        return print_preview(cfg, [*recipients, *rooms], why, subject, text, io.stdout,
                             skipped)
    if skipped:
        from cvsmsg.report import print_skipped

        print_skipped(skipped, label, opts["quiet"], io.stderr)
        if not recipients and not rooms:
            return ExitStatus.OK
    from cvsmsg.dispatch import dispatch

    report = dispatch(cfg, recipients, subject, text, io.environ, list(rooms))
    return print_report(report, opts["quiet"], io.stderr, label)
