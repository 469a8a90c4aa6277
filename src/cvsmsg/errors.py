"""One exception base; `cvsmsg.main` turns each into one line on stderr and an exit code."""

from cvsmsg.status import ExitStatus


class CvsmsgError(Exception):
    """Base: its message is shown to the user as is, on one line; `status` is the exit
    code, given once per kind: `class UsageError(CvsmsgError, status=ExitStatus.USAGE)`."""

    status = ExitStatus.CONFIG

    def __init_subclass__(cls, status: ExitStatus | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status


class UsageError(CvsmsgError, status=ExitStatus.USAGE):
    """Bad command line, unreadable --file, empty or binary message: nothing was sent."""


class ConfigError(CvsmsgError, status=ExitStatus.CONFIG):
    """Missing or invalid configuration, or a password that cannot be read safely."""


class AuthError(CvsmsgError, status=ExitStatus.AUTH):
    """The server refused the bot's credentials: retrying will not help."""


class ConnectError(CvsmsgError, status=ExitStatus.CONNECT):
    """Could not reach the server, or TLS could not be established/verified."""


class DeadlineError(CvsmsgError, status=ExitStatus.TIMEOUT):
    """A deadline ran out; the message names the phase."""


class RecipientError(CvsmsgError, status=ExitStatus.RECIPIENT):
    """An invalid recipient address, or a message the server rejected."""


class RoomError(CvsmsgError, status=ExitStatus.ROOM):
    """A group-chat room the bot cannot join (members-only, banned, no such room, password)
    or that refused the message: the message is queued for the room."""


class SpoolError(CvsmsgError, status=ExitStatus.CONFIG):
    """The spool directory cannot be created, written or read: an installation problem."""


class MessageRefused(RecipientError):
    """The server closed the stream over something we sent (too large, not well-formed):
    the message's fault, not the connection's. Drainers retry it alone, smaller, then set
    it aside; it never stops the others."""


# What ends a session without being anyone's configuration mistake: a long-lived path logs
# in again (with back-off), a one-shot run queues the message.
SESSION_LOST = (ConnectError, DeadlineError, MessageRefused)
