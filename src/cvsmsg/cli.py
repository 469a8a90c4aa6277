"""Command line: parse, configure logging, call the app, map the result to an exit code.

Never imports slixmpp at module level: `cvsmsg --help` must stay fast.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from cvsmsg import __version__
from cvsmsg.errors import CvsmsgError, UsageError
from cvsmsg.status import ExitStatus

if TYPE_CHECKING:
    from cvsmsg.config import Config
    from cvsmsg.report import Report
    from cvsmsg.spool import Spool

log = logging.getLogger("cvsmsg")

# Commands CVS runs with text on stdin.
STDIN_COMMANDS = ("notify", "loginfo")
# Far above any CVS notification; keeps a runaway pipe from eating memory.
MAX_INPUT_BYTES = 32 * 1024 * 1024

EXIT_CODES_HELP = """\b
Exit codes:
  0   delivered to every recipient (background mode, or cvsmsg serve
      running: written to the spool for delivery)
  1   internal error (a bug: please report it with the --debug output)
  2   usage error (bad option, unreadable --file, empty or binary message)
  3   configuration error (missing/invalid config, unreadable password,
      unusable spool directory)
  4   authentication failed     } the message is queued for later
  5   could not connect, or TLS }  delivery, and the error line
  6   timed out                 }  says so
  7   recipient invalid, or the server rejected the message
  10  withheld from at least one recipient (offline or dnd), nothing failed;
      queued for later delivery unless withheld = "drop"
