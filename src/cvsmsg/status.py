"""Exit codes: defined once, documented in the README, mapped in one place (main.py).

An int subclass with named instances rather than an IntEnum: `enum` (and `re`, which
needs it) cost the background hand-off ~4 ms to import, and nothing here iterates or
names the codes.
"""

from __future__ import annotations


class ExitStatus(int):
    """What `cvsmsg` tells its caller. CVS ignores it; scripts and admins don't."""

    __slots__ = ()

    OK: ExitStatus  # delivered to every recipient
    INTERNAL: ExitStatus  # a bug in cvsmsg; the message says to rerun with --debug
    USAGE: ExitStatus  # bad command line, unreadable --file, empty message
    CONFIG: ExitStatus  # missing/invalid config, unreadable or exposed password
    AUTH: ExitStatus  # the server refused our credentials
    CONNECT: ExitStatus  # could not connect, TLS failure, no TLS offered
    TIMEOUT: ExitStatus  # a deadline ran out
    RECIPIENT: ExitStatus  # invalid recipient, or the server rejected the message
    ROOM: ExitStatus  # a room could not be joined (the message is queued for it)
    WITHHELD: ExitStatus  # withheld from at least one recipient (offline/dnd), nothing failed
    INTERRUPTED: ExitStatus  # Ctrl-C (SIGINT), as shells report 128 + 2
    PIPE: ExitStatus  # our stdout's reader went away (`| head`), as shells report 128 + 13


ExitStatus.OK = ExitStatus(0)
ExitStatus.INTERNAL = ExitStatus(1)
ExitStatus.USAGE = ExitStatus(2)
ExitStatus.CONFIG = ExitStatus(3)
ExitStatus.AUTH = ExitStatus(4)
ExitStatus.CONNECT = ExitStatus(5)
ExitStatus.TIMEOUT = ExitStatus(6)
ExitStatus.RECIPIENT = ExitStatus(7)
ExitStatus.ROOM = ExitStatus(8)
ExitStatus.WITHHELD = ExitStatus(10)
ExitStatus.INTERRUPTED = ExitStatus(130)
ExitStatus.PIPE = ExitStatus(141)
