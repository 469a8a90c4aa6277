"""The opt-in diffstat of a commit message (`diffstat = true`): `+12 -3` per file.

Counted from `cvs rdiff -u` between the two revisions (an added file: every line of its
first revision; a removed one: every line of its last), run in read-only repository mode
(`cvs -R`, no locks: loginfo runs while the commit still holds them) against the
repository CVS gave the hook, all files within one time bound: what does not fit is left
without figures, and the message says so. It costs a process per file, hence opt-in.
"""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Iterable, Mapping

from cvsmsg.loginfo import Commit, FileChange

log = logging.getLogger(__name__)

DIFFSTAT_SECONDS = 5.0  # for the whole commit: CVS waits for loginfo
Stats = dict[tuple[str, str], tuple[int, int]]  # (directory, file) -> (added, removed)


def _count(diff: str) -> tuple[int, int]:
    """Lines added and removed in a unified diff (file headers excluded)."""
    added = removed = 0
    for line in diff.splitlines():
        if line.startswith("+") and not line.startswith("+++ "):
            added += 1
        elif line.startswith("-") and not line.startswith("--- "):
            removed += 1
    return added, removed


def _argv(repository: str, directory: str, change: FileChange) -> list[str]:
    path = f"{directory}/{change.name}"
    base = ["cvs", "-d", repository, "-R", "-Q", "-f"]
    if change.old is None:  # added: the whole first revision
        return [*base, "checkout", "-p", "-r", str(change.new), path]
    if change.new is None:  # removed: the whole last revision
        return [*base, "checkout", "-p", "-r", change.old, path]
    return [*base, "rdiff", "-u", "-r", change.old, "-r", change.new, path]


def diffstat(commits: Iterable[Commit], repository: str, env: Mapping[str, str],
             budget: float = DIFFSTAT_SECONDS) -> tuple[Stats, int]:
    """(figures per file, how many files were left without them for lack of time)."""
    deadline = time.monotonic() + budget
    stats: Stats = {}
    skipped = 0
    for commit in commits:
        for change in commit.files:
            left = deadline - time.monotonic()
            if left <= 0:
                skipped += 1
                continue
            try:
                proc = subprocess.run(
                    _argv(repository, commit.directory, change), env=dict(env), cwd="/",
                    stdin=subprocess.DEVNULL, capture_output=True, timeout=left, check=False,
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.info("diffstat of %s/%s: %s", commit.directory, change.name, exc)
                skipped += 1
                continue
            if proc.returncode not in (0, 1):  # rdiff exits 1 when the files differ
                skipped += 1
                continue
            text = proc.stdout.decode("utf-8", "replace")
            if change.old is None:
                figures = (len(text.splitlines()), 0)
            elif change.new is None:
                figures = (0, len(text.splitlines()))
            else:
                figures = _count(text)
            stats[(commit.directory, change.name)] = figures
    return stats, skipped