"""


def _setup_logging(quiet: bool, verbose: int, debug: bool, secrets: list[str]) -> None:
    from cvsmsg.redact import RedactingFilter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cvsmsg: %(message)s"))
    handler.addFilter(RedactingFilter(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if debug:
        root.setLevel(logging.DEBUG)
        handler.setFormatter(logging.Formatter("cvsmsg: %(name)s %(levelname)s: %(message)s"))
        return
    # slixmpp's own error lines are misleading ("No appropriate login method"): we say
    # what went wrong ourselves, in one line.
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)
    if quiet:
        root.setLevel(logging.ERROR)
    elif verbose:
        root.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
        logging.getLogger("slixmpp").setLevel(logging.WARNING if verbose == 1 else logging.INFO)
    else:
        root.setLevel(logging.WARNING)


def _read_message(file: Path | None, stdin: IO[bytes]) -> bytes:
    if file is not None and str(file) != "-":
        try:
            with file.open("rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"cannot read --file {file}: {exc.strerror}") from None
    elif stdin.isatty():
        raise UsageError("no message: pipe the text on stdin or use --file PATH")
    else:
        data = stdin.read(MAX_INPUT_BYTES + 1)
        while len(data) > MAX_INPUT_BYTES and stdin.read(1 << 20):
            pass  # drain to EOF: the writer must never see a broken pipe
    if len(data) > MAX_INPUT_BYTES:
        log.warning("input is larger than %d MiB: only that much was used",
                    MAX_INPUT_BYTES // (1024 * 1024))
        data = data[:MAX_INPUT_BYTES]
    return data


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvsmsg")
def cli() -> None:
    """Presence-gated CVS notifications over XMPP.

    Sends what CVS pipes in to each recipient who is online and not in
    "do not disturb". Configure the bot's account in /etc/cvsmsg/config.toml.
    """


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("recipients", nargs=-1, required=True, metavar="RECIPIENT...")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: $CVSMSG_CONFIG, ~/.config/cvsmsg/config.toml, "
                   "/etc/cvsmsg/config.toml).")
@click.option("--file", "file", type=click.Path(path_type=Path, dir_okay=False),
              help="Read the message from PATH instead of stdin.")
@click.option("--subject", help="Message subject (default: config 'subject' or "
                                "'CVS Watch Alarm').")
@click.option("--type", "message_type", type=click.Choice(["normal", "chat", "headline"]),
              help="Message type (default: normal).")
@click.option("--server", metavar="HOST[:PORT]",
              help="Connect here instead of the JID's DNS SRV records.")
@click.option("--timeout", type=click.FloatRange(min=0.5), metavar="SECONDS",
              help="Deadline for the whole run (default: config 'timeout' or 10).")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@click.option("-v", "--verbose", count=True, help="Say more (twice: protocol summary).")
@click.option("--debug", is_flag=True,
              help="Show the XML stream (password and SASL redacted) and tracebacks.")
def notify(
    recipients: tuple[str, ...],
    config_path: Path | None,
    file: Path | None,
    subject: str | None,
    message_type: str | None,
    server: str | None,
    timeout: float | None,
    quiet: bool,
    verbose: int,
    debug: bool,
) -> None:
    """Send the message to each RECIPIENT who is available and not dnd.

    \b
    In CVSROOT/notify:   ALL cvsmsg notify %s
    By hand:             cvsmsg notify --file message.txt dj@example.org

    Never writes to stdout: under client/server CVS it is the CVS protocol.
    """
    _setup_logging(quiet, verbose, debug, [])
    sys.exit(int(_notify(recipients, config_path, file, subject, message_type, server, timeout,
                         quiet, debug)))


def _notify(
    recipients: tuple[str, ...], config_path: Path | None, file: Path | None,
    subject: str | None, message_type: str | None, server: str | None,
    timeout: float | None, quiet: bool, debug: bool,
) -> ExitStatus:
    try:
        # Read the whole message before anything can fail: a notify command that exits
        # without reading its stdin can make CVS die of SIGPIPE and abort `cvs edit`.
        raw = _read_message(file, sys.stdin.buffer)

        from cvsmsg.config import load_config

        overrides: dict[str, Any] = {
            "subject": subject, "message_type": message_type, "server": server,
            "timeout": timeout,
        }
        cfg = load_config(config_path, overrides=overrides)
        _setup_logging_secrets(cfg.password)

        from cvsmsg.message import clean_text

        text = clean_text(raw)
        _skip_optional_imports(server_configured=bool(cfg.server))

        report = _send(cfg, list(recipients), cfg.subject, text)
    except (CvsmsgError, KeyboardInterrupt, Exception) as exc:
        return _error_status(exc, debug)
    return _print_report(report, quiet)


def _send(cfg: Config, recipients: list[str], subject: str, text: str) -> Report:
    """How `notify` and `loginfo` both deliver: one place for the gate and its modes."""
    from cvsmsg.dispatch import dispatch

    return dispatch(cfg, recipients, subject, text)


def _error_status(exc: BaseException, debug: bool) -> ExitStatus:
    """One line on stderr for any failure, and its exit code."""
    if isinstance(exc, CvsmsgError):
        log.error("error: %s", exc, exc_info=debug)
        return exc.status
    if isinstance(exc, KeyboardInterrupt):
        log.error("error: interrupted")
        return ExitStatus.TIMEOUT
    # a bug, not a user error: still one line unless --debug
    log.error("error: internal error: %s: %s (rerun with --debug)", type(exc).__name__, exc,
              exc_info=debug)
    return ExitStatus.INTERNAL


def _print_report(report: Report, quiet: bool) -> ExitStatus:
    """One line per recipient on stderr (failures even with -q); the run's exit code."""
    for outcome in report.outcomes:
        if outcome.failed:
            log.error("error: %s", outcome.reason)
        elif not quiet:
            verb = "delivered to" if outcome.delivered else "withheld from"
            if outcome.handed_off:
                verb = "queued for"
            click.echo(f"cvsmsg: {verb} {outcome.recipient}: {outcome.reason}", err=True)
    return report.status


def _skip_optional_imports(server_configured: bool) -> None:
    """Keep slixmpp from importing what a one-shot run never uses (~30-50 ms at start-up).

    slixmpp imports pygments (to colour its debug log) and aiodns (SRV lookups) when they
    are installed. Marking them absent makes slixmpp take its own fallbacks: plain log
    text, and no resolver when `server` names the host. Only this process is affected.
    """
    optional = ["pygments"]
    if server_configured:
        optional.append("aiodns")
    for name in optional:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def _setup_logging_secrets(password: str) -> None:
    from cvsmsg.redact import RedactingFilter

    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter):
                flt.secrets.append(password)


