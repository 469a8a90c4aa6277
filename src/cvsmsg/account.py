"""The Unix account this process runs as: the one place that asks the password database."""

from __future__ import annotations

import os


def unix_name() -> str | None:
    """Our login name from the password database; None for a uid it does not know
    (a container's arbitrary uid), so callers choose their own fallback."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return None
