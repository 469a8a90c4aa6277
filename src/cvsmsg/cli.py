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
    from cvsmsg.app import Report
    from cvsmsg.config import Config

log = logging.getLogger("cvsmsg")

# Commands CVS runs with text on stdin.
STDIN_COMMANDS = ("notify", "loginfo")
# Far above any CVS notification; keeps a runaway pipe from eating memory.
MAX_INPUT_BYTES = 32 * 1024 * 1024

EXIT_CODES_HELP = """\b
Exit codes:
  0   delivered to every recipient
  1   internal error (a bug: please report it with the --debug output)
  2   usage error (bad option, unreadable --file, empty or binary message)
  3   configuration error (missing/invalid config, unreadable password)
  4   authentication failed
  5   could not connect, or TLS failure
  6   timed out
  7   recipient invalid, or the server rejected the message
  10  withheld from at least one recipient (offline or dnd), nothing failed
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
    status = _run_notify(
        recipients, config_path, file, subject, message_type, server, timeout, quiet, debug
    )
    sys.exit(int(status))


def _run_notify(
    recipients: tuple[str, ...],
    config_path: Path | None,
    file: Path | None,
    subject: str | None,
    message_type: str | None,
    server: str | None,
    timeout: float | None,
    quiet: bool,
    debug: bool,
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
    from cvsmsg.app import notify as run

    return run(cfg, recipients, subject, text)


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
    status = _run_loginfo(cvs_args, to, config_path, message_type, server, timeout, quiet,
                          debug)
    sys.exit(int(status))


def _account_name() -> str | None:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def _run_loginfo(
    cvs_args: tuple[str, ...],
    to: tuple[str, ...],
    config_path: Path | None,
    message_type: str | None,
    server: str | None,
    timeout: float | None,
    quiet: bool,
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