def _connection_options(func: Any) -> Any:
    """--config, --server, --timeout, -v, --debug: as for notify."""
    for option in reversed([
        click.option("--config", "config_path",
                     type=click.Path(path_type=Path, dir_okay=False),
                     help="Config file (default: $CVSMSG_CONFIG, ~/.config/cvsmsg/config.toml, "
                          "/etc/cvsmsg/config.toml)."),
        click.option("--server", metavar="HOST[:PORT]",
                     help="Connect here instead of the JID's DNS SRV records."),
        click.option("--timeout", type=click.FloatRange(min=0.5), metavar="SECONDS",
                     help="Deadline for the whole run (default: config 'timeout' or 10)."),
        click.option("-v", "--verbose", count=True,
                     help="Say more (twice: protocol summary)."),
        click.option("--debug", is_flag=True,
                     help="Show the XML stream (password and SASL redacted) and tracebacks."),
    ]):
        func = option(func)
    return func


@cli.command(
    epilog=EXIT_CODES_HELP,
    # After the directory, CVS's arguments are taken verbatim: "- New directory", or a file
    # named "-v".
    context_settings={"allow_interspersed_args": False},
)
@click.argument("cvs_args", nargs=-1, metavar="DIRECTORY [NAME OLD NEW]...")
@click.option("--to", "to", multiple=True, metavar="JID",
              help="Also send to JID (repeatable), beside the config's [[loginfo]] rules.")
@click.option("--type", "message_type", type=click.Choice(["normal", "chat", "headline"]),
              help="Message type (default: config 'type' or normal).")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@_connection_options
def loginfo(
    cvs_args: tuple[str, ...],
    to: tuple[str, ...],
    config_path: Path | None,
    message_type: str | None,
    server: str | None,
    timeout: float | None,
    quiet: bool,
    verbose: int,
    debug: bool,
) -> None:
    """Tell the people who follow a directory about a commit (CVSROOT/loginfo).

    \b
    In CVSROOT/loginfo:  ALL cvsmsg loginfo %p %{sVv}
    With fixed people:   ^proj/ cvsmsg loginfo --to dj@example.org %p %{sVv}

    Recipients: the first [[loginfo]] rule in the config whose 'match' regex is found in
    the directory (or the DEFAULT rule), every ALL rule, and each --to. Options go before
    %p. Each recipient who is available and not dnd gets the files, their revisions and
    the log message. No recipient for the directory: nothing is sent, exit 0.
    Never writes to stdout: under client/server CVS it is the CVS protocol.
    """
    _setup_logging(quiet, verbose, debug, [])
    sys.exit(int(_loginfo(cvs_args, to, config_path, message_type, server, timeout, quiet,
                          debug)))


def _account_name() -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def _loginfo(
    cvs_args: tuple[str, ...], to: tuple[str, ...], config_path: Path | None,
    message_type: str | None, server: str | None, timeout: float | None, quiet: bool,
    debug: bool,
) -> ExitStatus:
    try:
        # All of stdin first: under client/server CVS a loginfo command that exits without
        # reading it makes `cvs commit` fail with "received broken pipe signal".
        if sys.stdin.isatty():
            raise UsageError("no log text on stdin: CVS runs this from CVSROOT/loginfo "
                             "(ALL cvsmsg loginfo %p %{sVv})")
        raw = _read_message(None, sys.stdin.buffer)

        from cvsmsg.loginfo import committer, format_message, parse_loginfo, route

        # Arguments are bytes to CVS: a name that is not UTF-8 is shown with U+FFFD.
        args = [os.fsencode(a).decode("utf-8", "replace") for a in cvs_args]
        text = raw.replace(b"\0", b"").decode("utf-8", "replace")
        commit = parse_loginfo(args, text, os.environ.get("CVSROOT"))

        from cvsmsg.config import load_config

        overrides: dict[str, Any] = {
            "message_type": message_type, "server": server, "timeout": timeout,
        }
        cfg = load_config(config_path, overrides=overrides)
        _setup_logging_secrets(cfg.password)

        recipients = [*to, *route(commit.directory, cfg.loginfo)]
        if not recipients:
            log.info("nothing to send for %s: no [[loginfo]] rule names anyone and no --to",
                     commit.directory)
            return ExitStatus.OK
        subject, body = format_message(commit, committer(os.environ, _account_name()))

        from cvsmsg.message import clean_text

        report = _send(cfg, recipients, subject, clean_text(body.encode("utf-8")))
    except (CvsmsgError, KeyboardInterrupt, Exception) as exc:
        return _error_status(exc, debug)
    return _print_report(report, quiet)


