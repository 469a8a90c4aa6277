"""Reading what CVS pipes in: the whole of stdin, capped, and never leaving it unread.

A notify or loginfo command that exits before reading all of its stdin can make CVS die of
SIGPIPE ("received broken pipe signal") and abort `cvs edit` or `cvs commit`: every path
reads through here. No click, no typing: the fast path imports this.
"""

from __future__ import annotations

import contextlib

from cvsmsg.logs import get_logger

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import IO

log = get_logger(__name__)

# Far above any CVS notification; keeps a runaway pipe from eating memory. Also the cap on
# a spool file's body (spool.py): what lands on disk.
MAX_INPUT_BYTES = 32 * 1024 * 1024
_CHUNK = 1 << 20


def read_stdin(stdin: IO[bytes] | None, no_input: str) -> bytes:
    """All of a piped stdin (at most MAX_INPUT_BYTES kept); UsageError(no_input) for a
    terminal or a closed stdin, where nobody piped anything."""
    from cvsmsg.errors import UsageError

    if stdin is None or stdin.isatty():
        raise UsageError(no_input)
    data = stdin.read(MAX_INPUT_BYTES + 1)
    if len(data) > MAX_INPUT_BYTES:
        drain(stdin)  # the writer must never see a broken pipe
        log.warning("input is larger than %d MiB: only that much was used",
                    MAX_INPUT_BYTES // _CHUNK)
        data = data[:MAX_INPUT_BYTES]
    return data


def read_file(path: str) -> bytes:
    """The message from `--file PATH`, capped like stdin; an unreadable file is a usage
    error (exit 2), not a traceback."""
    from cvsmsg.errors import UsageError

    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read --file {path}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        log.warning("input is larger than %d MiB: only that much was used",
                    MAX_INPUT_BYTES // _CHUNK)
        data = data[:MAX_INPUT_BYTES]
    return data


def drain(stdin: IO[bytes] | None) -> None:
    """Read a piped stdin to its end and drop it, so the writer never hits a closed pipe."""
    if stdin is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if stdin.isatty():
            return
        while stdin.read(_CHUNK):
            pass
