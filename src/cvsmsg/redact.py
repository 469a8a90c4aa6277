"""Keep secrets out of --debug output: SASL payloads and the password itself."""

from __future__ import annotations

import logging
import re

_SASL = re.compile(
    r"(<(auth|response|challenge|success)\b[^>]*urn:ietf:params:xml:ns:xmpp-sasl[^>]*>)"
    r"[^<]*(</\2>)"
)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with SASL exchanges and the password blanked.

    The literal password is looked for only in what the libraries log (the protocol
    dump): our own messages never contain it, and blanking an ordinary word such as
    "wrong" there would mangle them ("…: [redacted] JID or password").
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SASL.sub(r"\1[redacted]\3", message)
        if not record.name.startswith("cvsmsg"):
            for secret in self.secrets:
                cleaned = cleaned.replace(secret, "[redacted]")
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