CHECK_EXIT_CODES_HELP = """\b
Exit codes:
  0   healthy: every recipient can be presence-gated
  1   internal error (a bug: please report it with the --debug output)
  2   usage error
  3   configuration error (missing/invalid config, unreadable password)
  4   authentication failed
  5   could not connect, or TLS failure
  6   timed out
  7   a JID given is invalid
  10  some recipient cannot be presence-gated (no subscription to their presence)
"""


@cli.command(epilog=CHECK_EXIT_CODES_HELP)
@click.argument("jids", nargs=-1, metavar="[JID]...")
@_connection_options
def check(
    jids: tuple[str, ...],
    config_path: Path | None,
    server: str | None,
    timeout: float | None,
    verbose: int,
    debug: bool,
) -> None:
    """Check the setup and say why someone would not be notified.

    \b
    Validates the config and who can read it and the password; logs in, timing each
    step (connect+TLS, auth, roster, presence); lists the bot's contacts with their
    subscription and presence; and, for every [[loginfo]] recipient and each JID given,
    says whether cvsmsg can see their presence, and if not what they must do. Answers
    pending subscription requests and asks recipients it cannot see, as notify does.
    The one command that prints to stdout.
    """
    _setup_logging(False, verbose, debug, [])
    try:
        from cvsmsg.check import run_check

        status = run_check(config_path, {"server": server, "timeout": timeout}, jids,
                           click.echo, on_config=lambda cfg: _setup_logging_secrets(cfg.password))
    except (CvsmsgError, KeyboardInterrupt, Exception) as exc:
        status = _error_status(exc, debug)
    sys.exit(int(status))


def _drain_stdin() -> None:
    """Read a piped stdin to its end, so CVS never writes into a closed pipe."""
    stdin = sys.stdin
    if stdin is None or stdin.isatty():
        return
    with contextlib.suppress(OSError, ValueError):
        while stdin.buffer.read(1 << 20):
            pass


# -- the spool: queue, flush, serve and the background deliverer (issue 3) ------------------

_config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: $CVSMSG_CONFIG, ~/.config/cvsmsg/config.toml, "
         "/etc/cvsmsg/config.toml).",
)


def _load_spool_config(config_path: Path | None, **overrides: Any) -> tuple[Config, Spool]:
    """(cfg, spool) for the spool commands; errors are CvsmsgError like everywhere."""
    from cvsmsg.config import load_config
    from cvsmsg.handoff import open_spool

    cfg = load_config(config_path, overrides=overrides)
    _setup_logging_secrets(cfg.password)
    return cfg, open_spool(cfg, os.environ)


def _guard(debug: bool, run: Any) -> ExitStatus:
    """Run `run()`; a CvsmsgError becomes one line and its exit code, a bug exit 1."""
    try:
        return ExitStatus(run())
    except CvsmsgError as exc:
        log.error("error: %s", exc, exc_info=debug)
        return exc.status
    except KeyboardInterrupt:
        log.error("error: interrupted")
        return ExitStatus.TIMEOUT
    except Exception as exc:
        log.error("error: internal error: %s: %s (rerun with --debug)", type(exc).__name__, exc,
                  exc_info=debug)
        return ExitStatus.INTERNAL


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


