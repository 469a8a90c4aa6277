"""Helpers for the spool tests: run any cvsmsg command, read the queue like a user."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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
        text = (spool / f"{name}.lock").read_text().split()
    except OSError:
        return None
    return int(text[0]) if text and text[0].isdigit() else None  # PID START


HUNDRED_FILES = {f"f{i:03}.txt": f"{i}\n" for i in range(100)}


def commit_hundred_watched_files(tmp_path: Path, people: dict, line: str):
    """A real `cvs commit` of 100 files that each person in `people` (CVS user → Person)
    watches for commits, with CVSROOT/notify running `line`: (repo, result, seconds)."""
    from tests.harness.cvsrepo import CvsRepo

    repo = CvsRepo(tmp_path / "cvs", "local").create(HUNDRED_FILES)
    repo.checkout_all(*people, "bob")
    repo.install_notify(line, {u: p.jid for u, p in people.items()})
    for user in people:
        repo.watcher(user, "commit")
    bob = repo.checkout("bob")
    for name in HUNDRED_FILES:
        (bob.path / name).write_text("changed\n")
    started = time.monotonic()
    result = bob.cvs("commit", "-m", "touch everything", timeout=300)
    return repo, result, time.monotonic() - started


def first_lines(msgs) -> list[str]:
    """The `proj NAME` line of every notification received, digests unpacked, in order."""
    names = []
    for m in msgs:
        names += [line for line in m.body.splitlines() if line.startswith("proj ")]
    return names


def assert_every_watcher_got_every_commit(repo, people: dict) -> None:
    """Each watcher received all 100 notifications, once each, in order, coalesced."""
    expected = [f"proj {name}" for name in sorted(HUNDRED_FILES)]
    for p in people.values():
        assert wait_for(lambda p=p: len(first_lines(p.settle())) >= 100, 60)
    for user, p in people.items():
        msgs = p.settle()
        assert first_lines(msgs) == expected, user  # every one, once, in order
        assert len(msgs) <= 3, [m.subject for m in msgs]  # coalesced
        assert all(m.subject.startswith("CVS Watch Alarm") for m in msgs)
        assert all(f"Triggered commit watch on {repo.root}/proj" in m.body for m in msgs)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "16k") -> Iterator[Path]:
    """A tmpfs of `size` (a full disk on demand), unmounted whatever happens (lazily: a
    deliverer may still hold a file there); the test is skipped where mount is refused."""
    import pytest

    where.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs",
                       str(where)], capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def cvsmsg_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What cvsmsg logged: asyncio's "Task was destroyed" about an earlier test's session,
    collected when the garbage collector gets to it, is not this test's output."""
    return [r.getMessage() for r in caplog.records if r.name.split(".")[0] == "cvsmsg"]
