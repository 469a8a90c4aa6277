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
from collections.abc import Mapping

from cvsmsg.message import is_decimal

PROC = "/proc"  # a string: pathlib (with re and urllib it imports) costs the hand-off ~4 ms


def parse_key(key: str) -> tuple[int, str] | None:
    """`PID:START` as (pid, start), or None when it is not 1-10 and 1-20 ASCII digits."""
    pid, colon, start = key.partition(":")
    if not colon or not is_decimal(pid, 10) or not is_decimal(start, 20):
        return None
    return int(pid), start


def _read_stat(pid: int | str, proc: str) -> str:
    with open(os.path.join(proc, str(pid), "stat"), encoding="utf-8",
              errors="surrogateescape") as fh:
        return fh.read()


def _fields(data: str) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces and parentheses):
    [0] is the state, [1] the parent pid, [19] the start time."""
    return data[data.rfind(")") + 2 :].split()


def proc_stat(pid: int, proc: str = PROC) -> tuple[str, int, str] | None:
    """(command name, parent pid, start time) of `pid` from /proc, or None."""
    try:
        data = _read_stat(pid, proc)
    except (OSError, ValueError):
        return None
    name = data[data.find("(") + 1 : data.rfind(")")]
    fields = _fields(data)
    try:
        return name, int(fields[1]), fields[19]
    except (IndexError, ValueError):
        return None


def identity(pid: int, proc: str = PROC) -> str:
    """`PID:START` of a running process, or "" when /proc does not show it."""
    info = proc_stat(pid, proc)
    return "" if info is None else f"{pid}:{info[2]}"


def dropper(env: Mapping[str, str], proc: str = PROC) -> str:
    """The identity of the CVS process running our hook ($CVS_PID), or ""."""
    value = env.get("CVS_PID", "")
    return identity(int(value), proc) if is_decimal(value, 10) else ""


def ended(key: str, proc: str = PROC) -> bool:
    """True when the process `PID:START` is known to be gone (no such pid, or another
    process under it); False while it runs, and whenever /proc cannot tell."""
    parsed = parse_key(key)
    if parsed is None or not os.path.exists(os.path.join(proc, "self", "stat")):
        return False
    pid, start = parsed
    try:
        data = _read_stat(pid, proc)
    except FileNotFoundError:
        return True
    except (OSError, ValueError):
        return False
    fields = _fields(data)
    return len(fields) > 19 and fields[19] != start


def exit_fd(key: str, proc: str = PROC) -> int | None:
    """A pidfd that becomes readable when the process `PID:START` exits, or None (gone
    already, or no pidfd_open here)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    try:
        fd = os.pidfd_open(parsed[0])
    except (AttributeError, OSError):
        return None
    if identity(parsed[0], proc) != key:  # the pid was reused before we opened
        os.close(fd)
        return None
    return fd
