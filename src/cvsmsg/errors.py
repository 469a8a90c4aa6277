"""One exception base; `cvsmsg.main` turns each into one line on stderr and an exit code."""

from cvsmsg.status import ExitStatus


class CvsmsgError(Exception):
    """Base: its message is shown to the user as is, on one line."""

    status = ExitStatus.CONFIG


class UsageError(CvsmsgError):
    status = ExitStatus.USAGE


class ConfigError(CvsmsgError):
    status = ExitStatus.CONFIG


class AuthError(CvsmsgError):
    status = ExitStatus.AUTH


class ConnectError(CvsmsgError):
    """Could not reach the server, or TLS could not be established/verified."""

    status = ExitStatus.CONNECT


class DeadlineError(CvsmsgError):
    status = ExitStatus.TIMEOUT


class RecipientError(CvsmsgError):
    status = ExitStatus.RECIPIENT


class SpoolError(CvsmsgError):
    """The spool directory cannot be created, written or read: an installation problem."""

    status = ExitStatus.CONFIG


class MessageRefused(RecipientError):
    """The server closed the stream over something we sent (too large, not well-formed):
    the message's fault, not the connection's. Drainers retry it alone, smaller, then set
    it aside; it never stops the others."""
