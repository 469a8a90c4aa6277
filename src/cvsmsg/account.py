"""The Unix account this process runs as: the one place that asks the password database."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def unix_name() -> str | None:
    """Our login name from the password database; None for a uid it does not know
    (a container's arbitrary uid), so callers choose their own fallback."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None


def committer(env: Mapping[str, str], account_name: str | None = None) -> str:
    """Who committed (or edited): CVS gives no name, but runs the command as that user.

    `CVS_USER` is the CVS name under pserver (empty otherwise); then LOGNAME and USER,
    as CVS itself looks them up; then `account_name`, else the account of the process
    (looked up only then: the password database is not free).
    """
    for key in ("CVS_USER", "LOGNAME", "USER"):
        value = env.get(key, "").strip()
        if value:
            return value
    return account_name or unix_name() or "unknown user"
