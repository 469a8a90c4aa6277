"""One commit's record, so that a commit touching several directories gives one message.

CVS runs `CVSROOT/commitinfo` for every directory of a commit before it writes anything,
then `CVSROOT/loginfo` once per directory after each is written (CVS's contrib
`log_accum.pl` works the same way). `cvsmsg commitinfo` adds the directory to the
commit's record; `cvsmsg loginfo` adds its part (its arguments and text) and, when every
recorded directory has one, takes all the parts and removes the record.

Each hook is its own process, so the record is keyed by what every process of one commit
shares: the CVS user, the repository, $CVS_PID and the nearest `cvs` ancestor (its pid
and start time, so a reused pid is another key). The record lives in SPOOL/commits/,
created like the spool, and is opened like every spool file (never through a link, one
link, ours, mode 0660) and flocked while it is read and rewritten. Records of a commit
that was aborted after commitinfo are removed after STALE_SECONDS.

No slixmpp, no click: commitinfo runs once per directory before CVS writes anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass

from cvsmsg.errors import SpoolError
from cvsmsg.inputs import MAX_INPUT_BYTES
from cvsmsg.paths import COMMIT_SUFFIX, commit_record, commits_dir
from cvsmsg.procs import PROC, proc_stat
from cvsmsg.spool import Spool, open_shared

log = logging.getLogger(__name__)

STALE_SECONDS = 3600.0  # a record this old belongs to an aborted commit
LOCK_WAIT_SECONDS = 5.0  # a hook never waits longer than this for the record's lock
FORMAT = 1
_MAX_RECORD_BYTES = 4 * MAX_INPUT_BYTES
_MAX_ANCESTORS = 4  # commitinfo's parent is cvs; loginfo's is `sh -c`, then cvs


@dataclass(frozen=True)
class Part:
    """One loginfo run, as it was given: its arguments and its stdin text."""

    args: tuple[str, ...]
    text: str


def _cvs_process(proc: str) -> str:
    """`pid:starttime` of the nearest `cvs` ancestor (the one running the hooks), or ""."""
    pid = os.getppid()
    for _ in range(_MAX_ANCESTORS):
        info = proc_stat(pid, proc)
        if info is None:
            return ""
        name, parent, started = info
        if name == "cvs":
            return f"{pid}:{started}"
        pid = parent
    return ""


def commit_key(env: Mapping[str, str], user: str, proc: str = PROC) -> str:
    """What every hook process of one commit computes alike (a hex digest)."""
    root = env.get("CVSROOT", "").rpartition(":")[2].rstrip("/")
    material = "\0".join((user, root, env.get("CVS_PID", ""), _cvs_process(proc)))
    return hashlib.sha256(material.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def relative_directory(value: str, env: Mapping[str, str]) -> str:
    """commitinfo's directory as loginfo's `%p` names it: `/srv/cvs/proj/a` → `proj/a`."""
    root = env.get("CVSROOT", "").rpartition(":")[2].rstrip("/")
    value = value.rstrip("/") or value
    if root and value.startswith(root + "/"):
        return value[len(root) + 1 :]
    return value


def _ensure_dir(spool: str, shared: bool) -> str:
    """SPOOL/commits, created like the spool (setgid and sticky when shared)."""
    Spool(spool, shared=shared).ensure()
    directory = commits_dir(spool)
    Spool(directory, shared=shared).ensure()
    return directory


def _lock(fd: int, path: str) -> None:
    """An exclusive flock within LOCK_WAIT_SECONDS: nobody can hold a commit up."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SpoolError(f"{path} stayed locked for {LOCK_WAIT_SECONDS:g} s") from None
            time.sleep(0.01)


