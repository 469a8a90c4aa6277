"""Ingest the raw drops of `cvsmsg-drop`, the POSIX-sh hand-off for CVSROOT/notify.

`cvsmsg-drop RECIPIENT` validates nothing (it must cost CVS a few milliseconds): it writes
SPOOL/incoming/TIME-PID.drop atomically (temp file, mv) as

    cvsmsg-drop 1
    recipient: <the %s value, verbatim>
    user: <$LOGNAME>
    time: <nanoseconds since the epoch>
    <empty line>
    <the notification, as CVS wrote it on stdin>

Every drainer (background deliverer, flush, serve) calls `ingest` before it reads the
spool: each drop is validated like `notify` validates (recipient, text) and becomes a
normal spool message, then the drop is removed. An invalid drop is renamed *.bad and
logged (in deliver.log for the background deliverer): the CVS user never sees it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

from cvsmsg.config import Config
from cvsmsg.errors import CvsmsgError
from cvsmsg.handoff import cvs_user
from cvsmsg.message import clean_text
from cvsmsg.recipients import normalize_recipient
from cvsmsg.spool import BAD_SUFFIX, Spool

log = logging.getLogger(__name__)

INCOMING = "incoming"
DROP_SUFFIX = ".drop"
MAGIC = b"cvsmsg-drop 1"
MAX_DROP_BYTES = 32 * 1024 * 1024  # as notify's input cap


def incoming_dir(spool: Spool) -> Path:
    return spool.path / INCOMING


def pending_drops(spool: Spool) -> list[str]:
    """Names of the drops waiting in SPOOL/incoming, oldest first."""
    try:
        names = os.listdir(incoming_dir(spool))
    except OSError:
        return []
    return sorted(n for n in names if n.endswith(DROP_SUFFIX) and not n.startswith("."))


def parse_drop(raw: bytes) -> tuple[str, str, float, bytes]:
    """(recipient value, user, time in seconds, body); ValueError for a malformed drop."""
    head, sep, body = raw.partition(b"\n\n")
    lines = head.split(b"\n")
    if not sep or not lines or lines[0] != MAGIC:
        raise ValueError("not a cvsmsg-drop file")
    fields: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.decode("utf-8", "replace").partition(": ")
        if not colon or name not in ("recipient", "user", "time") or name in fields:
            raise ValueError(f"bad header line {line[:80]!r}")
        fields[name] = value
    if set(fields) != {"recipient", "user", "time"}:
        raise ValueError("incomplete header")
    try:
        when = int(fields["time"]) / 1e9
    except ValueError:
        raise ValueError(f"bad time {fields['time'][:40]!r}") from None
    return fields["recipient"], fields["user"], when, body


def ingest(cfg: Config, spool: Spool) -> int:
    """Turn every complete drop into a spool message; how many became messages."""
    added = 0
    for name in pending_drops(spool):
        path = incoming_dir(spool) / name
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # another drainer took it
        try:
            try:  # one ingester per drop (flush and a deliverer may look at once)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if os.fstat(fd).st_ino != os.stat(path).st_ino:
                    continue
            except OSError:
                continue
            raw = b""
            while len(raw) <= MAX_DROP_BYTES and (chunk := os.read(fd, 1 << 16)):
                raw += chunk
            if _ingest_one(cfg, spool, path, raw):
                added += 1
        finally:
            os.close(fd)
    if added:
        spool.sync()
    return added


def _ingest_one(cfg: Config, spool: Spool, path: Path, raw: bytes) -> bool:
    try:
        value, user, when, body = parse_drop(raw)
        if len(body) > MAX_DROP_BYTES:
            log.warning("drop %s is larger than %d MiB: only that much is sent", path.name,
                        MAX_DROP_BYTES >> 20)
            body = body[:MAX_DROP_BYTES]
        jid = normalize_recipient(value, cfg.default_domain)
        text = clean_text(body)
    except (ValueError, CvsmsgError) as exc:
        bad = path.with_name(path.name + BAD_SUFFIX)
        with contextlib.suppress(OSError):
            os.rename(path, bad)
        log.error("cvsmsg-drop %s: %s: renamed to %s", path.name, exc, bad.name)
        return False
    who = cvs_user(text, {"LOGNAME": user} if user else {})
    spool.add(jid, cfg.subject, text, mtype=cfg.message_type, cvs_user=who, created=when)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return True
