"""The error boundary: the one place where an exception becomes a line and an exit code.

`main()` catches; `program()` below it parses and runs a command and never catches to
report (httpie's core.main()/program() split). `notify` and `loginfo`, which CVS runs
once per watcher and file, are parsed from the option table without importing click
when the fast parser can read their argv exactly; everything else goes through click.
"""

from __future__ import annotations

import os
import sys

from cvsmsg.errors import CvsmsgError
from cvsmsg.logs import get_logger
from cvsmsg.status import ExitStatus

TYPE_CHECKING = False  # no `typing` at run time: the fast path's start-up
if TYPE_CHECKING:
    from collections.abc import Sequence

log = get_logger("cvsmsg")


def main(argv: Sequence[str] | None = None) -> int:
    """Console-script entry point: run `cvsmsg ARGS`, return the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    from cvsmsg import quickhelp

    if quickhelp.answer(args):  # --help, --version: click's text, without click
        return ExitStatus.OK
    status = _main(args, may_exit=argv is None)
    from cvsmsg import options

    command = options.COMMANDS.get(args[0]) if args else None
    if command is not None and command.never_fails:
        return ExitStatus.OK  # CVS would abort the commit: the error line is enough
    return status


def _main(args: list[str], may_exit: bool) -> int:
    """The boundary itself; `may_exit`: a console run, which a one-shot command that
    returned normally ends at once (see `exit_without_gc`)."""
    debug = _wants_debug(args)
    if may_exit and args and args[0] in FEW_CYCLES:
        import gc

        gc.set_threshold(GC_THRESHOLD)
    from cvsmsg import logs

    logs.to_stderr(debug=debug, lazy=True)  # until the command sets its own level
    try:
        result = program(args)
    except CvsmsgError as exc:
        log.error("error: %s", exc, exc_info=debug)
        return exc.status
    except KeyboardInterrupt:
        log.error("error: interrupted")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:
        # Whoever read our output stopped (`cvsmsg queue | head`): nothing to report, and
        # nothing more can go there; end quietly, as a tool killed by SIGPIPE does.
        _detach_stdout()
        return ExitStatus.PIPE
    except SystemExit as exc:  # sys.exit() in a library: keep its code
        return exc.code if isinstance(exc.code, int) else ExitStatus.INTERNAL
    except Exception as exc:
        status = _click_status(exc, args)
        if status is not None:
            return status
        # a bug, not a user error: still one line unless --debug
        log.error("error: internal error: %s: %s (rerun with --debug)", type(exc).__name__,
                  exc, exc_info=debug)
        return ExitStatus.INTERNAL
    if may_exit and args and args[0] in EXIT_WITHOUT_GC:
        exit_without_gc(result)
    return result


def _detach_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of what is still
    buffered does not fail again ("Exception ignored ... BrokenPipeError")."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError, AttributeError):
        pass


# The commands CVS runs once per file and watcher or directory: a run lasts ~0.1 s and
# leaves little cyclic garbage, but with the default threshold (700 new objects) the
# collector makes ~50 passes over the modules being imported, 10-15 ms of a direct notify.
# A high threshold, not none: a big message or roster still gets its garbage collected.
FEW_CYCLES = frozenset({"notify", "loginfo", "commitinfo"})
GC_THRESHOLD = 100_000


# One-shot commands that run once per file and watcher (notify, loginfo) or drain the
# spool (flush, deliver): once they have returned, every message is acked or queued.
EXIT_WITHOUT_GC = frozenset({"notify", "loginfo", "flush", "deliver"})


def exit_without_gc(status: int) -> None:
    """End the process now, skipping the interpreter's final garbage collection.

    Tearing down slixmpp's objects costs ~20 ms per run, after the work is done: the
    command has returned, so the server has acked every message or it is in the spool
    (fsynced). stdout, stderr and the log handlers are flushed and closed first; if
    flushing fails (a closed pipe), this returns and the interpreter exits as usual.
    """
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    logging = sys.modules.get("logging")  # imported only if something was logged
    if logging is not None:
        logging.shutdown()
    os._exit(int(status))


def program(args: list[str]) -> int:
    """Parse `args` and run the command; raises whatever goes wrong."""
    from cvsmsg import options

    command = options.COMMANDS.get(args[0]) if args else None
    if command is not None and (command.reads_stdin or command.never_fails):
        opts = options.parse(command, args[1:])
        if opts is not None:
            from cvsmsg.commands import BODIES, Io

            return int(BODIES[command.name](opts, Io.of_process()))
    from cvsmsg.cli import run

    return run(args)


def _click_status(exc: Exception, args: list[str]) -> int | None:
    """Click's own errors: its usage message as click shows it (exit 2), --help and
    --version (exit 0). None for anything else."""
    click = sys.modules.get("click")
    if click is None:
        return None  # click never ran: this cannot be one of its exceptions
    if isinstance(exc, click.exceptions.Exit):
        return int(exc.exit_code)
    if isinstance(exc, click.exceptions.Abort):
        log.error("aborted")
        return ExitStatus.USAGE
    if not isinstance(exc, click.ClickException):
        return None
    if isinstance(exc, click.UsageError) and _reads_stdin(args):
        # A typo in CVSROOT/loginfo must not fail every commit: CVS gets SIGPIPE if we
        # leave what it writes unread.
        from cvsmsg.inputs import drain

        drain(sys.stdin.buffer if sys.stdin else None)
    exc.show()
    return ExitStatus.USAGE


def _reads_stdin(args: list[str]) -> bool:
    from cvsmsg import options

    command = options.COMMANDS.get(args[0]) if args else None
    return command is not None and command.reads_stdin


def _wants_debug(args: list[str]) -> bool:
    """--debug anywhere among the options, before we know whether they parse."""
    return "--debug" in (args[: args.index("--")] if "--" in args else args)
