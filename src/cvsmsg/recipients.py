"""Recipients: a `CVSROOT/users` value (or a config entry) to a bare JID, once for every
path; invalid values become failed Outcomes, never a reason to drop the valid ones."""

from __future__ import annotations

import contextlib
import stringprep
import unicodedata
from collections.abc import Iterable

from cvsmsg.errors import RecipientError
from cvsmsg.report import Outcome

# Besides whitespace, what no address may hold (XML's specials). Sets, not regexes: `re`
# (and the `enum` it needs) costs every background hand-off ~4 ms to import.
_UNSAFE = frozenset("\"&'<>")
# What a domain label may not hold once prepared (slixmpp's ILLEGAL_CHARS: ASCII other than
# letters, digits and '-', controls included).
_DOMAIN_ILLEGAL = frozenset(map(chr, (*range(0x2d), 0x2e, 0x2f, *range(0x3a, 0x41),
                                      *range(0x5b, 0x61), *range(0x7b, 0x80))))
# A label made of these alone is its own nameprep (lower-cased) and IDNA form.
_HOST_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_MAX_LABEL = 63  # RFC 1035 2.3.4, which IDNA's ToASCII enforces
_MAX_PART = 1023  # RFC 7622 §3.1: each part at most 1023 octets


def unsafe(text: str, also: str = "") -> bool:
    """Whether `text` holds whitespace (what re's \\s matches: str.split's), one of XML's
    specials, or a character of `also`: never part of an address."""
    return (text.split() != [text] or not _UNSAFE.isdisjoint(text)
            or any(c in text for c in also))


def _strip_ignorable(text: str) -> str:
    """Remove what RFC 3454 table B.1 maps to nothing (zero-width spaces and joiners, soft
    hyphen, BOM...): invisible when pasted into CVSROOT/users, so never part of an address."""
    return "".join(c for c in text if not stringprep.in_table_b1(c))


def _nodeprep(local: str) -> str:
    """RFC 6122 nodeprep, as slixmpp applies it: case folded, NFKC (so a fullwidth name is
    the ASCII one), and nothing prohibited. ValueError when the localpart is not valid."""
    folded = "".join(stringprep.map_table_b2(c) for c in local)
    text = unicodedata.ucd_3_2_0.normalize("NFKC", folded)
    for c in text:
        if (
            c in " '\"&/:<>@" or stringprep.in_table_a1(c) or stringprep.in_table_c11(c)
            or stringprep.in_table_c12(c) or stringprep.in_table_c21_c22(c)
            or stringprep.in_table_c3(c) or stringprep.in_table_c4(c)
            or stringprep.in_table_c5(c) or stringprep.in_table_c6(c)
            or stringprep.in_table_c7(c) or stringprep.in_table_c8(c)
            or stringprep.in_table_c9(c)
        ):
            raise ValueError(f"character {c!r} is not allowed in a localpart")
    if any(stringprep.in_table_d1(c) for c in text) and (
        any(stringprep.in_table_d2(c) for c in text)
        or not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1]))
    ):
        raise ValueError("mixed right-to-left and left-to-right text")
    return text


def _domainprep(domain: str) -> str:
    """The domain as slixmpp keeps it: nameprep'd labels, IDNA A-labels turned back into
    Unicode (so `xn--bcher-kva.example` and `bücher.example` are one domain), IP literals
    as they are. ValueError when it is not a valid domain."""
    # _socket's own functions: socket.py adds enums and selectors (~2.5 ms), not needed
    # for two address checks on the background hand-off's path
    import _socket

    with contextlib.suppress(OSError):
        _socket.inet_aton(domain)
        return domain
    if domain.startswith("[") and domain.endswith("]"):
        try:
            _socket.inet_pton(_socket.AF_INET6, domain[1:-1])
        except OSError:
            raise ValueError(f"{domain} is not an IPv6 address") from None
        return domain.lower()
    labels = []
    for label in domain.rstrip(".").split("."):
        if (0 < len(label) <= _MAX_LABEL and _HOST_NAME.issuperset(label)
                and label[:4].lower() != "xn--"):
            labels.append(_checked_label(label.lower()))  # nameprep and ToASCII agree
            continue
        from encodings import idna  # imports re: only for other labels

        try:
            label = idna.nameprep(label)
            idna.ToASCII(label)  # length and the rest of IDNA2003's rules
            if label.startswith("xn--"):
                label = idna.ToUnicode(label)
        except UnicodeError as exc:
            raise ValueError(f"label {label!r}: {exc}") from None
        labels.append(_checked_label(label))
    return ".".join(labels)