@cli.command("queue")
@_config_option
@click.option("--drop", "drop", multiple=True, metavar="ID",
              help="Remove the message ID (or a unique prefix of it); repeatable.")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def queue_command(config_path: Path | None, drop: tuple[str, ...], debug: bool) -> None:
    """List the messages waiting in the spool: recipient, age, attempts, reason.

    Messages wait there when they were withheld (offline, dnd) or could not be sent
    (server down, authentication, timeout), or until the background deliverer or
    `cvsmsg serve` sends them.
    """
    _setup_logging(False, 0, debug, [])

    def run() -> ExitStatus:
        _cfg, spool = _load_spool_config(config_path)
        if drop:
            return _drop(spool, drop)
        _list_queue(spool)
        return ExitStatus.OK

    sys.exit(int(_guard(debug, run)))


def _drop(spool: Spool, wanted: tuple[str, ...]) -> ExitStatus:
    from cvsmsg.errors import UsageError

    ids = spool.ids()
    for prefix in wanted:
        matches = [i for i in ids if i == prefix] or [i for i in ids if i.startswith(prefix)]
        if not matches:
            raise UsageError(f"no queued message {prefix!r} in {spool.path}")
        if len(matches) > 1:
            raise UsageError(f"{prefix!r} matches {len(matches)} messages: give more of the ID")
        entry = spool.drop(matches[0])
        if entry is None:
            raise UsageError(f"message {matches[0]} is being delivered right now (or is gone)")
        click.echo(f"dropped {entry.id} for {entry.recipient}")
    return ExitStatus.OK