def _open_record(path: str, *, create: bool) -> int | None:
    """The record, opened safely and locked; None when it does not exist (or is not
    ours: a record made by someone else is never trusted)."""
    try:
        fd = open_shared(path, os.O_RDWR, create=create)
    except FileNotFoundError:
        return None
    if os.fstat(fd).st_uid != os.geteuid():
        os.close(fd)
        log.warning("%s belongs to another user: ignoring it", path)
        return None
    try:
        _lock(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read(fd: int, path: str) -> dict:
    """The record's content; an empty or unreadable one starts afresh (with a warning)."""
    chunks = []
    size = 0
    while size <= _MAX_RECORD_BYTES and (chunk := os.pread(fd, 1 << 20, size)):
        chunks.append(chunk)
        size += len(chunk)
    raw = b"".join(chunks)
    if not raw:
        return {}
    try:
        data = json.loads(raw)
        if (
            isinstance(data, dict) and data.get("format") == FORMAT
            and isinstance(data.get("directories"), list)
            and all(isinstance(d, str) for d in data["directories"])
            and isinstance(data.get("parts"), list)
            and all(_valid_part(p) for p in data["parts"])
        ):
            return data
    except ValueError:
        pass
    log.warning("commit record %s is not valid: starting it afresh", path)
    return {}


def _valid_part(part: object) -> bool:
    return (
        isinstance(part, dict) and isinstance(part.get("text"), str)
        and isinstance(part.get("args"), list) and all(isinstance(a, str) for a in part["args"])
        and isinstance(part.get("directory"), str)
    )


def _write(fd: int, data: dict) -> None:
    raw = json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogateescape")
    os.ftruncate(fd, 0)
    os.pwrite(fd, raw, 0)
    os.fsync(fd)


def record_directory(spool: str, shared: bool, key: str, directory: str,
                     now: float | None = None) -> None:
    """commitinfo: add `directory` to the commit's record (creating it), and remove this
    user's stale records of aborted commits. Raises SpoolError."""
    directory_path = _ensure_dir(spool, shared)
    remove_stale(directory_path, time.time() if now is None else now)
    path = commit_record(spool, key)
    fd = _open_record(path, create=True)
    if fd is None:
        raise SpoolError(f"cannot use the commit record {path}")
    try:
        data = _read(fd, path) or {"format": FORMAT, "directories": [], "parts": []}
        if directory not in data["directories"]:
            data["directories"].append(directory)
        _write(fd, data)
    finally:
        os.close(fd)


def add_part(spool: str, key: str, directory: str, also: str, part: Part
             ) -> list[Part] | None:
    """loginfo: store this directory's part. Returns every part, in commitinfo's order,
    when this was the last one (the record is then removed); [] while others are still
    to come; None when there is no record for this commit or it does not list this
    directory (`also`: another name for it, `Update of`'s absolute path): the caller
    then sends this part alone, as before."""
    path = commit_record(spool, key)
    fd = _open_record(path, create=False)
    if fd is None:
        return None
    try:
        data = _read(fd, path)
        names = data.get("directories", [])
        name = directory if directory in names else also if also in names else None
        if name is None:
            return None
        parts = [p for p in data["parts"] if p["directory"] != name]
        parts.append({"directory": name, "args": list(part.args), "text": part.text})
        data["parts"] = parts
        done = {p["directory"] for p in parts}
        if not all(d in done for d in names):
            _write(fd, data)
            return []
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        by_name = {p["directory"]: p for p in parts}
        return [Part(tuple(by_name[d]["args"]), by_name[d]["text"]) for d in names]
    finally:
        os.close(fd)


def remove_stale(directory: str, now: float, max_age: float = STALE_SECONDS) -> None:
    """Our records older than `max_age` (a commit aborted after commitinfo)."""
    with contextlib.suppress(OSError), os.scandir(directory) as it:
        for item in it:
            if not item.name.endswith(COMMIT_SUFFIX):
                continue
            with contextlib.suppress(OSError):
                st = item.stat(follow_symlinks=False)
                if (stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
                        and now - st.st_mtime > max_age):
                    os.unlink(item.path)
