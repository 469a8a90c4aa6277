"""`cvsmsg check`: the administrator's look at a setup, step by step with timings, and
who cannot be presence-gated (and what they must do). The one command that prints a report
on stdout; failures still end with the usual one line on stderr (raised to the CLI).
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import stat
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cvsmsg.config import Config, load_config
from cvsmsg.errors import CvsmsgError, RecipientError
from cvsmsg.handoff import open_spool
from cvsmsg.policy import Decision, PresenceView, decide
from cvsmsg.recipients import resolve_recipients
from cvsmsg.sessions import OneShot
from cvsmsg.status import ExitStatus

if TYPE_CHECKING:
    from cvsmsg.spool import Spool
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

Out = Callable[[str], None]
GATED = ("to", "both")  # subscriptions that show us their presence


DETAIL = " " * 30  # where a step's detail starts: continuation lines line up with it


def step_line(step: str, status: str, ms: float | None = None, detail: str = "") -> str:
    """`connect+TLS  ok       12 ms  127.0.0.1:5222 …`: one step of the check."""
    timing = f"{ms:.0f} ms" if ms is not None else ""
    return f"{step:<12} {status:<6} {timing:>8}  {detail}".rstrip()


# -- files and config (pure, given the stat results) ---------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """Who can read a file, as `stat` says."""

    path: Path
    mode: int
    owner: str
    group: str

    def describe(self) -> str:
        return f"{self.path} (owner {self.owner}, group {self.group}, mode {self.mode:04o})"


def file_info(path: Path) -> FileInfo:
    """Stat `path` and name its owner and group."""
    return _stat_info(path, path.stat())


def file_notes(info: FileInfo, what: str, home: Path | None = None) -> list[str]:
    """What an administrator should know about who can read `info` (cvsmsg runs as each
    CVS user, so they all must; a password must not be world-readable, which the loader
    already refuses)."""
    notes = []
    if not info.mode & (stat.S_IRGRP | stat.S_IROTH):
        notes.append(
            f"only {info.owner} can read the {what}: CVS runs cvsmsg as each committer, "
            f"so let their group read it: chgrp <cvs-group> {info.path} && "
            f"chmod 640 {info.path}"
        )
    if home is not None and info.path.is_relative_to(home):
        notes.append(
            f"the {what} is in your home directory: other CVS users will not find it; "
            "use /etc/cvsmsg/config.toml or --config in CVSROOT/loginfo and notify"
        )
    return notes


def subscribers_detail(cfg: Config) -> str:
    allowed = ", ".join(cfg.allowed_subscribers) or "nobody"
    default = " (the bot's own domain, by default)" if cfg.subscribers is None else ""
    return f"{allowed}{default}; max_roster {cfg.max_roster}"


def spool_lines(spool: Spool, want_group: str | None) -> list[str]:
    """The spool step: its path, owner, group and mode, and a `note:` for each thing an
    administrator must fix (see spool_notes)."""
    path = spool.path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        return [step_line("spool", "ok", None, f"{path} (cannot look at it: {exc.strerror})")]
    notes: list[str] = []
    if st is None:
        detail = f"{path} (not created yet"
        if not spool.shared:
            detail += "; private to you: the shared spool is not writable by you)"
        else:
            try:
                spool.check_creatable()
                group = want_group or _group_name(os.getegid())
                detail += f"; the first run creates it: group {group}, mode 3770)"
            except CvsmsgError as exc:
                detail += ")"
                notes.append(str(exc))
    else:
        info = _stat_info(path, st)
        detail = info.describe()
        if spool.shared:
            notes = spool_notes(info, stat.S_IFMT(st.st_mode), want_group)
    return [step_line("spool", "ok", None, detail), *(f"{DETAIL}note: {n}" for n in notes)]


def spool_notes(info: FileInfo, kind: int, want_group: str | None) -> list[str]:
    """What is wrong with a shared spool (pure, given its stat): it must be a real
    directory, group-writable, setgid and sticky (3770), of spool_group, closed to others."""
    path = info.path
    fix = f"install -d -m 3770 -o root -g {want_group or 'GROUP'} {path}"
    if kind == stat.S_IFLNK:
        return [f"{path} is a symbolic link: cvsmsg refuses to use it; replace it with a "
                f"directory: {fix}"]
    if kind != stat.S_IFDIR:
        return [f"{path} is not a directory: cvsmsg cannot use it; replace it: {fix}"]
    notes = []
    mode = info.mode
    if mode & stat.S_IRWXG != stat.S_IRWXG:
        notes.append(f"the group cannot write it (mode {mode:04o}): the CVS users' messages "
                     f"go to private spools nobody delivers: chmod 3770 {path}")
    if mode & (stat.S_ISGID | stat.S_ISVTX) != stat.S_ISGID | stat.S_ISVTX:
        notes.append(f"it is not setgid and sticky (mode {mode:04o}): files may get the "
                     "wrong group, and members can delete each other's messages: "
                     f"chmod 3770 {path}")
    if want_group and info.group != want_group:
        notes.append(f"its group is {info.group}, spool_group says {want_group}: "
                     f"chgrp {want_group} {path}")
    if mode & stat.S_IRWXO:
        notes.append(f"others can get in (mode {mode:04o}): it holds every queued message: "
                     f"chmod o-rwx {path}")
    return notes


def _stat_info(path: Path, st: os.stat_result) -> FileInfo:
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return FileInfo(path, stat.S_IMODE(st.st_mode), owner, _group_name(st.st_gid))


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- roster and recipients (pure) ----------------------------------------------------------


@dataclass(frozen=True)
class Contact:
    """One JID as the check saw it: roster state and what a notification would do now."""

    jid: str
    subscription: str  # "none" when not in the roster at all
    pending_out: bool
    decision: Decision
    asked_now: bool = False

    @property
    def gated(self) -> bool:
        return self.subscription in GATED


def roster_line(contact: Contact, width: int) -> str:
    sub = contact.subscription + (", asked" if contact.pending_out else "")
    return f"  {contact.jid:<{width}}  {sub:<11}  {contact.decision.reason}"


def recipient_lines(contact: Contact, bot_jid: str, width: int) -> list[str]:
    """`ok` with what a notification would do now, or `NOT GATED` and what to do."""
    if contact.gated:
        verb = "delivered" if contact.decision.deliver else "withheld"
        return [f"  {contact.jid:<{width}}  ok         subscription {contact.subscription}; "
                f"a notification now would be {verb} ({contact.decision.reason})"]
    if contact.asked_now:
        request = "cvsmsg asked them just now"
    elif contact.pending_out:
        request = "cvsmsg's request is pending"
    else:
        request = "cvsmsg could not ask them"
    if contact.subscription == "from":
        todo = f"accept the presence request from {bot_jid} in their XMPP client"
    else:
        todo = (f"add {bot_jid} to their XMPP contacts and accept its presence request "
                "in their XMPP client")
    return [
        f"  {contact.jid:<{width}}  NOT GATED  subscription {contact.subscription}; {request}",
        f"  {'':<{width}}  -> {contact.jid} must {todo}",
    ]


def summary_line(recipients: list[Contact]) -> str:
    ungated = [c for c in recipients if not c.gated]
    if not recipients:
        return ("no recipients to check: none in [[loginfo]]; name them: "
                "cvsmsg check alice@example.org")
    if not ungated:
        return f"all {len(recipients)} recipient(s) can be presence-gated"
    return (f"{len(ungated)} of {len(recipients)} recipient(s) cannot be presence-gated: "
            "they get nothing until they do as said above")


# -- the run -------------------------------------------------------------------------------


class _Steps:
    """Prints each step's line as the stream gets there; remembers the current step."""

    def __init__(self, out: Out, clock: Callable[[], float]) -> None:
        self.out = out
        self.clock = clock
        self.current = ""
        self.started = 0.0

    def begin(self, step: str) -> None:
        self.current, self.started = step, self.clock()

    def done(self, detail: str, following: str = "") -> None:
        if self.current:
            self.out(step_line(self.current, "ok", (self.clock() - self.started) * 1000, detail))
        self.current = ""
        if following:
            self.begin(following)

    def fail(self) -> None:
        if self.current:
            self.out(step_line(self.current, "FAILED", (self.clock() - self.started) * 1000))
            self.current = ""


