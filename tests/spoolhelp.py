"""Helpers for the spool tests: run any cvsmsg command, read the queue like a user."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import cvsmsg_command

NOTICE = "proj {name}\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"


def notice(name: str = "a.txt") -> str:
    """A CVS notify text for file `name`."""
    return NOTICE.format(name=name)


def cvsmsg(*args: str, input: str | bytes | None = None, env: dict[str, str] | None = None,
           timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run `cvsmsg ARGS` as a user would; text stdout and stderr."""
    data = input.encode() if isinstance(input, str) else input
    proc = subprocess.run(
        [*cvsmsg_command(), *args], input=data if data is not None else b"",
        capture_output=True, env={**os.environ, **(env or {})}, timeout=timeout, check=False,
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode,
                                       proc.stdout.decode("utf-8", "replace"),
                                       proc.stderr.decode("utf-8", "replace"))


def queue_rows(config: Path, env: dict[str, str] | None = None) -> list[list[str]]:
    """`cvsmsg queue` as rows (ID, RECIPIENT, AGE, ATTEMPTS, REASON), header excluded."""
    result = cvsmsg("queue", "--config", str(config), env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    if not lines or not lines[0].startswith("ID "):
        return []
    rows = []
    for line in lines[1:]:
        if re.match(r"^\d+ messages? queued in ", line):
            break
        rows.append(re.split(r"\s{2,}", line.rstrip(), maxsplit=4))
    return rows


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, step: float = 0.02
             ) -> bool:
    """Poll `predicate` until true or `timeout`; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def spool_files(spool: Path) -> list[str]:
    """The queued message files (what `ls SPOOL/*.msg` shows)."""
    return sorted(p.name for p in spool.glob("*.msg")) if spool.is_dir() else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def lock_pid(spool: Path, name: str) -> int | None:
    """The pid a deliverer or serve wrote into its lock file, if any."""
    try:
        text = (spool / f"{name}.lock").read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
