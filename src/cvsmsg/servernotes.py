"""What a run learned about the bot's server that the next run should not have to learn again.

One fact so far: the server answers presence probes sent by clients. RFC 6121 §4.3.2 lets a
server stay silent about a contact with no available resource (ejabberd does; Prosody
answers `unavailable`), and only says a server SHOULD process client probes at all. A run
that has never seen this server answer one cannot tell "offline" from "probes ignored" and
must announce itself to find out; a run that has can read silence as offline, at once and
without flashing the bot online to its roster. Per Unix user, beside the roster cache, read
and written the same way (never through a link; any problem means: not known).
"""

from __future__ import annotations

from collections.abc import Mapping

from cvsmsg.paths import account_cache_file
from cvsmsg.tomlcache import _read_cache, _write_cache

NOTES_VERSION = 1


def notes_file(jid: str, server: str, env: Mapping[str, str]) -> str | None:
    """Where this user keeps notes on `server` as seen by `jid`; None without a home."""
    return account_cache_file("server", jid, server, env)


def _identity(jid: str, server: str) -> tuple[int | str, ...]:
    return (NOTES_VERSION, "server", jid, server)


def answers_probes(path: str, jid: str, server: str) -> bool:
    """True when an earlier run saw this server answer a client's presence probe."""
    data = _read_cache(path, _identity(jid, server))
    return data is not None and data.get("answers_probes") is True


def note_answers_probes(path: str, jid: str, server: str) -> None:
    """Remember that this server answers client probes (atomically; errors ignored)."""
    _write_cache(path, _identity(jid, server), {"answers_probes": True})
