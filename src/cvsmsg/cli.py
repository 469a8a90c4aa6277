"""The click CLI: commands, their help, and options built from `cvsmsg.options`.

Only declarations: each command hands its parsed options to its body in
`cvsmsg.commands`, and `cvsmsg.main` turns what goes wrong into one line and an exit
code. Never imports slixmpp at module level: `cvsmsg --help` must stay fast.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import click

from cvsmsg import __version__, options
from cvsmsg.commands import BODIES, Io

EXIT_CODES_HELP = """\b
Exit codes:
  0   delivered to every recipient (background mode, or cvsmsg serve
      running: written to the spool for delivery)
  1   internal error (a bug: please report it with the --debug output)
  2   usage error (bad option, unreadable --file, empty or binary message)
  3   configuration error (missing/invalid/unreadable config, unreadable
      password, unusable spool directory)
  4   authentication failed     } the message is queued for later
  5   could not connect, or TLS }  delivery, and the error line
  6   timed out                 }  says so
  7   recipient invalid, or the server rejected the message
  10  withheld from at least one recipient (offline or dnd), nothing failed;
      queued for later delivery unless withheld = "drop"
  130 interrupted (Ctrl-C)
"""

CHECK_EXIT_CODES_HELP = """\b
Exit codes:
  0   healthy: every recipient can be presence-gated
  1   internal error (a bug: please report it with the --debug output)
  2   usage error
  3   configuration error (missing/invalid/unreadable config, unreadable password)
  4   authentication failed
  5   could not connect, or TLS failure
  6   timed out
  7   a JID given is invalid
  10  some recipient cannot be presence-gated (no subscription to their presence)
  130 interrupted (Ctrl-C)
  141 the reader of the output went away (cvsmsg check | head)
"""


class _TableType(click.ParamType):
    """A value converted by the option table's own function, so click and the fast
    parser accept and refuse exactly the same values."""

    def __init__(self, option: options.Option) -> None:
        self.option = option
        self.name = (option.metavar or "value").lower()

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value  # already converted (a default)
        try:
            return self.option.value(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def _click_option(option: options.Option) -> Callable[[Any], Any]:
    kind: dict[str, Any] = {options.FLAG: {"is_flag": True}, options.COUNT: {"count": True}}.get(
        option.action, {})
    if option.takes_value:
        kind = {
            "type": click.Choice(option.choices) if option.choices else _TableType(option),
            "metavar": option.metavar, "multiple": option.action == options.APPEND,
        }
    return click.option(*option.names, option.dest, help=option.help, **kind)


def table(command: options.Command) -> Callable[[Any], Any]:
    """Put `command`'s options and argument from the table on a click command."""

    def decorate(func: Any) -> Any:
        for option in reversed(command.options):
            func = _click_option(option)(func)
        if command.argument is not None:
            arg = command.argument
            func = click.argument(arg.dest, nargs=-1, required=arg.required,
                                  metavar=arg.metavar)(func)
        return func

    return decorate


def _command(name: str, epilog: str | None = None) -> Callable[[Any], Any]:
    """A click command whose callback runs the body `commands.BODIES[name]`."""
    spec = options.COMMANDS[name]

    def decorate(func: Callable[..., None]) -> click.Command:
        def run(**opts: Any) -> int:
            return BODIES[name](opts, Io.of_process())

        run.__doc__ = func.__doc__
        return cli.command(
            name, epilog=epilog, hidden=spec.hidden,
            context_settings={"allow_interspersed_args": spec.interspersed},
        )(table(spec)(run))

    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="cvsmsg")
def cli() -> None:
    """Presence-gated CVS notifications over XMPP.

    Sends what CVS pipes in to each recipient who is online and not in
    "do not disturb". Configure the bot's account in /etc/cvsmsg/config.toml.
    """


@_command("notify", EXIT_CODES_HELP)
def _notify() -> None:
    """Send the message to each RECIPIENT who is available and not dnd.

    \b
    In CVSROOT/notify:   ALL cvsmsg notify %s
    By hand:             cvsmsg notify --file message.txt dj@example.org

    Never writes to stdout: under client/server CVS it is the CVS protocol.
    """


@_command("loginfo", EXIT_CODES_HELP)
def _loginfo() -> None:
    """Tell the people who follow a directory about a commit (CVSROOT/loginfo).

    \b
    In CVSROOT/loginfo:  ALL cvsmsg loginfo %p %{sVv}
    With fixed people:   ^proj\\(/\\|$\\) cvsmsg loginfo --to dj@example.org %p %{sVv}

    Recipients: the first [[loginfo]] rule in the config whose 'match' regex is found in
    the directory (or the DEFAULT rule), every ALL rule, and each --to. Options go before
    %p. Each recipient who is available and not dnd gets the files, their revisions and
    the log message. No recipient for the directory: nothing is sent, exit 0.
    Never writes to stdout: under client/server CVS it is the CVS protocol.
    """


@_command("commitinfo")
def _commitinfo() -> None:
    """Record a commit's directories, so that loginfo sends one message per commit
    (CVSROOT/commitinfo).

    \b
    In CVSROOT/commitinfo:  ALL cvsmsg commitinfo %p
    In CVSROOT/loginfo:     ALL cvsmsg loginfo %p %{sVv}

    CVS runs it for every directory of a commit before anything is written; `cvsmsg
    loginfo` then collects each directory's files and, at the last one, sends one
    message. Always exits 0 (a failing commitinfo would abort the commit): problems are
    reported on stderr, and loginfo then sends one message per directory.
    """


@_command("check", CHECK_EXIT_CODES_HELP)
def _check() -> None:
    """Check the setup and say why someone would not be notified.

    \b
    Validates the config and who can read it and the password; logs in, timing each
    step (connect+TLS, auth, roster, presence); lists the bot's contacts with their
    subscription and presence; and, for every [[loginfo]] recipient and each JID given,
    says whether cvsmsg can see their presence, and if not what they must do. Answers
    pending subscription requests and asks recipients it cannot see, as notify does.
    The one command that prints to stdout.
    """


@_command("queue")
def _queue() -> None:
    """List the messages waiting in the spool: recipient, age, attempts, reason.

    Messages wait there when they were withheld (offline, dnd) or could not be sent
    (server down, authentication, timeout), or until the background deliverer or
    `cvsmsg serve` sends them.
    """


@_command("flush")
def _flush() -> None:
    """Try to deliver every queued message now, to each recipient who is available and
    not dnd (bursts are still combined into digests). Exit 0 when the queue is empty
    afterwards, 10 when messages are still withheld."""


@_command("serve")
def _serve() -> None:
    """Stay connected; deliver each queued message the moment its recipient is available
    and not dnd. While it runs, every `cvsmsg notify` hands its message to it through
    the spool. Logs to stderr (the journal under systemd); SIGTERM stops it cleanly.
    See examples/cvsmsg.service.
    """


@_command("config")
def _config() -> None:
    """Say which config file cvsmsg reads, or print a commented example (--example).

    \b
    Start a configuration:  cvsmsg config --example > /etc/cvsmsg/config.toml
    Exit 0 when a config file is found (or with --example), 3 when none is.
    """


@_command("deliver")
def _deliver() -> None:
    """The detached background deliverer that `notify` starts (logs to deliver.log in
    the spool directory)."""


def run(args: Sequence[str]) -> int:
    """Parse `args` with click and run the command; click's own errors propagate
    (click.ClickException, click.exceptions.Exit) for `cvsmsg.main` to report."""
    with cli.make_context("cvsmsg", list(args)) as ctx:
        return int(cli.invoke(ctx) or 0)
