"""Logging set-up, the only one: stderr for commands, a file for the detached deliverer.

Modules log with `logging.getLogger(__name__)`; only this module adds handlers. Every
handler carries the redaction filter, so the password and SASL payloads never reach a
terminal or a log file, whichever path logged them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from cvsmsg.redact import RedactingFilter

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO, Any

STDERR_FORMAT = "cvsmsg: %(message)s"
DEBUG_FORMAT = "cvsmsg: %(name)s %(levelname)s: %(message)s"
FILE_FORMAT = "%(asctime)s cvsmsg[%(process)d] %(levelname)s: %(message)s"
# The deliverer's log is kept to this size, with one older copy (deliver.log.1).
ROTATE_BYTES = 1 << 20


def to_stderr(quiet: bool = False, verbose: int = 0, debug: bool = False,
              stream: IO[str] | None = None) -> None:
    """Lines on stderr: errors only with -q, warnings by default, -v info (a summary line
    of where a run's time went), -vv our debug lines (each phase), --debug everything
    including slixmpp's own log and the XML stream."""
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


def to_file(path: Path, secrets: list[str]) -> bool:
    """The detached deliverer's log (its stderr is /dev/null): appended, group-writable,
    rotated at ROTATE_BYTES. False when the file cannot be opened: nowhere to say so."""
    from logging.handlers import RotatingFileHandler  # socket, pickle...: the deliverer only

    class GroupWritableLog(RotatingFileHandler):
        """Mode 0660: in a group-shared spool the next user's deliverer must be able to
        write (and rotate) the same log."""

        def _open(self) -> Any:
            # never through a link planted in the shared spool (spool.open_log_file)
            fd = open_log_file(Path(self.baseFilename))
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
    for handler in logging.getLogger().handlers:
        for flt in handler.filters:
            if isinstance(flt, RedactingFilter) and secret and secret not in flt.secrets:
                flt.secrets.append(secret)


def _secrets() -> list[str]:
    """What the current handlers already redact: a new handler keeps hiding it."""
    return [s for h in logging.getLogger().handlers for f in h.filters
            if isinstance(f, RedactingFilter) for s in f.secrets]


def _install(handler: logging.Handler, secrets: list[str]) -> None:
    handler.addFilter(RedactingFilter(list(dict.fromkeys(secrets))))
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):
            old.close()
    root.handlers[:] = [handler]
