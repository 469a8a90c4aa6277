"""The durable queue: one file per message in a directory several Unix users can share.

Layout of the spool directory (setgid, group-writable, so every CVS user of one group can
add, deliver and remove messages whoever queued them):

    ID.msg         one message (JSON), written atomically: temp file, fsync, link, fsync dir
    .tmp-*         a message being written (ignored; left-overs of a killed writer are
                   removed after an hour)
    ID.bad         a message file that could not be parsed (kept for a human, never sent)
    deliver.lock   held by the one process draining the spool (background deliverer or
                   serve); contains its pid
    serve.lock     held by `cvsmsg serve` for its lifetime; contains its pid
    wake           a FIFO: a writer drops a byte in it so a waiting drainer looks at once
    incoming/      raw drops of the sh hand-off `cvsmsg-drop` (see drops.py): every drainer
                   turns them into messages before it looks at the spool

Each message is claimed with an exclusive `flock` on its own file before it is sent, and
unlinked only after the server acknowledged it, so concurrent runs never send one message
twice; a claim dies with its process (kill -9 included).

No slixmpp, no click: the background hand-off imports this module and must stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from cvsmsg.errors import SpoolError

TYPE_CHECKING = False  # no `typing` at run time: the hand-off must start fast
if TYPE_CHECKING:
    from typing import Any

log = logging.getLogger(__name__)

SYSTEM_SPOOL_DIR = Path("/var/spool/cvsmsg")
SHARED_DIR_MODE = 0o2770  # setgid: files get the directory's group, whoever writes them
PRIVATE_DIR_MODE = 0o700  # the per-user fallback is nobody else's business
FILE_MODE = 0o660
SUFFIX = ".msg"
BAD_SUFFIX = ".bad"
TMP_PREFIX = ".tmp-"
STALE_TMP_SECONDS = 3600.0
DELIVER_LOCK = "deliver"
SERVE_LOCK = "serve"
WAKE_FIFO = "wake"
FORMAT_VERSION = 1


def user_spool_dir(env: Mapping[str, str]) -> Path:
    """The per-user fallback: $XDG_STATE_HOME/cvsmsg/spool (~/.local/state/cvsmsg/spool)."""
    state = env.get("XDG_STATE_HOME") or ""
    base = Path(state) if state.startswith("/") else Path.home() / ".local" / "state"
    return base / "cvsmsg" / "spool"


def _usable(path: Path) -> bool:
    if path.is_dir():
        return os.access(path, os.W_OK | os.X_OK)
    return not path.exists() and os.access(path.parent, os.W_OK | os.X_OK)


def resolve_spool_dir(
    configured: Path | None, env: Mapping[str, str], system: Path = SYSTEM_SPOOL_DIR
) -> tuple[Path, bool, str | None]:
    """(directory, shared, warning): the configured one, else the system one if we can
    write it, else a private per-user directory (with a warning when the system one
    exists but is not ours to write: the admin forgot to put us in its group)."""
    if configured is not None:
        return configured, True, None
    if _usable(system):
        return system, True, None
    fallback = user_spool_dir(env)
    warning = None
    if system.exists():
        warning = (
            f"spool {system} is not writable by you: using {fallback} "
            "(ask the admin to add you to its group)"
        )
    return fallback, False, warning


def new_id(now_ns: int | None = None) -> str:
    """Sortable by creation time (microseconds, hex), plus randomness for uniqueness."""
    micros = (time.time_ns() if now_ns is None else now_ns) // 1000
    return f"{micros:013x}-{os.urandom(3).hex()}"


@dataclass(frozen=True)
class Entry:
    """One queued message for one recipient, with what we know about its history."""

    id: str
    recipient: str
    subject: str
    body: str
    type: str = "normal"
    cvs_user: str = ""
    created: float = 0.0
    attempts: int = 0  # delivery attempts that did not deliver it
    reason: str = ""  # why it is still here: "dnd (resource desk)", "cannot connect …"
    last_attempt: float | None = None

    @property
    def queued(self) -> bool:
        """True once a run withheld it or failed to send it (a fresh hand-off is not)."""
        return self.attempts > 0

    def to_json(self) -> bytes:
        data = {
            "v": FORMAT_VERSION, "recipient": self.recipient, "subject": self.subject,
            "body": self.body, "type": self.type, "cvs_user": self.cvs_user,
            "created": self.created, "attempts": self.attempts, "reason": self.reason,
            "last_attempt": self.last_attempt,
        }
        return json.dumps(data, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"

    @classmethod
    def from_json(cls, entry_id: str, raw: bytes) -> Entry:
        """Parse a message file; ValueError when it is not one of ours."""
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict) or data.get("v") != FORMAT_VERSION:
            raise ValueError("not a cvsmsg spool file of a known version")
        try:
            return cls(
                id=entry_id, recipient=str(data["recipient"]), subject=str(data["subject"]),
                body=str(data["body"]), type=str(data.get("type") or "normal"),
                cvs_user=str(data.get("cvs_user") or ""), created=float(data["created"]),
                attempts=int(data.get("attempts") or 0), reason=str(data.get("reason") or ""),
                last_attempt=(None if data.get("last_attempt") is None
                              else float(data["last_attempt"])),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"missing or bad field: {exc}") from None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Claim:
    """Exclusive ownership of one message file, held by an flock until `release`."""

    def __init__(self, spool: Spool, entry: Entry, fd: int) -> None:
        self.spool = spool
        self.entry = entry
        self._fd: int | None = fd

    def remove(self) -> None:
        """Delete the message (the server has it, or it expired). Call `Spool.sync` after a
        batch to make the removals durable."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.spool.file_of(self.entry.id))

    def update(self, **changes: Any) -> Entry:
        """Rewrite the message atomically with `changes`; the last thing a claimant does
        (the new file is a new inode, which our lock does not cover)."""
        self.entry = replace(self.entry, **changes)
        self.spool._write(self.entry, replace_existing=True)
        return self.entry

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Spool:
    """A spool directory; `clock` is injectable for tests of ageing."""

    def __init__(self, path: Path, *, shared: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.shared = shared
        self.clock = clock

    # -- directory ---------------------------------------------------------------------

    def ensure(self) -> Spool:
        """Create the directory on first use (setgid and group-writable when shared);
        raise SpoolError when we cannot write it."""
        mode = SHARED_DIR_MODE if self.shared else PRIVATE_DIR_MODE
        try:
            if not self.path.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    self.path.mkdir(mode=mode)
                    os.chmod(self.path, mode)  # mkdir's mode is cut by the umask; setgid too
                except FileExistsError:
                    pass  # another run made it first
        except OSError as exc:
            raise SpoolError(
                f"cannot create spool directory {self.path}: {exc.strerror or exc}"
            ) from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise SpoolError(
                f"spool directory {self.path} is not writable by you "
                "(the admin should make it group-writable for the CVS group: see README)"
            )
        return self

    def exists(self) -> bool:
        return self.path.is_dir()

    def file_of(self, entry_id: str) -> Path:
        return self.path / f"{entry_id}{SUFFIX}"

    def sync(self) -> None:
        """Make creations, renames and removals in the directory durable."""
        with contextlib.suppress(FileNotFoundError):
            _fsync_dir(self.path)

    # -- messages ------------------------------------------------------------------------

    def add(
        self, recipient: str, subject: str, body: str, *, mtype: str = "normal",
        cvs_user: str = "", attempts: int = 0, reason: str = "", created: float | None = None,
    ) -> Entry:
        """Queue one message durably; it is in the spool, fsynced, when this returns.
        `created`: when it was handed off, if earlier than now (a cvsmsg-drop file)."""
        self.ensure()
        now = self.clock() if created is None else created
        for _ in range(5):
            entry = Entry(
                new_id(int(now * 1e9)), recipient, subject, body, mtype, cvs_user, now,
                attempts, reason, now if attempts else None,
            )
            try:
                self._write(entry, replace_existing=False)
            except FileExistsError:
                continue  # the same microsecond and random suffix: pick another id
            return entry
        raise SpoolError(f"cannot find a free message name in {self.path}")

    def _write(self, entry: Entry, *, replace_existing: bool) -> None:
        """Temp file in the same directory, fsync, then link (new) or replace (update),
        then fsync the directory: a reader sees the whole old file or the whole new one."""
        tmp = self.path / f"{TMP_PREFIX}{entry.id}-{os.getpid()}-{os.urandom(2).hex()}"
        final = self.file_of(entry.id)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # group-writable whatever the caller's umask
                data = entry.to_json()
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace_existing:
                os.replace(tmp, final)
            else:
                try:
                    os.link(tmp, final)  # never clobbers an existing message
                except FileExistsError:
                    raise
                except OSError:
                    os.rename(tmp, final)  # a filesystem without hard links
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except FileExistsError:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SpoolError(
                f"cannot write to spool directory {self.path}: {exc.strerror or exc}"
            ) from None
        self.sync()

    def ids(self) -> list[str]:
        """IDs of the queued messages, oldest first."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f"cannot read spool directory {self.path}: {exc.strerror}") from None
        return sorted(n[: -len(SUFFIX)] for n in names if n.endswith(SUFFIX))

    def read(self, entry_id: str) -> Entry | None:
        """The message as it is now, without claiming it; None if it is gone or unreadable."""
        try:
            raw = self.file_of(entry_id).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SpoolError(f"cannot read {self.file_of(entry_id)}: {exc.strerror}") from None
        try:
            return Entry.from_json(entry_id, raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._quarantine(entry_id, str(exc))
            return None

    def entries(self) -> list[Entry]:
        """Every readable queued message, oldest first."""
        return [e for e in (self.read(i) for i in self.ids()) if e is not None]

    def _quarantine(self, entry_id: str, why: str) -> None:
        path = self.file_of(entry_id)
        with contextlib.suppress(OSError):
            os.rename(path, path.with_suffix(BAD_SUFFIX))
            log.warning("spool file %s is unreadable (%s): renamed to %s", path, why,
                        path.with_suffix(BAD_SUFFIX).name)

    def claim(self, entry_id: str) -> Claim | None:
        """Lock one message for delivery; None if it is gone or another run holds it."""
        path = self.file_of(entry_id)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SpoolError(f"cannot open {path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The file we locked must still be the one at `path`: another run may have
            # delivered and unlinked it, or rewritten it, between our open and our lock.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                os.close(fd)
                return None
            mine = os.fstat(fd)
            if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                os.close(fd)
                return None
            raw = b""
            while chunk := os.read(fd, 1 << 16):
                raw += chunk
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        try:
            entry = Entry.from_json(entry_id, raw)
        except (ValueError, UnicodeDecodeError) as exc:
            self._quarantine(entry_id, str(exc))
            os.close(fd)
            return None
        return Claim(self, entry, fd)

    def drop(self, entry_id: str) -> Entry | None:
        """Remove one message by hand (`cvsmsg queue --drop`); None if it is gone or busy."""
        claim = self.claim(entry_id)
        if claim is None:
            return None
        with claim:
            claim.remove()
        self.sync()
        return claim.entry

    def remove_stale_temp(self, max_age: float = STALE_TMP_SECONDS) -> None:
        """Temp files a killed writer left behind (never renamed, so never a message),
        here and in incoming/ (cvsmsg-drop's)."""
        now = time.time()
        for directory in (self.path, self.path / "incoming"):
            with contextlib.suppress(OSError):
                for name in os.listdir(directory):
                    if name.startswith(TMP_PREFIX):
                        path = directory / name
                        with contextlib.suppress(OSError):
                            if now - path.stat().st_mtime > max_age:
                                path.unlink()

    # -- locks and wake-ups --------------------------------------------------------------

    def _lock_file(self, name: str) -> Path:
        return self.path / f"{name}.lock"

    def try_lock(self, name: str) -> int | None:
        """An fd holding an exclusive lock on `name`.lock, or None if someone holds it."""
        self.ensure()
        path = self._lock_file(name)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        except OSError as exc:
            raise SpoolError(f"cannot open lock file {path}: {exc.strerror}") from None
        with contextlib.suppress(OSError):
            if os.fstat(fd).st_uid == os.geteuid():
                os.fchmod(fd, FILE_MODE)  # another group member must be able to lock it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def write_pid(fd: int, pid: int | None = None) -> None:
        """Record the holder's pid in the lock file, for `cvsmsg queue` and for tests."""
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid() if pid is None else pid}\n".encode(), 0)

    def holder(self, name: str) -> int | None:
        """The pid recorded in `name`.lock if that process is alive (for display: it never
        touches the lock, so it cannot make a would-be holder fail)."""
        try:
            text = self._lock_file(name).read_text().strip()
            pid = int(text)
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
        return pid

    def lock_held(self, name: str) -> bool:
        """True when some process holds `name`.lock (a shared probe: harmless to others
        probing, and a would-be holder retries)."""
        try:
            fd = os.open(self._lock_file(name), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # also drops our shared lock
        return False

    def announce_due(self, interval: float, now: float | None = None) -> bool:
        """True when no run has announced within `interval` seconds (temporary version)."""
        from cvsmsg.policy import announce_due

        try:
            st = os.stat(self.path / "announce", follow_symlinks=False)
            last = st.st_mtime if stat.S_ISREG(st.st_mode) else None
        except OSError:
            last = None
        return announce_due(last, time.time() if now is None else now, interval)

    def mark_announced(self) -> None:
        """A session has just announced: the stamp says so (temporary version)."""
        try:
            self.ensure()
            fd = os.open(self.path / "announce", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_CLOEXEC, FILE_MODE)
        except (OSError, SpoolError) as exc:
            log.debug("cannot write the announce stamp: %s", exc)
            return
        try:
            os.utime(fd)
        finally:
            os.close(fd)

    def serve_running(self) -> bool:
        """True while a `cvsmsg serve` holds the spool."""
        return self.lock_held(SERVE_LOCK)

    def wake(self) -> None:
        """Tell a waiting drainer (deliverer or serve) to look now; nobody listening is fine."""
        try:
            fd = os.open(self.path / WAKE_FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return  # no FIFO or no reader (ENXIO): nobody waits
        try:
            os.write(fd, b"!")
        except OSError as exc:
            if exc.errno != errno.EAGAIN:  # full means a wake-up is pending anyway
                log.debug("cannot wake the drainer: %s", exc)
        finally:
            os.close(fd)

    def open_wake_fifo(self) -> tuple[int, int]:
        """(reader, keeper) fds of the wake FIFO; the keeper is a writer we hold so the
        reader never sees end-of-file when the last notify closes its end."""
        path = self.path / WAKE_FIFO
        try:
            os.mkfifo(path, FILE_MODE)
            os.chmod(path, FILE_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise SpoolError(f"cannot create {path}: {exc.strerror}") from None
        if not stat.S_ISFIFO(os.stat(path).st_mode):
            raise SpoolError(f"{path} exists and is not a FIFO")
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        keeper = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        return reader, keeper

    @staticmethod
    def drain_wake_fifo(reader: int) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(reader, 4096):
                pass


@contextlib.contextmanager
def claimed(spool: Spool, ids: list[str]) -> Iterator[list[Claim]]:
    """Claim whatever of `ids` is still there and free; release all on exit."""
    claims: list[Claim] = []
    try:
        for entry_id in ids:
            claim = spool.claim(entry_id)
            if claim is not None:
                claims.append(claim)
        yield claims
    finally:
        for claim in claims:
            claim.release()
