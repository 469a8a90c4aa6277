"""Pure parsing of what CVS hands us: users-file values and notify text."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from cvsmsg.errors import RecipientError

# localpart@domain/resource rules are checked by slixmpp's JID later; this catches what
# CVS can realistically hand us (spaces, empty names, stray separators) with a clear message.
_BAD_CHARS = re.compile(r"[\s\"&'/:<>@]")


def normalize_recipient(value: str, default_domain: str | None) -> str:
    """Turn a `CVSROOT/users` value into a bare JID.

    CVS passes the value verbatim, trailing spaces and CR included; a watcher without a
    users entry arrives as a bare CVS user name, completed with `default_domain`.
    """
    address = value.strip()
    if address.lower().startswith("xmpp:"):
        address = address[5:]
    if not address:
        raise RecipientError("empty recipient address (check CVSROOT/users)")
    if re.search(r"[\s\"&'<>]", address) or address.count("@") > 1:
        raise RecipientError(f"invalid recipient address {address!r}")
    if address.lower() == "xmpp":
        # `alice:xmpp:alice@example.org` in CVSROOT/users: CVS cut the value at the ':'.
        raise RecipientError(
            "recipient 'xmpp' is an xmpp: URI cut short by CVS at the ':': "
            "write the bare JID (alice:alice@example.org) in CVSROOT/users"
        )
    if "@" not in address:
        if not default_domain:
            raise RecipientError(
                f"recipient {address!r} has no domain: add '{address}:{address}@your.domain' "
                "to CVSROOT/users or set default_domain in the config"
            )
        address = f"{address}@{default_domain}"
    local, _, domain = address.partition("@")
    # RFC 7622: localparts are case-mapped (UsernameCaseMapped), domains too; folding here
    # lets `Alice@X` and `alice@x` be the one person they are.
    local = unicodedata.normalize("NFC", local).lower()
    domain = unicodedata.normalize("NFC", domain.split("/", 1)[0]).rstrip(".").lower()
    if not local or _BAD_CHARS.search(local) or not domain or _BAD_CHARS.search(domain):
        raise RecipientError(f"invalid recipient address {value.strip()!r}")
    return f"{local}@{domain}"


@dataclass(frozen=True)
class WatchNotice:
    """What a `CVSROOT/notify` text says; fields are empty when CVS's format is not matched."""

    path: str
    kind: str  # edit, unedit, commit, temporary commit
    repository: str
    by: str


_NOTICE = re.compile(
    r"^(?P<path>.+)\n---\nTriggered (?P<kind>.+?) watch on (?P<repo>.+)\nBy (?P<by>\S+)",
    re.MULTILINE,
)


def parse_notify(text: str) -> WatchNotice | None:
    """Recognise CVS's notify text; None for anything else (it is still sent verbatim)."""
    match = _NOTICE.match(text)
    if match is None:
        return None
    return WatchNotice(match["path"], match["kind"], match["repo"], match["by"])