def _check_config(
    config_path: str | None, overrides: Mapping[str, Any], env: Mapping[str, str] | None,
    out: Out,
) -> Config:
    try:
        cfg = load_config(config_path, env=env, overrides=overrides)
    except Exception:
        out(step_line("config", "FAILED"))
        raise
    home = Path.home()
    notes: list[str] = []
    if cfg.source is not None:
        info = file_info(Path(cfg.source))
        out(step_line("config", "ok", None, info.describe()))
        notes += file_notes(info, "config file", home)
    else:
        out(step_line("config", "ok", None, "no file: $CVSMSG_JID and $CVSMSG_PASSWORD"))
    source = cfg.password_source
    if source.startswith("password_file "):
        info = file_info(Path(source.partition(" ")[2]))
        out(step_line("password", "ok", None, f"password_file {info.describe()}"))
        notes += file_notes(info, "password file")
    elif source == "$CVSMSG_PASSWORD":
        out(step_line("password", "ok", None, "from $CVSMSG_PASSWORD"))
        notes.append("the password comes from your environment: CVS users need it in theirs")
    else:
        out(step_line("password", "ok", None, f"from the {source}"))
    for note in notes:
        out(f"{DETAIL}note: {note}")
    count = f"{len(cfg.loginfo)} rule(s)" if cfg.loginfo else (
        "no rules: `cvsmsg loginfo` sends only to --to")
    out(step_line("loginfo", "ok", None, count))
    for rule in cfg.loginfo:
        out(f"{DETAIL}{rule.match} -> {', '.join(rule.to) or '(nobody)'}")
    out(step_line("subscribers", "ok", None, subscribers_detail(cfg)))
    return cfg


