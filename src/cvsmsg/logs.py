"""Logging set-up, the only one: stderr for commands, a file for the detached deliverer.

Modules log with `logging.getLogger(__name__)`, or, on the paths that must start fast (the
background hand-off), with `logs.get_logger(__name__)`: the same logger, but `logging`
(~10 ms to import, with traceback, string and threading) is imported only when a line
is logged at a level that shows it. Only this module adds handlers. Every handler carries
the redaction filter, so the password and SASL payloads never reach a terminal or a log
file, whichever path logged them.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import logging
    from typing import IO, Any

STDERR_FORMAT = "cvsmsg: %(message)s"
DEBUG_FORMAT = "cvsmsg: %(name)s %(levelname)s: %(message)s"
FILE_FORMAT = "%(asctime)s cvsmsg[%(process)d] %(levelname)s: %(message)s"
# The deliverer's log is kept to this size, with one older copy (deliver.log.1).
ROTATE_BYTES = 1 << 20
# logging's levels, so that a line below the set-up's level costs no import
DEBUG, INFO, WARNING, ERROR = 10, 20, 30, 40

# A stderr set-up asked for lazily and not made yet (to_stderr's arguments), the level it
# will give, and the secrets added meanwhile.
_pending: dict[str, Any] = {}


class Logger:
    """`logging.getLogger(name)` for the fast paths: a line below the pending stderr
    set-up's level is dropped without importing `logging`; any other line makes the set-up
    first (see `to_stderr(lazy=True)`) and is logged as usual."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def isEnabledFor(self, level: int) -> bool:
        if _pending and "logging" not in sys.modules:
            return bool(level >= _pending["level"])
        return self._logger().isEnabledFor(level)

    def _logger(self) -> logging.Logger:
        activate()
        import logging

        return logging.getLogger(self.name)

    def _log(self, level: int, msg: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.isEnabledFor(level):
            self._logger().log(level, msg, *args, **kwargs)

    def debug(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(DEBUG, msg, args, kwargs)

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(INFO, msg, args, kwargs)

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(WARNING, msg, args, kwargs)

    def error(self, msg: str, *args: Any, **kwargs: Any) -> None:
        self._log(ERROR, msg, args, kwargs)


def get_logger(name: str) -> Logger:
    """The logger `name`, importing `logging` only when it has something to show."""
    return Logger(name)


def activate() -> None:
    """Make a pending lazy stderr set-up now: before loading code that logs through
    `logging` directly (asyncio, slixmpp, the XMPP modules)."""
    if _pending:
        args, secrets = _pending["args"], _pending["secrets"]
        _pending.clear()
        to_stderr(*args)
        for secret in secrets:
            add_secret(secret)


def to_stderr(quiet: bool = False, verbose: int = 0, debug: bool = False,
              stream: IO[str] | None = None, *, lazy: bool = False) -> None:
    """Lines on stderr: errors only with -q, warnings by default, -v info (a summary line
    of where a run's time went), -vv our debug lines (each phase), --debug everything
    including slixmpp's own log and the XML stream.

    `lazy`: made on the first line a `get_logger` logger shows, or by `activate()`; the
    caller must activate before running code that logs through `logging` itself. Made at
    once when `logging` is already imported."""
    if lazy and "logging" not in sys.modules:
        level = DEBUG if debug else ERROR if quiet else (
            (INFO if verbose == 1 else DEBUG) if verbose else WARNING)
        _pending.update(args=(quiet, verbose, debug, stream), level=level,
                        secrets=_pending.get("secrets", []))
        return
    _pending.clear()  # a set-up made now replaces a pending one
    import logging

    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(logging.Formatter(DEBUG_FORMAT if debug else STDERR_FORMAT))
    _install(handler, _secrets())
    root = logging.getLogger()
    slixmpp = logging.getLogger("slixmpp")
    if debug:
        root.setLevel(logging.DEBUG)
        slixmpp.setLevel(logging.NOTSET)
        return
    # slixmpp's own error lines are misleading ("No appropriate login method"): we say
    # what went wrong ourselves, in one line.
    slixmpp.setLevel(logging.CRITICAL)
    if quiet:
        root.setLevel(logging.ERROR)
    elif verbose:
        root.setLevel(logging.INFO if verbose == 1 else logging.DEBUG)
        slixmpp.setLevel(logging.WARNING)  # the library's internals are --debug's
    else:
        root.setLevel(logging.WARNING)


def to_file(path: str, secrets: list[str]) -> bool:
    """The detached deliverer's log (its stderr is /dev/null): appended, group-writable,
    rotated at ROTATE_BYTES. False when the file cannot be opened: nowhere to say so."""
    activate()
    import logging
    from logging.handlers import RotatingFileHandler  # socket, pickle...: the deliverer only

    class GroupWritableLog(RotatingFileHandler):
        """Mode 0660: in a group-shared spool the next user's deliverer must be able to
        write (and rotate) the same log."""

        def _open(self) -> Any:
            # never through a link planted in the shared spool (spool.open_log_file)
            fd = open_log_file(self.baseFilename)
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, 0o660)  # the umask must not take the group's write bit
            return os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    from cvsmsg.errors import SpoolError
    from cvsmsg.spool import open_log_file

    try:
        handler = GroupWritableLog(path, maxBytes=ROTATE_BYTES, backupCount=1, encoding="utf-8")
    except (OSError, SpoolError):
        return False
    handler.setFormatter(logging.Formatter(FILE_FORMAT))
    _install(handler, [*_secrets(), *secrets])
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("slixmpp").setLevel(logging.CRITICAL)
    return True


def add_secret(secret: str) -> None:
    """Redact `secret` from now on (the password, once the config has been read)."""
    if _pending:
        _pending["secrets"].append(secret)
        return
    if "logging" not in sys.modules:
        return  # no handler at all: nothing to redact for
    import logging

    from cvsmsg.redact import RedactingFilter

    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter) and secret and secret not in flt.secrets:
                flt.secrets.append(secret)


def _secrets() -> list[str]:
    """What the current handlers already redact: a new handler keeps hiding it."""
    import logging

    from cvsmsg.redact import RedactingFilter

    return [s for h in logging.getLogger().handlers for f in h.filters
            if isinstance(f, RedactingFilter) for s in f.secrets]


def _install(handler: logging.Handler, secrets: list[str]) -> None:
    import logging

    from cvsmsg.redact import RedactingFilter

    handler.addFilter(RedactingFilter(list(dict.fromkeys(secrets))))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = [handler]
