"""Exit codes: defined once, documented in the README, mapped in one place (main.py).

Type checkers see an IntEnum; at run time the codes are instances of a plain int subclass:
`enum` (and `re`, which needs it) cost the background hand-off ~4 ms to import, and
nothing here iterates over the codes or names them.
"""

TYPE_CHECKING = False
if TYPE_CHECKING:
    from enum import IntEnum as _Codes
else:

    class _Codes(int):
        """Turns the int attributes of a subclass into instances of it (OK = 0 becomes
        ExitStatus(0)), so a code is an ExitStatus wherever it goes."""

        __slots__ = ()

        def __init_subclass__(cls) -> None:
            super().__init_subclass__()
            for name, value in list(vars(cls).items()):
                if name.isupper() and type(value) is int:
                    setattr(cls, name, cls(value))


class ExitStatus(_Codes):
    """What `cvsmsg` tells its caller. CVS ignores it; scripts and admins don't."""

    __slots__ = ()

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
    PIPE = 141  # our stdout's reader went away (`| head`), as shells report 128 + 13
