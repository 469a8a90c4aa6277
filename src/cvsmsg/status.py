"""Exit codes: one enum, documented in the README, mapped in one place (main.py)."""

from enum import IntEnum


class ExitStatus(IntEnum):
    """What `cvsmsg` tells its caller. CVS ignores it; scripts and admins don't."""

    OK = 0  # delivered to every recipient
    INTERNAL = 1  # a bug in cvsmsg; the message says to rerun with --debug
    USAGE = 2  # bad command line, unreadable --file, empty message
    CONFIG = 3  # missing/invalid config, unreadable or exposed password
    AUTH = 4  # the server refused our credentials
    CONNECT = 5  # could not connect, TLS failure, no TLS offered
    TIMEOUT = 6  # a deadline ran out
    RECIPIENT = 7  # invalid recipient, or the server rejected the message
    ROOM = 8  # a room could not be joined (the message is queued for it)
    WITHHELD = 10  # withheld from at least one recipient (offline/dnd), nothing failed
    INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2
