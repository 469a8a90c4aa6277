"""Content hygiene: turn whatever CVS (or a user) piped in into stanza-safe text parts,
and the XML form that text takes on the wire (what splitting counts is what goes out)."""

from __future__ import annotations

from cvsmsg.errors import UsageError
from cvsmsg.logs import get_logger
from cvsmsg.record import Record

log = get_logger(__name__)

# Characters XML 1.0 forbids (a single one makes the server kill our stream with
# not-well-formed), plus U+FFFE/U+FFFF. Surrogates cannot survive UTF-8 decoding.
XML_ILLEGAL = "".join(map(chr, (*range(9), 11, 12, *range(14, 32)))) + "\ufffe\uffff"
# The same in UTF-8: a C0 control is one byte that no multi-byte sequence contains, and
# U+FFFE/U+FFFF are these three-byte sequences (a lead byte EF never continues another).
_ILLEGAL_BYTES = "".join(c for c in XML_ILLEGAL if c < " ").encode()
_NONCHARACTERS = ("\ufffe".encode(), "\uffff".encode())
# A header line's control characters (newlines included), for one_line and has_control.
_CONTROLS = "".join(map(chr, range(32))) + "\x7f"
_CONTROL_TO_SPACE = str.maketrans(_CONTROLS, " " * len(_CONTROLS))
_CONTROL_SET = frozenset(_CONTROLS)
# What XML needs escaped, as xml_escape writes it (everything else goes out as UTF-8):
# (text, entity), `&` first. `>` only after `]]`, where text may not have it.
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), ('"', "&quot;"), ("]]>", "]]&gt;"))
_ENTITIES = tuple(entity.removeprefix("]]") for _char, entity in _ESCAPES)
# Room for the stanza around a body: tags, to/from/id attributes, the subject.
STANZA_OVERHEAD = 2048


class Part(Record):
    """One message stanza's worth of text; `subject` is numbered when split."""

    subject: str
    body: str


def decode(raw: bytes) -> str:
    """UTF-8, and where a line is not, Windows-1252 (Latin-1 where even that fails).

    CVS has no notion of encodings: log messages and file names of its era are often
    Latin-1, and one commit can mix them with UTF-8. Read line by line, "café" stays
    "café" instead of "caf\ufffd"; no byte is ever fatal.
    """
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    lines = []
    for line in raw.split(b"\n"):
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            try:
                lines.append(line.decode("cp1252"))
            except UnicodeDecodeError:  # the five bytes Windows-1252 leaves undefined
                lines.append(line.decode("latin-1"))
    return "\n".join(lines)


def clean_text(raw: bytes) -> str:
    """Decode input (`decode`) and drop what XML cannot carry.

    NUL bytes mean binary data (a misconfigured pipe, not a notification): refuse them
    rather than send garbage.
    """
    if b"\x00" in raw:
        raise UsageError("input is binary (it contains NUL bytes); nothing was sent")
    text = decode(raw).removeprefix("\ufeff")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, removed = without_illegal(text)
    if removed:
        log.info("removed %d control character(s) XML cannot carry", removed)
    if not text.strip():
        raise UsageError("the message is empty; nothing was sent")
    return text.rstrip("\n")


def without_illegal(text: str) -> tuple[str, int]:
    """`text` without the characters XML cannot carry, and how many there were.

    Done on the UTF-8 bytes: `bytes.translate` deletes at C speed whatever the text (a
    `str.translate` looks each non-ASCII character up in a dict, and a regex needs `re`,
    ~4 ms of imports a small message's hand-off does without); ~1 ms per MB."""
    raw = text.encode("utf-8", "surrogatepass")  # a name from argv may carry surrogates
    kept = raw.translate(None, _ILLEGAL_BYTES)
    for sequence in _NONCHARACTERS:
        if sequence in kept:
            kept = kept.replace(sequence, b"")
    if len(kept) == len(raw):
        return text, 0
    cleaned = kept.decode("utf-8", "surrogatepass")
    return cleaned, len(text) - len(cleaned)


def clean_line(value: str) -> str:
    """A subject is one line of legal XML characters."""
    return " ".join(without_illegal(value)[0].split())


def one_line(value: str) -> str:
    """A header value: control characters (newlines included) become spaces."""
    return value.translate(_CONTROL_TO_SPACE)


def has_control(value: str) -> bool:
    """Whether a header value holds a control character (a newline would forge a field)."""
    return not _CONTROL_SET.isdisjoint(value)


def is_decimal(value: str, most: int) -> bool:
    """1 to `most` ASCII digits: no sign, space, underscore or other script's digits, all
    of which int() would take."""
    return 0 < len(value) <= most and value.isascii() and value.isdigit()


def xml_escape(text: str) -> str:
    """`text` as it goes out in a stanza, as text or as an attribute value in `"`: only
    what XML requires is escaped (`&`, `<`, `"`, and `>` after `]]`: XML 1.0 §2.4; RFC
    6120 §11.1 asks no more, unlike RFC 3920), in four C-speed passes. slixmpp's own
    escape makes one Python call per character and escapes `'` and every `>` too: each
    entity costs the server a parser callback (the bench's 1 MB with 7 of them a line
    took Prosody ~2.5x the CPU of the same size without)."""
    for char, entity in _ESCAPES:
        text = text.replace(char, entity)
    return text


