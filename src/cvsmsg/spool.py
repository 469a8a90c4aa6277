"""The durable queue: one file per message in a directory several Unix users share.

Layout of the spool directory (names in paths.py; a shared spool is created setgid and
sticky, mode 3770, so files get the directory's group and nobody can rename or delete
another member's files):

    ID.msg         one message, written atomically Maildir style: a fresh temp name in the
                   same directory (O_EXCL), fsync, `link` into place (never clobbers), unlink
                   the temp, fsync the directory. Python's `add` and the sh hand-off
                   `bin/cvsmsg-drop` write the same format, so there is no conversion stage.
                   An empty ID.msg is a message delivered by someone who could not delete
                   it (sticky directory, another user's file): ignored, reaped by its owner
                   once EMPTY_REAP_SECONDS old (a fresh empty one may be cvsmsg-drop's,
                   created but not yet written: see below).
    .tmp-*         a file being written (ignored; left-overs of a killed writer are removed
                   after an hour)
    ID.bad         a message file that failed validation (kept for a human, never sent)
    deliver.lock   held by the one process draining the spool; contains its pid
    serve.lock     held by `cvsmsg serve` for its lifetime; contains its pid
    wake           a FIFO: a writer drops a byte in it so a waiting drainer looks at once
    deliver.log    the detached deliverer's log
    announce       its mtime says when a run last announced the bot's presence

The message format (sh-writable; header values are one line without control characters):

    cvsmsg-spool 2
    recipient: <value as given; validated when read>
    user: <CVS user>
    time: <nanoseconds since the epoch>
    subject: <optional>            type: <optional: normal|chat|headline>
    attempts: <optional>           reason: <optional>       last-attempt: <optional ns>
    refused: <optional>            sent: <optional>
    room: 1                        (optional, written by Python only: a group-chat room)
    cvs-process: <optional: PID:START of the CVS process that dropped it ($CVS_PID and its
                 start time in /proc): once it has exited, its burst is sent at once>
    <empty line>
    <body bytes>

cvsmsg-drop writes ID.msg in place (it has no rename): the first line reads
`cvsmsg-spool -` until the whole message is there, then its last byte becomes `2`.
Readers skip such a file, and remove one left unfinished for STALE_TMP_SECONDS.

The directory is shared by every CVS user, so nothing in it is trusted: every field is
validated when read (a file that fails goes to ID.bad with one log line and never blocks
the others), and every file is opened with O_NOFOLLOW (O_EXCL when created) and checked
with fstat before we write, truncate or chmod it: a link planted by a group member never
makes us touch its target.

Each message is claimed with an exclusive `flock` on its own file before it is sent, and
removed only after the server acknowledged it, so concurrent runs never send one message
twice; a claim dies with its process (kill -9 included).

No slixmpp, no click: the background hand-off imports this module and must stay fast.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator, Mapping

from cvsmsg import procs
from cvsmsg.config import DEFAULT_SUBJECT, MESSAGE_TYPES
from cvsmsg.errors import CvsmsgError, SpoolError
from cvsmsg.inputs import MAX_INPUT_BYTES
from cvsmsg.logs import get_logger
from cvsmsg.message import clean_line, clean_text, has_control, is_decimal, one_line
from cvsmsg.paths import (
    ANNOUNCE_STAMP,
    BAD_SUFFIX,
    DELIVER_LOCK,
    DELIVER_LOG,
    SERVE_LOCK,
    SYSTEM_SPOOL_DIR,
    TMP_PREFIX,
    WAKE_FIFO,
    lock_name,
    user_spool_dir,
)
from cvsmsg.paths import MESSAGE_SUFFIX as SUFFIX
from cvsmsg.recipients import normalize_recipient
from cvsmsg.record import Record, replace

TYPE_CHECKING = False  # no `typing` (nor pathlib) at run time: the hand-off must start fast
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    StrPath = str | os.PathLike[str]

__all__ = [
    "BAD_SUFFIX", "DELIVER_LOCK", "SERVE_LOCK", "SUFFIX", "SYSTEM_SPOOL_DIR", "TMP_PREFIX",
    "WAKE_FIFO", "Claim", "Entry", "Spool", "claimed", "new_id", "open_log_file",
    "resolve_spool_dir", "user_spool_dir",
]

log = get_logger(__name__)

SHARED_DIR_MODE = 0o3770  # setgid: files get the directory's group; sticky: see above
PRIVATE_DIR_MODE = 0o700  # the per-user fallback is nobody else's business
FILE_MODE = 0o660
STALE_TMP_SECONDS = 3600.0
EMPTY_REAP_SECONDS = 60.0  # an emptied (delivered) message is reaped once this old
MAGIC = b"cvsmsg-spool 2"
WRITING = b"cvsmsg-spool -"  # cvsmsg-drop's first line until the message is whole
MAX_HEADER_BYTES = 64 * 1024
READ_CHUNK = 1 << 20  # the most one read asks for (a message may be 32 MiB)
MAX_FUTURE_SECONDS = 86400.0  # a time further ahead is a wrong clock: taken as now
MAX_ATTEMPTS = 1_000_000

_SAFE = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # nonblock: a planted FIFO never hangs us
_FIELDS = ("recipient", "user", "time", "subject", "type", "attempts", "reason",
           "last-attempt", "refused", "sent", "room", "cvs-process")


class BadMessage(ValueError):
    """A message file that is not a valid one of ours: it is set aside as ID.bad."""


class _NotOwner(Exception):
    """The sticky directory refused to replace or delete another user's file."""