def _checked_label(label: str) -> str:
    """A prepared label slixmpp would accept, else ValueError."""
    if not label or not _DOMAIN_ILLEGAL.isdisjoint(label) or "-" in (label[0], label[-1]):
        raise ValueError(f"label {label!r} is not a host name")
    return label


def normalize_recipient(value: str, default_domain: str | None) -> str:
    """Turn a `CVSROOT/users` value (or a config entry) into the bare JID slixmpp, the roster
    and the server use for the same person, or raise RecipientError.

    CVS passes the value verbatim, trailing spaces and CR included; a watcher without a
    users entry arrives as a bare CVS user name, completed with `default_domain`. Equivalent
    spellings fold to one (case, width, invisible characters, IDNA); anything slixmpp would
    refuse is refused here, so it is exit 7 at once rather than a message queued forever.
    """
    address = _strip_ignorable(value).strip()
    if address.lower().startswith("xmpp:"):
        address = address[5:]
    if not address:
        raise RecipientError("empty recipient address (check CVSROOT/users)")
    shown = repr(address)  # never a raw control character on a terminal
    if unsafe(address) or address.count("@") > 1:
        raise RecipientError(f"invalid recipient address {shown}")
    if address.lower() == "xmpp":
        # `alice:xmpp:alice@example.org` in CVSROOT/users: CVS cut the value at the ':'.
        raise RecipientError(
            "recipient 'xmpp' is an xmpp: URI cut short by CVS at the ':': "
            "write the bare JID (alice:alice@example.org) in CVSROOT/users"
        )
    if "@" not in address:
        if not default_domain:
            raise RecipientError(
                f"recipient {shown} has no domain: add '{address}:{address}@your.domain' "
                "to CVSROOT/users or set default_domain in the config"
            )
        address = f"{address}@{default_domain}"
    local, _, domain = address.partition("@")
    try:
        local = _nodeprep(local)
        domain = _domainprep(domain.split("/", 1)[0])
        if not local or not domain:
            raise ValueError("empty localpart or domain")
        if max(len(local.encode()), len(domain.encode())) > _MAX_PART:
            raise ValueError("too long")
    except ValueError as exc:
        raise RecipientError(f"invalid recipient address {shown}: {exc}") from None
    return f"{local}@{domain}"


def own_address(jid: str | None) -> str | None:
    """The bot's own bare JID folded as recipients are: never a recipient."""
    if not jid:
        return None
    with contextlib.suppress(RecipientError):
        return normalize_recipient(jid.split("/", 1)[0], None)
    return None


def resolve_recipients(
    values: Iterable[str], default_domain: str | None, own_jid: str | None = None
) -> tuple[list[str], list[Outcome]]:
    """Valid bare JIDs (deduplicated, in order) and a failed Outcome for each invalid value;
    the bot's own address is invalid (it would ask itself to subscribe)."""
    own = own_address(own_jid)
    valid: list[str] = []
    invalid: list[Outcome] = []
    for value in values:
        shown = value.strip()
        shown = shown if shown.isprintable() else repr(shown)
        try:
            jid = normalize_recipient(value, default_domain)
            if jid == own:
                raise RecipientError(
                    f"recipient {jid} is cvsmsg's own account: it cannot notify itself"
                )
        except RecipientError as exc:
            invalid.append(Outcome(shown, False, str(exc), failed=True))
            continue
        if jid not in valid:
            valid.append(jid)
    return valid, invalid


def normalize_room(value: str) -> str:
    """A group-chat room's bare JID (room@service), as `normalize_recipient` folds it; never
    completed with `default_domain` (a room lives on its own service)."""
    if "@" not in value:
        shown = value.strip()
        raise RecipientError(
            f"room {shown if shown.isprintable() else repr(shown)!s} has no service: "
            "write room@conference.example.org"
        )
    return normalize_recipient(value, None)


def resolve_rooms(values: Iterable[str]) -> tuple[list[str], list[Outcome]]:
    """Valid room JIDs (deduplicated, in order) and a failed Outcome for each invalid one."""
    valid: list[str] = []
    invalid: list[Outcome] = []
    for value in values:
        try:
            jid = normalize_room(value)
        except RecipientError as exc:
            invalid.append(Outcome(value.strip(), False, str(exc), failed=True))  # exit 7
            continue
        if jid not in valid:
            valid.append(jid)
    return valid, invalid
