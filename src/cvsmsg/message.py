"""Content hygiene: turn whatever CVS (or a user) piped in into stanza-safe text parts."""

from __future__ import annotations

import re

from cvsmsg.errors import UsageError
from cvsmsg.logs import get_logger
from cvsmsg.record import Record

log = get_logger(__name__)

# Characters XML 1.0 forbids (a single one makes the server kill our stream with
# not-well-formed), plus U+FFFE/U+FFFF. Surrogates cannot survive UTF-8 decoding.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
# slixmpp escapes these five in text; everything else goes out as UTF-8.
_ESCAPED_SIZE = {"&": 5, "<": 4, ">": 4, "'": 6, '"': 6}
# Room for the stanza around a body: tags, to/from/id attributes, the subject.
STANZA_OVERHEAD = 2048


class Part(Record):
    """One message stanza's worth of text; `subject` is numbered when split."""

    subject: str
    body: str


def clean_text(raw: bytes) -> str:
    """Decode input leniently and drop what XML cannot carry.

    NUL bytes mean binary data (a misconfigured pipe, not a notification): refuse them
    rather than send garbage. Invalid UTF-8 is replaced, never fatal.
    """
    if b"\x00" in raw:
        raise UsageError("input is binary (it contains NUL bytes); nothing was sent")
    text = raw.decode("utf-8", errors="replace").removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    removed = len(_XML_ILLEGAL.findall(text))
    if removed:
        log.info("removed %d control character(s) XML cannot carry", removed)
        text = _XML_ILLEGAL.sub("", text)
    if not text.strip():
        raise UsageError("the message is empty; nothing was sent")
    return text.rstrip("\n")


def clean_line(value: str) -> str:
    """A subject is one line of legal XML characters."""
    return " ".join(_XML_ILLEGAL.sub("", value).split())


def wire_size(text: str) -> int:
    """Bytes `text` takes inside a stanza, after XML escaping (C-speed: counts, no loop)."""
    return len(text.encode("utf-8")) + sum(
        (extra - 1) * text.count(c) for c, extra in _ESCAPED_SIZE.items()
    )


def _fitting_end(text: str, start: int, budget: int) -> int:
    """The largest end such that text[start:end] fits `budget` wire bytes (at least one
    character). Every character costs at least a byte, so the answer is within `budget`
    characters: a binary search over that window, each probe a C-speed count."""
    high = min(len(text), start + budget)
    if wire_size(text[start:high]) <= budget:
        return high
    low = start + 1  # one character always goes, whatever it costs
    while low < high:
        mid = (low + high + 1) // 2
        if wire_size(text[start:mid]) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def _chunks(text: str, budget: int, most: int) -> tuple[list[str], int]:
    """Greedy split on line boundaries (a line longer than the budget is cut by
    characters): at most `most` chunks, and the UTF-8 bytes left over. Linear in what is
    kept, whatever the input's length or shape (one 40 MB line costs like 40 short ones)."""
    chunks: list[str] = []
    pos = 0
    while pos < len(text) and len(chunks) < most:
        end = _fitting_end(text, pos, budget)
        if end < len(text):
            cut = text.rfind("\n", pos, end)
            if cut >= pos:
                end = cut + 1  # keep whole lines together
        chunks.append(text[pos:end])
        pos = end
    return chunks, len(text[pos:].encode("utf-8"))  # exact pieces: joined, the text


def subject_room(max_stanza_bytes: int) -> int:
    """Wire bytes a subject may take: half of what a stanza leaves (at the 4096-byte floor
    of max_stanza_bytes, 992 bytes, and still 1024 for the body)."""
    return (max_stanza_bytes - STANZA_OVERHEAD) // 2 - 32


def fit_subject(subject: str, max_stanza_bytes: int) -> str:
    """The subject as one clean line, cut (with a log line) if it would not leave room for
    the body: a long subject never makes a message undeliverable."""
    subject = clean_line(subject)
    room = subject_room(max_stanza_bytes)
    if wire_size(subject) <= room:
        return subject
    log.warning("subject longer than %d bytes (half a stanza of max_stanza_bytes %d): cut",
                room, max_stanza_bytes)
    return subject[:_fitting_end(subject, 0, room - 3)] + "\u2026"


def split_message(
    subject: str, body: str, max_stanza_bytes: int, max_parts: int
) -> list[Part]:
    """Parts that each fit one stanza, numbered `(part i/n)`; cut beyond `max_parts`.

    Anything cut is said so in the last part and in the log, never silently.
    """
    subject = fit_subject(subject, max_stanza_bytes)
    budget = max_stanza_bytes - STANZA_OVERHEAD - wire_size(subject) - 32
    if budget < 1024:
        raise UsageError(f"max_stanza_bytes {max_stanza_bytes} leaves no room for a message")
    if wire_size(body) <= budget:
        return [Part(subject, body)]
    note_room = 128
    chunks, dropped = _chunks(body, budget - note_room, max_parts)
    if dropped:
        note = f"\n[cvsmsg: {dropped} more bytes not sent; the message exceeded {max_parts} parts]"
        chunks[-1] += note
        log.warning("message too long: sent %d parts, %d bytes cut", max_parts, dropped)
    total = len(chunks)
    return [Part(f"{subject} (part {i}/{total})", c) for i, c in enumerate(chunks, 1)]
