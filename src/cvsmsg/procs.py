"""Processes by identity, from Linux /proc: `PID:START` (START is field 22 of
/proc/PID/stat, the start time in clock ticks since boot), so a reused pid is another
process.

Two uses: a queued message records the CVS process that dropped it ($CVS_PID, the
variable commitinfo also uses), and the deliverer sends a burst at once when every CVS
command that dropped it has exited instead of waiting out the coalescing window; a lock
holder records its own identity, so cvsmsg-drop can tell a live deliverer from a stale
pid without starting a process. Where /proc says nothing, nothing has ended.

No slixmpp, no click: the hand-off imports this module and must stay fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

PROC = Path("/proc")
_KEY = re.compile("([0-9]{1,10}):([0-9]{1,20})")


def proc_stat(pid: int, proc: Path = PROC) -> tuple[str, int, str] | None:
    """(command name, parent pid, start time) of `pid` from /proc, or None."""
    try:
        data = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    name = data[data.find("(") + 1 : data.rfind(")")]
    fields = data[data.rfind(")") + 2 :].split()
    try:
        return name, int(fields[1]), fields[19]
    except (IndexError, ValueError):
        return None


def identity(pid: int, proc: Path = PROC) -> str:
    """`PID:START` of a running process, or "" when /proc does not show it."""
    info = proc_stat(pid, proc)
    return "" if info is None else f"{pid}:{info[2]}"


def dropper(env: Mapping[str, str], proc: Path = PROC) -> str:
    """The identity of the CVS process running our hook ($CVS_PID), or ""."""
    value = env.get("CVS_PID", "")
    return identity(int(value), proc) if value.isdigit() and len(value) <= 10 else ""


def ended(key: str, proc: Path = PROC) -> bool:
    """True when the process `PID:START` is known to be gone (no such pid, or another
    process under it); False while it runs, and whenever /proc cannot tell."""
    match = _KEY.fullmatch(key)
    if match is None or not (proc / "self" / "stat").exists():
        return False
    pid, start = match.groups()
    try:
        data = (proc / pid / "stat").read_text()
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    fields = data[data.rfind(")") + 2 :].split()
    return len(fields) > 19 and fields[19] != start


def exit_fd(key: str, proc: Path = PROC) -> int | None:
    """A pidfd that becomes readable when the process `PID:START` exits, or None (gone
    already, or no pidfd_open here)."""
    match = _KEY.fullmatch(key)
    if match is None:
        return None
    try:
        fd = os.pidfd_open(int(match.group(1)))
    except (AttributeError, OSError):
        return None
    if identity(int(match.group(1)), proc) != key:  # the pid was reused before we opened
        os.close(fd)
        return None
    return fd