# A part's body this long (characters) or longer goes as a CDATA section, when that is no
# larger: Prosody's parser calls back for every line and every entity of text, but rarely
# within CDATA (the bench's 1 MB: ~30 % less of the server's CPU). Short messages keep
# the usual form; RFC 6120 allows both, and servers pass the text on, not the form.
CDATA_FROM = 8192
CDATA_MARKUP = len("<![CDATA[]]>")  # bytes a section adds (a `]]>` inside: one more)


class CData(str):
    """Text that goes out as a CDATA section (see `as_body`)."""


def cdata_section(text: str) -> str:
    """`text` as CDATA: a `]]>` inside is split across two sections."""
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def as_body(text: str) -> str:
    """A message body as it should go out: a long one as CDATA if that is no larger than
    escaping it (so a part that fits as escaped text still fits)."""
    if len(text) < CDATA_FROM:
        return text
    cdata = len(text.encode("utf-8")) + CDATA_MARKUP * (1 + text.count("]]>"))
    return CData(text) if cdata <= wire_size(text) else text


def wire_size(text: str) -> int:
    """Bytes `text` takes inside a stanza, after XML escaping (C-speed: counts, no loop)."""
    return len(text.encode("utf-8")) + sum(
        (len(entity) - len(char)) * text.count(char) for char, entity in _ESCAPES
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


def _wire_cut(wire: bytes, at: int, budget: int) -> int:
    """Where the chunk of `wire` (the escaped UTF-8 text) starting at `at` ends: after the
    last line that fits `budget` bytes, else at the last whole character (never inside a
    UTF-8 sequence or an entity) that fits; at least one character."""
    end = at + budget
    if end >= len(wire):
        return len(wire)
    line = wire.rfind(b"\n", at, end)
    if line >= 0:
        return line + 1  # keep whole lines together
    while end > at and wire[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
        end -= 1
    amp = wire.rfind(b"&", max(at, end - 5), end)
    if amp >= 0 and wire.find(b";", amp, end) < 0:
        end = amp  # an entity cut short
    if end > at:
        return end
    if wire[at] == ord("&"):  # one character always goes, whatever it costs
        return wire.index(b";", at) + 1
    end = at + 1
    while end < len(wire) and wire[end] & 0xC0 == 0x80:
        end += 1
    return end


def _chunks(text: str, wire: bytes, budget: int, most: int, *, escaped: bool
            ) -> tuple[list[str], int]:
    """Greedy split on line boundaries (a line longer than the budget is cut by
    characters): at most `most` chunks, and the UTF-8 bytes left over. `wire` is the text
    (or a start of it longer than `most` chunks can take) encoded once, `escaped` or as
    it goes in CDATA; each cut is found there with C-speed searches and mapped back to
    characters, so the cost is linear in what is kept, whatever the input's shape (one
    40 MB line costs like 40 short ones)."""
    chunks: list[str] = []
    pos = at = 0  # in text, in wire
    while at < len(wire) and len(chunks) < most:
        end = _wire_cut(wire, at, budget)
        piece = wire[at:end].decode("utf-8")
        size = len(piece) - escaped * sum(  # characters of text: an entity stands for one
            (len(entity) - 1) * piece.count(entity) for entity in _ENTITIES)
        chunks.append(text[pos:pos + size])
        pos, at = pos + size, end
    # exact pieces: joined, the text (an ASCII str knows it is, at no cost)
    left = len(text) - pos if text.isascii() else len(text[pos:].encode("utf-8"))
    return chunks, left


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
    # Every character costs a byte at least: no part reaches past this many characters.
    head = body[:budget * max_parts + 1]
    note_room = 128
    # Long parts go as CDATA when that is smaller (as_body): counted so, text full of
    # `<`, `&` and `"` makes fewer parts (the bench's 1 MB: 4, not 5). Only when no `]]>`
    # needs splitting, and when the budget holds even a short last part fully escaped
    # (CDATA_FROM characters of `"` at 6 bytes each), which goes as text.
    escaped = budget - note_room < 6 * CDATA_FROM + CDATA_MARKUP or "]]>" in head
    wire = (xml_escape(head) if escaped else head).encode("utf-8")
    room = budget if escaped else budget - CDATA_MARKUP
    if len(wire) <= room:
        return [Part(subject, body)]
    chunks, dropped = _chunks(body, wire, room - note_room, max_parts, escaped=escaped)
    if dropped:
        note = f"\n[cvsmsg: {dropped} more bytes not sent; the message exceeded {max_parts} parts]"
        chunks[-1] += note
        log.warning("message too long: sent %d parts, %d bytes cut", max_parts, dropped)
    total = len(chunks)
    return [Part(f"{subject} (part {i}/{total})", c) for i, c in enumerate(chunks, 1)]