def _list_queue(spool: Spool) -> None:
    import time

    from cvsmsg.spool import BAD_SUFFIX, DELIVER_LOCK, SERVE_LOCK

    entries = spool.entries()
    now = time.time()
    if entries:
        rows = [("ID", "RECIPIENT", "AGE", "ATTEMPTS", "REASON")]
        for e in entries:
            reason = e.reason or "waiting for delivery"
            rows.append((e.id, e.recipient, _age(now - e.created), str(e.attempts), reason))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            click.echo("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                       + "  " + r[4])
        noun = "message" if len(entries) == 1 else "messages"
        click.echo(f"{len(entries)} {noun} queued in {spool.path}")
    else:
        click.echo(f"no messages queued in {spool.path}")
    bad = sorted(spool.path.glob(f"*{BAD_SUFFIX}")) if spool.exists() else []
    if bad:
        click.echo(f"{len(bad)} unreadable file(s) set aside: {', '.join(p.name for p in bad)}")
    serve_pid = spool.holder(SERVE_LOCK) if spool.serve_running() else None
    if serve_pid:
        click.echo(f"cvsmsg serve is running (pid {serve_pid})")
    elif (pid := spool.holder(DELIVER_LOCK)) is not None:
        click.echo(f"the background deliverer is running (pid {pid})")


@cli.command()
@_config_option
@click.option("--server", metavar="HOST[:PORT]",
              help="Connect here instead of the JID's DNS SRV records.")
@click.option("--timeout", type=click.FloatRange(min=0.5), metavar="SECONDS",
              help="Deadline for connecting and for each confirmation (default: config "
                   "'timeout' or 10).")
@click.option("-q", "--quiet", is_flag=True, help="Only print errors.")
@click.option("-v", "--verbose", count=True, help="Say more.")
@click.option("--debug", is_flag=True, help="Show the XML stream (redacted) and tracebacks.")
def flush(config_path: Path | None, server: str | None, timeout: float | None, quiet: bool,
          verbose: int, debug: bool) -> None:
    """Try to deliver every queued message now, to each recipient who is available and
    not dnd (bursts are still combined into digests). Exit 0 when the queue is empty
    afterwards, 10 when messages are still withheld."""
    _setup_logging(quiet, verbose, debug, [])

    def run() -> ExitStatus:
        import asyncio

        from cvsmsg.drain import flush as drain_flush

        cfg, spool = _load_spool_config(config_path, server=server, timeout=timeout)
        if not spool.ids():
            if not quiet:
                click.echo(f"no messages queued in {spool.path}")
            return ExitStatus.OK
        stats = asyncio.run(drain_flush(cfg, spool))
        if not quiet:
            for jid, n in stats.delivered.items():
                click.echo(f"delivered to {jid}: {n} notification{'s' if n != 1 else ''}")
            for jid, reason in stats.withheld.items():
                click.echo(f"still queued for {jid}: {reason}")
        return ExitStatus.WITHHELD if spool.ids() else ExitStatus.OK

    sys.exit(int(_guard(debug, run)))


@cli.command()
@_config_option
@click.option("-q", "--quiet", is_flag=True, help="Only log warnings and errors.")
@click.option("-v", "--verbose", count=True, help="Log more (twice: protocol summary).")
@click.option("--debug", is_flag=True, help="Log the XML stream (redacted) and tracebacks.")
def serve(config_path: Path | None, quiet: bool, verbose: int, debug: bool) -> None:
    """Stay connected; deliver each queued message the moment its recipient is available
    and not dnd. While it runs, every `cvsmsg notify` hands its message to it through
    the spool. Logs to stderr (the journal under systemd); SIGTERM stops it cleanly.
    See examples/cvsmsg.service.
    """
    _setup_logging(quiet, max(verbose, 0 if quiet else 1), debug, [])

    def run() -> ExitStatus:
        from cvsmsg.serve import run_serve

        cfg, spool = _load_spool_config(config_path)
        run_serve(cfg, spool)
        return ExitStatus.OK

    sys.exit(int(_guard(debug, run)))


@cli.command(hidden=True)
@_config_option
@click.option("--lock-fd", type=int, help="The deliver lock, inherited from notify.")
@click.option("--server", metavar="HOST[:PORT]")
@click.option("--timeout", type=click.FloatRange(min=0.5))
def deliver(config_path: Path | None, lock_fd: int | None, server: str | None,
            timeout: float | None) -> None:
    """The detached background deliverer that `notify` starts (logs to deliver.log in
    the spool directory)."""
    os.chdir("/")  # never keep CVS's temporary directory busy

    def run() -> ExitStatus:
        from cvsmsg.drain import run_deliverer
        from cvsmsg.spool import DELIVER_LOCK

        cfg, spool = _load_spool_config(config_path, server=server, timeout=timeout)
        spool.ensure()
        _log_to_file(spool.path / "deliver.log", cfg.password)
        fd = lock_fd if lock_fd is not None else spool.try_lock(DELIVER_LOCK)
        if fd is None:
            log.info("a deliverer is already running")
            return ExitStatus.OK
        run_deliverer(cfg, spool, fd)
        return ExitStatus.OK

    _setup_logging(False, 1, False, [])
    sys.exit(int(_guard(False, run)))


LOG_ROTATE_BYTES = 1 << 20


def _log_to_file(path: Path, password: str) -> None:
    """The detached deliverer's log: appended, group-writable, one rotation at 1 MiB."""
    from cvsmsg.redact import RedactingFilter

    try:
        if path.stat().st_size > LOG_ROTATE_BYTES:
            os.replace(path, path.with_name(path.name + ".1"))
    except OSError:
        pass
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o660)
    except OSError:
        return  # stderr is /dev/null: nowhere better to say it
    if os.fstat(fd).st_uid == os.geteuid():
        os.fchmod(fd, 0o660)
    handler = logging.StreamHandler(os.fdopen(fd, "a", encoding="utf-8", buffering=1))
    handler.setFormatter(logging.Formatter(
        "%(asctime)s cvsmsg[%(process)d] %(levelname)s: %(message)s"
    ))
    handler.addFilter(RedactingFilter([password]))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code instead of raising SystemExit."""
    try:
        cli.main(args=argv, prog_name="cvsmsg", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        if isinstance(exc, click.UsageError) and exc.ctx and exc.ctx.info_name in STDIN_COMMANDS:
            _drain_stdin()  # a typo in CVSROOT/loginfo must not fail every commit
        exc.show()
        return ExitStatus.USAGE
    except click.exceptions.Abort:
        click.echo("cvsmsg: aborted", err=True)
        return ExitStatus.USAGE
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else ExitStatus.USAGE
    return ExitStatus.OK