def _recipients(cfg: Config, jids: Iterable[str]) -> list[str]:
    configured = [jid for rule in cfg.loginfo for jid in rule.to]
    valid, invalid = resolve_recipients([*configured, *jids], cfg.default_domain, cfg.jid)
    if invalid:
        raise RecipientError(invalid[0].reason)
    return valid


async def _check_xmpp(
    cfg: Config, spool: Spool, recipients: list[str], out: Out, clock: Callable[[], float]
) -> tuple[list[Contact], list[Contact]]:
    steps = _Steps(out, clock)

    def progress(session: XmppSession, event: str) -> None:
        # Each event once, in its step: roster pushes fire "roster" again later.
        if event == "tls" and steps.current == "connect+TLS":
            addr = cfg.server_address
            where = f"{addr[0]}:{addr[1]}" if addr else "DNS SRV"
            mode = "direct TLS" if cfg.tls == "direct" else "STARTTLS"
            verified = "certificate verified" if cfg.tls_verify else "certificate NOT verified"
            steps.done(f"{where}, {mode}, {session.tls_version}, {verified}", "auth")
        elif event == "session" and steps.current == "auth":
            steps.done(f"as {session.client.boundjid}", "roster")
        elif event == "roster" and steps.current == "roster":
            steps.done(f"{len(session.roster())} contact(s)", "presence")

    try:
        async with OneShot(cfg, spool, recipients, progress) as run:
            steps.begin("connect+TLS")
            session = await run.open()
            views = await session.presence_of(recipients)  # asks whom it cannot see
            asked = set(session.asked)
            contacts = sorted({c.jid for c in session.roster()} - set(recipients))
            await session.probe(contacts)
            views |= {jid: session.view(jid) for jid in contacts}
            online = sum(1 for view in views.values() if view.resources)
            steps.done(f"{online} of {len(views)} online")
            entries = {e.jid: e for e in session.roster()}
    except BaseException:
        steps.fail()
        raise
    await run.close()

    def contact(jid: str) -> Contact:
        entry = entries.get(jid)
        view = views.get(jid, PresenceView(visible=False))
        return Contact(
            jid, entry.subscription if entry else "none", bool(entry and entry.pending_out),
            decide(view, cfg.withhold_show), jid in asked,
        )

    return [contact(j) for j in sorted(entries)], [contact(j) for j in recipients]


def run_check(
    config_path: str | None,
    overrides: Mapping[str, Any],
    jids: Iterable[str],
    out: Out,
    env: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_config: Callable[[Config], None] | None = None,
) -> ExitStatus:
    """Check the config, the login, the roster and each recipient; print as it goes.

    Raises the step's error after printing it as FAILED; returns WITHHELD when some
    recipient cannot be presence-gated, OK when all can.
    """
    cfg = _check_config(config_path, overrides, env, out)
    if on_config is not None:
        on_config(cfg)  # e.g. keep the password out of --debug output
    recipients = _recipients(cfg, jids)
    spool = open_spool(cfg, os.environ if env is None else env)
    for line in spool_lines(spool, cfg.spool_group):
        out(line)
    roster, checked = asyncio.run(_check_xmpp(cfg, spool, recipients, out, clock))

    bot = cfg.jid
    out("")
    full = " (full: new subscriptions are refused)" if len(roster) >= cfg.max_roster else ""
    out(f"roster of {bot}: {len(roster)} contact(s), max_roster {cfg.max_roster}{full}")
    width = max((len(c.jid) for c in [*roster, *checked]), default=0)
    for entry in roster:
        out(roster_line(entry, width))
    if checked:
        out("")
        out("recipients ([[loginfo]] rules and arguments):")
        for entry in checked:
            for line in recipient_lines(entry, bot, width):
                out(line)
    out("")
    out(summary_line(checked))
    return ExitStatus.WITHHELD if any(not c.gated for c in checked) else ExitStatus.OK
