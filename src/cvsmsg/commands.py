"""The body of every command, without click: the click CLI and the fast path both call
these, with the options `cvsmsg.options` describes (a dict keyed by each option's dest).

A body sets up logging, does its work through the library and returns an ExitStatus.
It never catches an exception to report it: it raises, and `cvsmsg.main` reports.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

from cvsmsg import logs
from cvsmsg.inputs import read_file, read_stdin
from cvsmsg.report import print_dropped, print_flush, print_queue, print_report
from cvsmsg.status import ExitStatus

TYPE_CHECKING = False  # no `typing` at run time: the fast path's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import IO, Any, TextIO

    from cvsmsg.config import Config
    from cvsmsg.spool import Spool

    Options = Mapping[str, Any]

log = logging.getLogger("cvsmsg")

NO_MESSAGE = "no message: pipe the text on stdin or use --file PATH"
NO_LOG_TEXT = ("no log text on stdin: CVS runs this from CVSROOT/loginfo "
               "(ALL cvsmsg loginfo %p %{sVv})")


@dataclass(frozen=True)
class Io:
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
    _log_to_stderr(opts, io)
    # The whole message first, before anything can fail: see cvsmsg.inputs.
    file = opts["file"]
    raw = read_file(file) if file is not None and str(file) != "-" else read_stdin(
        io.stdin, NO_MESSAGE)
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
    return _send(cfg, list(why), cfg.subject, text, opts, io, why, label, skipped)


def loginfo(opts: Options, io: Io) -> ExitStatus:
    """Tell the people who follow a directory about a commit (CVSROOT/loginfo)."""
    _log_to_stderr(opts, io)
    raw = read_stdin(io.stdin, NO_LOG_TEXT)

    from cvsmsg.account import unix_name
    from cvsmsg.loginfo import committer, format_message, parse_loginfo, route_why, rule_text
    from cvsmsg.message import clean_text

    # Arguments are bytes to CVS: a name that is not UTF-8 is shown with U+FFFD.
    args = [os.fsencode(a).decode("utf-8", "replace") for a in opts["cvs_args"]]
    text = raw.replace(b"\0", b"").decode("utf-8", "replace")
    commit = parse_loginfo(args, text, io.environ.get("CVSROOT"))
    cfg = _config(opts, io, message_type=opts["message_type"], server=opts["server"],
                  timeout=opts["timeout"])
    why = dict.fromkeys(opts["to"], "given with --to")
    for jid, number in route_why(commit.directory, cfg.loginfo).items():
        why.setdefault(jid, rule_text(cfg.loginfo, number))
    if not why:
        nothing = (f"nothing to send for {commit.directory}: no [[loginfo]] rule names "
                   "anyone and no --to")
        if opts["dry_run"]:
            io.stdout.write(f"dry run: {nothing}\n")
        log.info("%s", nothing)
        return ExitStatus.OK
    subject, body = format_message(commit, committer(io.environ, unix_name()))
    return _send(cfg, list(why), subject, clean_text(body.encode("utf-8")), opts, io, why,
                 "commit")


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
    import asyncio

    from cvsmsg.drain import flush as drain_flush

    cfg, spool = _spool(opts, io, server=opts["server"], timeout=opts["timeout"])
    if not spool.ids():
        if not opts["quiet"]:
            io.stdout.write(f"no messages queued in {spool.path}\n")
        return ExitStatus.OK
    stats = asyncio.run(drain_flush(cfg, spool))
    if not opts["quiet"]:
        print_flush(stats, io.stdout)
    return ExitStatus.WITHHELD if spool.ids() else ExitStatus.OK


def serve(opts: Options, io: Io) -> ExitStatus:
    """Stay connected and deliver queued messages as recipients become available."""
    quiet = opts["quiet"]
    logs.to_stderr(quiet, max(opts["verbose"], 0 if quiet else 1), opts["debug"], io.stderr)
    from cvsmsg.serve import run_serve

    cfg, spool = _spool(opts, io)
    run_serve(cfg, spool)
    return ExitStatus.OK


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
    from cvsmsg.drain import run_deliverer
    from cvsmsg.paths import deliver_log
    from cvsmsg.spool import DELIVER_LOCK

    cfg, spool = _spool(opts, io, server=opts["server"], timeout=opts["timeout"])
    spool.ensure()
    logs.to_file(deliver_log(spool.path), [cfg.password])
    fd = opts["lock_fd"] if opts["lock_fd"] is not None else spool.try_lock(DELIVER_LOCK)
    if fd is None:
        log.info("a deliverer is already running")
        return ExitStatus.OK
    run_deliverer(cfg, spool, fd)
    return ExitStatus.OK


# Each command's body, by name: what `cvsmsg.main` runs after either parser.
BODIES: dict[str, Callable[[Options, Io], ExitStatus]] = {
    "notify": notify, "loginfo": loginfo, "check": check, "flush": flush, "serve": serve,
    "queue": queue, "deliver": deliver,
}


def _log_to_stderr(opts: Options, io: Io) -> None:
    logs.to_stderr(opts["quiet"], opts["verbose"], opts["debug"], io.stderr)


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
          io: Io, why: Mapping[str, str] | None = None, label: str = "",
          skipped: Mapping[str, str] | None = None) -> ExitStatus:
    """How `notify` and `loginfo` both deliver: `dispatch` decides hand-off or direct;
    we print one line per recipient (`label`led, and one per `skipped` recipient). With
    --dry-run: only say what would be sent, to whom and `why` (stdout), without
    connecting or touching the spool."""
    if opts["dry_run"]:
        from cvsmsg.report import print_preview

        return print_preview(cfg, recipients, why or {}, subject, text, io.stdout, skipped)
    if skipped:
        from cvsmsg.report import print_skipped

        print_skipped(skipped, label, opts["quiet"], io.stderr)
        if not recipients:
            return ExitStatus.OK
    from cvsmsg.dispatch import dispatch

    report = dispatch(cfg, recipients, subject, text, io.environ)
    return print_report(report, opts["quiet"], io.stderr, label)