def resolve_spool_dir(
    configured: str | None, env: Mapping[str, str], system: str = SYSTEM_SPOOL_DIR
) -> tuple[str, bool, str | None]:
    """(directory, shared, warning): the configured one, else the system one if we can
    write it, else a private per-user directory (with a warning when the system one
    exists but is not ours to write: the admin forgot to put us in its group)."""
    if configured is not None:
        return configured, True, None
    if _usable(system):
        return system, True, None
    fallback = user_spool_dir(env)
    warning = None
    if os.path.exists(system):
        warning = (
            f"spool {system} is not writable by you: using {fallback} "
            "(ask the admin to add you to its group)"
        )
    return fallback, False, warning


def _usable(path: str) -> bool:
    if os.path.isdir(path):
        return os.access(path, os.W_OK | os.X_OK)
    return not os.path.exists(path) and os.access(os.path.dirname(path) or ".",
                                                 os.W_OK | os.X_OK)


def new_id(now_ns: int | None = None) -> str:
    """Sortable by creation time (microseconds, hex), plus randomness for uniqueness
    (cvsmsg-drop puts its pid there: `printf '%013x-%06x' MICROS $$`)."""
    micros = (time.time_ns() if now_ns is None else now_ns) // 1000
    return f"{micros:013x}-{os.urandom(3).hex()}"


def _to_ns(seconds: float) -> int:
    """The integer nanoseconds that read back (n / 1e9) as exactly `seconds`."""
    guess = round(seconds * 1e9)
    for delta in range(512):
        for n in (guess - delta, guess + delta):
            if n / 1e9 == seconds:
                return n
    return guess


class Entry(Record):
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
    refused: int = 0  # times the server closed the stream on it: set aside after a few
    sent: int = 0  # characters of the body the server already has (a retry sends the rest)
    room: bool = False  # `recipient` is a group-chat room: joined, never presence-gated
    dropper: str = ""  # `PID:START` of the CVS process that queued it (procs.py), if known

    @property
    def queued(self) -> bool:
        """True once a run withheld it or failed to send it (a fresh hand-off is not)."""
        return self.attempts > 0

    def to_bytes(self) -> bytes:
        """The spool file format (see the module docstring)."""
        lines = [
            MAGIC.decode(), f"recipient: {one_line(self.recipient)}",
            f"user: {one_line(self.cvs_user)}", f"time: {_to_ns(self.created)}",
            f"subject: {one_line(self.subject)}", f"type: {one_line(self.type)}",
        ]
        if self.attempts:
            lines.append(f"attempts: {self.attempts}")
        if self.reason:
            lines.append(f"reason: {one_line(self.reason)}")
        if self.last_attempt is not None:
            lines.append(f"last-attempt: {_to_ns(self.last_attempt)}")
        if self.refused:
            lines.append(f"refused: {self.refused}")
        if self.sent:
            lines.append(f"sent: {self.sent}")
        if self.room:
            lines.append("room: 1")
        if self.dropper:
            lines.append(f"cvs-process: {self.dropper}")
        head = "\n".join(lines) + "\n\n"
        return head.encode("utf-8", "replace") + self.body.encode("utf-8", "replace") + b"\n"


class Defaults(Record):
    """What a file may leave out, and what validating it needs (from the config)."""

    default_domain: str | None = None
    subject: str = DEFAULT_SUBJECT
    message_type: str = "normal"
    own_jid: str | None = None  # the bot's bare JID: never a recipient


def parse_message(entry_id: str, raw: bytes, defaults: Defaults, now: float) -> Entry:
    """Validate one spool file completely; BadMessage says what is wrong with it."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep or len(head) > MAX_HEADER_BYTES:
        raise BadMessage("no header (or no empty line after it)")
    lines = head.split(b"\n")
    if lines[0] != MAGIC:
        raise BadMessage(f"not a cvsmsg spool file (first line {lines[0][:40]!r})")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            raise BadMessage("header is not UTF-8") from None
        name, colon, value = text.partition(": ")
        if not colon or name not in _FIELDS:
            raise BadMessage(f"bad header line {text[:60]!r}")
        if name in fields:
            raise BadMessage(f"header {name!r} given twice")
        if has_control(value):
            raise BadMessage(f"control character in header {name!r}")
        fields[name] = value
    for name in ("recipient", "time"):
        if name not in fields:
            raise BadMessage(f"no {name!r} header")
    try:
        recipient = normalize_recipient(fields["recipient"], defaults.default_domain)
    except CvsmsgError as exc:
        raise BadMessage(str(exc)) from None
    if recipient == defaults.own_jid:
        raise BadMessage(f"recipient {recipient} is cvsmsg's own account")
    created = _time(entry_id, fields["time"], "time", now)
    last = fields.get("last-attempt")
    last_attempt = None if last is None else _time(entry_id, last, "last-attempt", now)
    mtype = fields.get("type", defaults.message_type)
    if mtype not in MESSAGE_TYPES:
        raise BadMessage(f"bad type {mtype[:40]!r}")
    counts = {}
    for name in ("attempts", "refused", "sent"):
        value = fields.get(name, "0")
        if not is_decimal(value, 20) or int(value) > MAX_ATTEMPTS * (
            MAX_INPUT_BYTES if name == "sent" else 1
        ):
            raise BadMessage(f"bad {name} {value[:40]!r}")
        counts[name] = int(value)
    if len(body) > MAX_INPUT_BYTES:
        log.warning("spool file %s: body larger than %d MiB: only that much is sent",
                    entry_id, MAX_INPUT_BYTES >> 20)
        body = body[:MAX_INPUT_BYTES]
    try:
        text = clean_text(body)
    except CvsmsgError as exc:
        raise BadMessage(str(exc)) from None
    subject = clean_line(fields["subject"]) if "subject" in fields else defaults.subject
    if fields.get("room", "1") != "1":
        raise BadMessage(f"bad room {fields['room'][:40]!r}")
    dropper = fields.get("cvs-process", "")
    if dropper and procs.parse_key(dropper) is None:
        raise BadMessage(f"bad cvs-process {dropper[:40]!r}")
    return Entry(
        entry_id, recipient, subject, text, mtype, fields.get("user", ""), created,
        counts["attempts"], fields.get("reason", ""), last_attempt, counts["refused"],
        min(counts["sent"], len(text)), room="room" in fields, dropper=dropper,
    )


def _time(entry_id: str, value: str, name: str, now: float) -> float:
    """Nanoseconds → seconds: 1-20 digits (no NaN, inf or sign); a time more than a day
    ahead is a wrong clock and is taken as now (with a log line)."""
    if not is_decimal(value, 20):
        raise BadMessage(f"bad {name} {value[:40]!r}")
    seconds = int(value) / 1e9
    if seconds > now + MAX_FUTURE_SECONDS:
        log.warning("spool file %s: %s is %.0f s in the future: taken as now", entry_id,
                    name, seconds - now)
        return now
    return seconds


def _fsync_dir(path: StrPath) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _refuse_link(path: StrPath, exc: OSError) -> SpoolError:
    if exc.errno == errno.ELOOP:
        return SpoolError(f"{path} is a symbolic link: refusing to follow it "
                          "(someone planted it in the spool: remove it)")
    return SpoolError(f"cannot open {path}: {exc.strerror or exc}")


def _check_opened(fd: int, path: StrPath, *, fifo: bool = False) -> os.stat_result:
    """What we opened must be what we expect: a regular file with one link (not a hard
    link to someone's file) or a FIFO. Our own files get FILE_MODE (group members share
    them whatever our umask). Closes `fd` and raises SpoolError otherwise."""
    st = os.fstat(fd)
    ok = stat.S_ISFIFO(st.st_mode) if fifo else (
        stat.S_ISREG(st.st_mode) and st.st_nlink == 1)
    if not ok:
        os.close(fd)
        what = "a FIFO" if fifo else "a regular file with a single link"
        raise SpoolError(f"{path} is not {what}: refusing to use it (remove it)")
    if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != FILE_MODE:
        with contextlib.suppress(OSError):
            os.fchmod(fd, FILE_MODE)
    return st


def open_shared(path: StrPath, flags: int, *, create: bool = True, fifo: bool = False) -> int:
    """Open a file of the shared spool without following links: an existing one as it is
    (no O_CREAT: protected_regular would refuse another user's file), a missing one
    created with O_EXCL; then fstat-checked (see _check_opened). Blocking mode restored."""
    for _ in range(5):
        try:
            fd = os.open(path, flags | _SAFE)
        except FileNotFoundError:
            if not create:
                raise
            try:
                fd = os.open(path, flags | _SAFE | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileExistsError:
                continue  # someone made it first: open theirs
            except OSError as exc:
                raise _refuse_link(path, exc) from None
        except OSError as exc:
            raise _refuse_link(path, exc) from None
        _check_opened(fd, path, fifo=fifo)
        if not fifo:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd
    raise SpoolError(f"cannot open {path}: it keeps appearing and disappearing")


def open_log_file(path: StrPath) -> int:
    """An append-only fd on a log file in the spool (deliver.log), opened like every spool
    file: never through a link, only a regular file with one link. Raises SpoolError."""
    return open_shared(path, os.O_WRONLY | os.O_APPEND)


def _read_all(fd: int, limit: int) -> bytes:
    # Ask for about the file's size: os.read(fd, n) allocates n bytes before it reads.
    # A fixed 1 MiB per call made glibc carve 1 MiB blocks from the heap and shrink
    # them, and `serve`'s heap grew ~1 MB every ~9,000 messages (none of it live).
    chunk_size = max(min(os.fstat(fd).st_size + 1, READ_CHUNK), 1)
    buf = bytearray()
    while len(buf) < limit and (chunk := os.read(fd, min(chunk_size, limit - len(buf)))):
        buf += chunk
    return bytes(buf)


class Claim:
    """Exclusive ownership of one message file, held by an flock until `release`."""

    def __init__(self, spool: Spool, entry: Entry, fd: int) -> None:
        self.spool = spool
        self.entry = entry
        self._fd: int | None = fd

    def remove(self) -> None:
        """Delete the message (the server has it, or it expired). Call `Spool.sync` after a
        batch to make the removals durable. Another user's file in a sticky spool cannot
        be deleted: it is emptied instead (an empty message is a delivered one)."""
        path = self.spool.name_of(self.entry.id)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except PermissionError:
            self._empty(path)

    def _empty(self, path: str) -> None:
        """Truncate the file we hold, after checking the name still is that file."""
        try:
            fd = os.open(path, os.O_WRONLY | _SAFE)
        except FileNotFoundError:
            return
        except OSError as exc:
            log.warning("cannot remove or empty %s (%s): it may be sent again", path,
                        exc.strerror or exc)
            return
        try:
            st = os.fstat(fd)
            mine = os.fstat(self._fd) if self._fd is not None else None
            if (mine is None or (st.st_dev, st.st_ino) != (mine.st_dev, mine.st_ino)
                    or not stat.S_ISREG(st.st_mode) or st.st_nlink != 1):
                log.warning("cannot remove %s, and it is not the file we claimed: left as "
                            "it is", path)
                return
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)

    def update(self, **changes: Any) -> Entry:
        """Rewrite the message atomically with `changes`; the last thing a claimant does
        (the new file is a new inode, which our lock does not cover). Another user's file
        in a sticky spool cannot be replaced: the new version gets a new id (sorting next
        to the old one) and the old file is emptied."""
        entry = replace(self.entry, **changes)
        try:
            self.spool._write(entry, replace_existing=True)
        except _NotOwner:
            old = self.spool.name_of(self.entry.id)
            entry = self.spool._write_new(entry)
            self._empty(old)
        self.entry = entry
        return entry

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


class Spool:
    """A spool directory. `default_domain`, `subject` and `message_type` come from the
    config: reading validates recipients with the first and fills in the other two where a
    file (cvsmsg-drop's) leaves them out. `clock` is injectable for tests of ageing."""

    def __init__(self, path: StrPath, *, shared: bool = True,
                 clock: Callable[[], float] = time.time, default_domain: str | None = None,
                 subject: str = DEFAULT_SUBJECT, message_type: str = "normal",
                 group: str | None = None, root_needs_group: bool = False,
                 own_jid: str | None = None) -> None:
        # "/spool/" would make its parent "/spool" and create the spool with mkdir's modes
        self.directory = os.fspath(path).rstrip("/") or "/"
        self.shared = shared
        # A shared spool we create gets `group` (the config's spool_group); without one, a
        # root run with `root_needs_group` refuses to create it (see _create).
        self.group = group
        self.root_needs_group = root_needs_group
        self.clock = clock
        self.defaults = Defaults(default_domain, subject, message_type, own_jid)
        self._stuck: set[str] = set()  # invalid files we could not rename (not ours)
        self._whole: set[str] = set()  # ids seen whole: cvsmsg-drop has finished them

    # -- directory ---------------------------------------------------------------------

    def ensure(self) -> Spool:
        """Create the directory on first use (setgid, sticky and group-writable when
        shared); raise SpoolError when it is not a real directory we can write."""
        try:
            st = os.lstat(self.directory)
        except FileNotFoundError:
            st = self._create()
        except OSError as exc:
            raise SpoolError(f"cannot use spool directory {self.directory}: "
                             f"{exc.strerror or exc}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise SpoolError(f"spool {self.directory} is not a directory (a symbolic link or a "
                             "file): refusing to use it")
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise SpoolError(
                f"spool directory {self.directory} is not writable by you "
                "(the admin should make it group-writable for the CVS group: see README)"
            )
        return self

    def _create(self) -> os.stat_result:
        mode = SHARED_DIR_MODE if self.shared else PRIVATE_DIR_MODE
        self.check_creatable()
        gid = group_id(self.group) if self.shared and self.group else None
        try:
            os.makedirs(os.path.dirname(self.directory) or ".", exist_ok=True)
            try:
                os.mkdir(self.directory, mode)
                fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
                             | os.O_CLOEXEC)
                try:
                    if os.fstat(fd).st_uid == os.geteuid():
                        if gid is not None:
                            self._give_group(fd, gid)
                        os.fchmod(fd, mode)  # mkdir's mode is cut by the umask; the bits too
                finally:
                    os.close(fd)
            except FileExistsError:
                pass  # another run made it first
            return os.lstat(self.directory)
        except OSError as exc:
            raise SpoolError(
                f"cannot create spool directory {self.directory}: {exc.strerror or exc}"
            ) from None

    def check_creatable(self) -> None:
        """Raise SpoolError when the spool is missing and this run must not create it: a
        root run without spool_group would give it root's group, which locks every CVS
        user out. Called before a run sends anything, so it fails whole (exit 3)."""
        if (self.shared and self.root_needs_group and not self.group and os.geteuid() == 0
                and not os.path.lexists(self.directory)):
            raise SpoolError(root_create_refusal(self.directory))

    def _give_group(self, fd: int, gid: int) -> None:
        """chgrp the directory we just made to spool_group; never leave it with another."""
        try:
            os.fchown(fd, -1, gid)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.rmdir(self.directory)
            raise SpoolError(f"cannot give spool directory {self.directory} the group "
                             f"{self.group}: {exc.strerror or exc} (you must be a member "
                             "of spool_group)") from None

    def exists(self) -> bool:
        """True when the spool is a real directory (a link in its place is not)."""
        try:
            return stat.S_ISDIR(os.lstat(self.directory).st_mode)
        except OSError:
            return False

    @property
    def path(self) -> Path:
        """The directory as a Path, for the commands that show or glob it (pathlib is not
        imported on the hand-off's path: see paths.py)."""
        from pathlib import Path

        return Path(self.directory)

    def file_of(self, entry_id: str) -> Path:
        """A message's file as a Path, for tests and the commands that show it."""
        return self.path / f"{entry_id}{SUFFIX}"

    def name_of(self, entry_id: str) -> str:
        """A message's file name, a plain string: in Python 3.11 every Path interns its
        parts, and a unique name per message made serve's interned-string table grow by
        ~0.5-0.9 MB after its first thousand deliveries."""
        return f"{self.directory}/{entry_id}{SUFFIX}"

    def sync(self) -> None:
        """Make creations, renames and removals in the directory durable."""
        with contextlib.suppress(FileNotFoundError):
            _fsync_dir(self.directory)

    # -- messages ------------------------------------------------------------------------

    def add(
        self, recipient: str, subject: str, body: str, *, mtype: str = "normal",
        cvs_user: str = "", attempts: int = 0, reason: str = "", created: float | None = None,
        refused: int = 0, sent: int = 0, room: bool = False, dropper: str = "",
    ) -> Entry:
        """Queue one message durably; it is in the spool, fsynced, when this returns.
        Header values are made one-line; the Entry returned is what `read` gives back."""
        self.ensure()
        ns = _to_ns(self.clock() if created is None else created)
        now = ns / 1e9
        entry = Entry(
            new_id(ns), one_line(recipient), clean_line(subject), body, one_line(mtype),
            one_line(cvs_user), now, attempts, one_line(reason), now if attempts else None,
            refused, sent, room, dropper,
        )
        return self._write_new(entry)

    def _write_new(self, entry: Entry) -> Entry:
        """Write `entry` under a fresh id of its creation time; the entry as written."""
        for _ in range(5):
            entry = replace(entry, id=new_id(_to_ns(entry.created)))
            try:
                self._write(entry, replace_existing=False)
            except FileExistsError:
                continue  # the same microsecond and random suffix: pick another id
            return entry
        raise SpoolError(f"cannot find a free message name in {self.directory}")

    def _write(self, entry: Entry, *, replace_existing: bool) -> None:
        """Temp file in the same directory (O_EXCL), fsync, then link (new: never clobbers)
        or replace (update), then fsync the directory: a reader sees a whole file."""
        tmp = f"{self.directory}/{TMP_PREFIX}{entry.id}-{os.getpid()}-{os.urandom(4).hex()}"
        final = self.name_of(entry.id)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, FILE_MODE)
            try:
                os.fchmod(fd, FILE_MODE)  # group-writable whatever the caller's umask
                view = memoryview(entry.to_bytes())
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            if replace_existing:
                try:
                    os.replace(tmp, final)
                except PermissionError:
                    raise _NotOwner() from None
            else:
                try:
                    os.link(tmp, final)  # never clobbers an existing message
                except FileExistsError:
                    raise
                except OSError as exc:
                    if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                        raise
                    self._rename_noreplace(tmp, final)  # a filesystem without hard links
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        except (FileExistsError, _NotOwner):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise SpoolError(
                f"cannot write to spool directory {self.directory}: {exc.strerror or exc}"
            ) from None
        self.sync()

    @staticmethod
    def _rename_noreplace(tmp: str, final: str) -> None:
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, "exists", str(final))
        os.rename(tmp, final)

    def ids(self) -> list[str]:
        """IDs of the queued messages, oldest first (emptied, i.e. delivered, ones left
        out and reaped where we may)."""
        try:
            it = os.scandir(self.directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SpoolError(f"cannot read spool directory {self.directory}: "
                             f"{exc.strerror}") from None
        found = []
        with it:
            for item in it:
                name = item.name
                if not name.endswith(SUFFIX) or name.startswith("."):
                    continue
                entry_id = name[: -len(SUFFIX)]
                if entry_id in self._stuck:
                    continue
                try:
                    st = item.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    # delivered: its owner (or we) reap it; a young one may be cvsmsg-drop's
                    # message, just created and not yet written (never unlinked under it)
                    if time.time() - st.st_mtime > EMPTY_REAP_SECONDS:
                        with contextlib.suppress(OSError):
                            os.unlink(item.path)
                    continue
                if entry_id not in self._whole and not self._finished(entry_id, item.path,
                                                                      st):
                    continue
                found.append(entry_id)
        self._whole.intersection_update(found)
        return sorted(found)

    def _finished(self, entry_id: str, path: str, st: os.stat_result) -> bool:
        """False while cvsmsg-drop is still writing the file (first line WRITING); one
        left unfinished for STALE_TMP_SECONDS (its writer was killed) is removed. What is
        not a regular file is left to `read`, which sets it aside."""
        if stat.S_ISREG(st.st_mode):
            fd = _open_regular(path)
            if fd is None:
                return True
            try:
                first = os.read(fd, len(WRITING))
            except OSError:
                first = b""
            finally:
                os.close(fd)
            if first == WRITING:
                if time.time() - st.st_mtime > STALE_TMP_SECONDS:
                    with contextlib.suppress(OSError):
                        os.unlink(path)  # never a message: its writer died
                return False
        self._whole.add(entry_id)
        return True

    def _open_message(self, entry_id: str) -> int | None:
        """An fd on the message file, never through a link; None if it is gone or was set
        aside as bad."""
        path = self.name_of(entry_id)
        try:
            fd = os.open(path, os.O_RDONLY | _SAFE)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self._quarantine(entry_id, "it is a symbolic link")
                return None
            raise SpoolError(f"cannot open {path}: {exc.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            self._quarantine(entry_id, "not a regular file")
            return None
        return fd

    def _parse(self, entry_id: str, fd: int) -> Entry | None:
        raw = _read_all(fd, MAX_HEADER_BYTES + MAX_INPUT_BYTES + 2)
        if not raw or raw.startswith(WRITING):
            return None  # emptied (delivered by another user), or cvsmsg-drop is writing it
        try:
            return parse_message(entry_id, raw, self.defaults, self.clock())
        except BadMessage as exc:
            self._quarantine(entry_id, str(exc))
            return None

    def read(self, entry_id: str) -> Entry | None:
        """The message as it is now, without claiming it; None if it is gone or invalid
        (an invalid one is set aside as ID.bad)."""
        fd = self._open_message(entry_id)
        if fd is None:
            return None
        try:
            return self._parse(entry_id, fd)
        finally:
            os.close(fd)

    def entries(self) -> list[Entry]:
        """Every valid queued message, oldest first."""
        return [e for e in (self.read(i) for i in self.ids()) if e is not None]

    def set_aside(self, entry_id: str) -> None:
        """Never send this message again: ID.bad, listed by `cvsmsg queue` (a message the
        server keeps refusing must not hold the others back). The caller logs the line."""
        self._quarantine(entry_id, "", quiet=True)

    def _quarantine(self, entry_id: str, why: str, *, quiet: bool = False) -> None:
        """Rename ID.msg to ID.bad (rename never follows a link) with one log line."""
        path = self.name_of(entry_id)
        bad = path.removesuffix(SUFFIX) + BAD_SUFFIX
        try:
            os.rename(path, bad)
            if quiet:
                return
        except FileNotFoundError:
            return
        except OSError as exc:
            if entry_id not in self._stuck:
                log.warning("spool file %s is invalid (%s) and cannot be renamed (%s): "
                            "skipped", path, why, exc.strerror or exc)
            self._stuck.add(entry_id)
            return
        log.warning("spool file %s is invalid (%s): renamed to %s", path, why,
                    os.path.basename(bad))

    def claim(self, entry_id: str) -> Claim | None:
        """Lock one message for delivery; None if it is gone, invalid, or another run
        holds it."""
        path = self.name_of(entry_id)
        fd = self._open_message(entry_id)
        if fd is None:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # The file we locked must still be the one at `path`: another run may have
            # delivered and unlinked it, or rewritten it, between our open and our lock.
            try:
                current = os.stat(path, follow_symlinks=False)
            except FileNotFoundError:
                os.close(fd)
                return None
            mine = os.fstat(fd)
            if (current.st_ino, current.st_dev) != (mine.st_ino, mine.st_dev):
                os.close(fd)
                return None
            entry = self._parse(entry_id, fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        if entry is None:
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
        """Temp files a killed writer left behind (never linked, so never a message)."""
        now = time.time()
        with contextlib.suppress(OSError), os.scandir(self.directory) as it:
            for item in it:
                if item.name.startswith(TMP_PREFIX):
                    with contextlib.suppress(OSError):
                        if now - item.stat(follow_symlinks=False).st_mtime > max_age:
                            os.unlink(item.path)  # unlink never follows a link

    def open_log(self) -> int:
        """An append-only fd on SPOOL/deliver.log (see open_log_file). Raises SpoolError."""
        self.ensure()
        return open_log_file(os.path.join(self.directory, DELIVER_LOG))

    # -- locks and wake-ups --------------------------------------------------------------

    def _lock_file(self, name: str) -> str:
        return os.path.join(self.directory, lock_name(name))

    def try_lock(self, name: str) -> int | None:
        """An fd holding an exclusive lock on `name`.lock, or None if someone holds it."""
        self.ensure()
        fd = open_shared(self._lock_file(name), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return fd

    @staticmethod
    def write_pid(fd: int, pid: int | None = None) -> None:
        """Record the holder in the lock file behind `fd`: `PID START` (our own pid and
        start time, see procs.py; a `pid` given is written alone), for `cvsmsg queue`,
        tests, and cvsmsg-drop, which leaves new messages to a live holder without
        starting a process. `fd` may be read-only (cvsmsg-drop's, which never opens the
        lock for writing): the file is then reopened through /proc/self/fd, which is the
        very inode we hold, and checked again."""
        if pid is None:
            from cvsmsg.procs import identity

            pid = os.getpid()
            holder = identity(pid).replace(":", " ") or str(pid)
        else:
            holder = str(pid)
        _rewrite_lock(fd, f"{holder}\n".encode())

    @staticmethod
    def clear_pid(fd: int) -> None:
        """Empty the lock file behind `fd` (the holder is leaving)."""
        _rewrite_lock(fd, b"")

    def holder(self, name: str) -> int | None:
        """The pid recorded in `name`.lock if that process is alive (for display: it never
        touches the lock, so it cannot make a would-be holder fail)."""
        fd = _open_regular(self._lock_file(name))
        if fd is None:
            return None
        try:
            pid = int(os.read(fd, 64).decode("ascii", "replace").split()[0])
        except (OSError, ValueError, IndexError):
            return None
        finally:
            os.close(fd)
        if pid <= 0:
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
        fd = _open_regular(self._lock_file(name))
        if fd is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return False
        finally:
            os.close(fd)  # also drops our shared lock
        return False

    def serve_running(self) -> bool:
        """True while a `cvsmsg serve` holds the spool."""
        return self.lock_held(SERVE_LOCK)

    def wake(self) -> None:
        """Tell a waiting drainer (deliverer or serve) to look now; nobody listening is fine."""
        try:
            fd = os.open(os.path.join(self.directory, WAKE_FIFO), os.O_WRONLY | _SAFE)
        except OSError:
            return  # no FIFO, a link (ELOOP) or no reader (ENXIO): nobody waits
        try:
            if not stat.S_ISFIFO(os.fstat(fd).st_mode):
                log.debug("%s is not a FIFO: not writing to it",
                          os.path.join(self.directory, WAKE_FIFO))
                return
            os.write(fd, b"!")
        except OSError as exc:
            if exc.errno != errno.EAGAIN:  # full means a wake-up is pending anyway
                log.debug("cannot wake the drainer: %s", exc)
        finally:
            os.close(fd)

    def open_wake_fifo(self) -> tuple[int, int]:
        """(reader, keeper) fds of the wake FIFO; the keeper is a writer we hold so the
        reader never sees end-of-file when the last notify closes its end."""
        path = os.path.join(self.directory, WAKE_FIFO)
        try:
            os.mkfifo(path, FILE_MODE)  # never follows a link: EEXIST
        except FileExistsError:
            pass
        except OSError as exc:
            raise SpoolError(f"cannot create {path}: {exc.strerror}") from None
        reader = open_shared(path, os.O_RDONLY, create=False, fifo=True)
        try:
            keeper = open_shared(path, os.O_WRONLY, create=False, fifo=True)
        except BaseException:
            os.close(reader)
            raise
        a, b = os.fstat(reader), os.fstat(keeper)
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino):
            os.close(reader)
            os.close(keeper)
            raise SpoolError(f"{path} changed while we opened it")
        return reader, keeper

    @staticmethod
    def drain_wake_fifo(reader: int) -> None:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while os.read(reader, 4096):
                pass

    # -- the presence announcement stamp ---------------------------------------------------

    def _open_stamp(self) -> tuple[int, bool]:
        """(fd, created): SPOOL/announce opened read-write without following links."""
        path = os.path.join(self.directory, ANNOUNCE_STAMP)
        try:
            fd, created = os.open(path, os.O_RDWR | _SAFE), False
        except FileNotFoundError:
            try:
                fd = os.open(path, os.O_RDWR | _SAFE | os.O_CREAT | os.O_EXCL, FILE_MODE)
                created = True
            except FileExistsError:  # another run made it first: theirs decides
                fd, created = os.open(path, os.O_RDWR | _SAFE), False
        _check_opened(fd, path)
        return fd, created

    def announce_due(self, interval: float, now: float | None = None) -> bool:
        """True when no run has announced within `interval` seconds (never: True). The
        stamp is set by `mark_announced` once a session really announced, so a run that
        failed to log in does not hold the next one back."""
        from cvsmsg.policy import announce_due

        return announce_due(self.last_announce(), self.clock() if now is None else now,
                            interval)

    def last_announce(self) -> float | None:
        """When a run last announced (the stamp's mtime), None if never (for display)."""
        fd = _open_regular(os.path.join(self.directory, ANNOUNCE_STAMP))
        if fd is None:
            return None
        try:
            return os.fstat(fd).st_mtime
        finally:
            os.close(fd)

    def mark_announced(self) -> None:
        """Record that this run announced (`cvsmsg serve` always does)."""
        try:
            self.ensure()  # a fresh spool: the stamp is its first file
            fd, _ = self._open_stamp()
        except (OSError, SpoolError) as exc:
            log.debug("cannot record the announcement (%s)", exc)
            return
        try:
            _touch(fd, self.clock())
        except OSError as exc:
            log.debug("cannot record the announcement (%s)", exc)
        finally:
            os.close(fd)


def group_id(name: str) -> int:
    """The gid of `spool_group`; SpoolError when no such group exists here."""
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise SpoolError(f"spool_group {name!r} is not a group on this machine") from None


def root_create_refusal(path: StrPath) -> str:
    """Why a root run without spool_group does not create the shared spool, and the
    command that does it right."""
    return (f"spool directory {path} does not exist and root would create it with its own "
            "group, which the CVS users lack: set spool_group in the config, or run: "
            f"install -d -m 3770 -o root -g GROUP {path}")


def _open_regular(path: StrPath) -> int | None:
    """A read-only fd on `path` if it is a regular file (never through a link), else None:
    for looking (a pid, a probe, a stamp), never for writing."""
    try:
        fd = os.open(path, os.O_RDONLY | _SAFE)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _touch(fd: int, when: float) -> None:
    """Set the stamp's times: to `when` if we may (our file), else to the kernel's now
    (enough with write access)."""
    try:
        os.utime(fd, (when, when))
    except PermissionError:
        os.utime(fd)


def _rewrite_lock(fd: int, data: bytes) -> None:
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        log.debug("lock file is not a regular file with one link: not writing our pid")
        return
    wfd = fd
    if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
        try:
            wfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError as exc:
            log.debug("cannot reopen the lock file for writing: %s", exc)
            return
        again = os.fstat(wfd)
        if ((again.st_dev, again.st_ino) != (st.st_dev, st.st_ino)
                or not stat.S_ISREG(again.st_mode) or again.st_nlink != 1):
            os.close(wfd)
            return
    try:
        os.ftruncate(wfd, 0)
        if data:
            os.pwrite(wfd, data, 0)
    except OSError as exc:
        log.debug("cannot write the lock file: %s", exc)
    finally:
        if wfd != fd:
            os.close(wfd)


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
