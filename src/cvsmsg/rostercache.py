"""The bot's roster, kept between runs for XEP-0237 roster versioning.

With the roster and its version cached, the server answers the roster request with an empty
result when nothing changed, instead of every contact (a 1000-contact roster costs each
run ~30 ms of parsing and the server's serialising). The cache is per Unix user, like the
parsed config (paths.config_cache_dir: directory 0700, files 0600, never opened through a
link, used only when owned by us with no group or other bits; `tomlcache`'s reader and
writer), one file per bot JID and server. Any problem with it means: fetch the whole roster.
"""

from __future__ import annotations

from collections.abc import Mapping

from cvsmsg.paths import account_cache_file
from cvsmsg.tomlcache import _read_cache, _write_cache

CACHE_VERSION = 1
# (subscription "from", "to", pending_out, name, groups) of one contact
Item = tuple[bool, bool, bool, str, list[str]]


def cache_file(jid: str, server: str, env: Mapping[str, str]) -> str | None:
    """Where this user keeps the roster of `jid` on `server`; None without a home."""
    return account_cache_file("roster", jid, server, env)


def _identity(jid: str, server: str) -> tuple[int | str, ...]:
    return (CACHE_VERSION, "roster", jid, server)


def load(path: str, jid: str, server: str) -> tuple[str, dict[str, Item]] | None:
    """(version, items) cached for `jid` on `server`, or None."""
    data = _read_cache(path, _identity(jid, server))
    if data is None:
        return None
    version, items = data.get("version"), data.get("items")
    if not isinstance(version, str) or not version or not isinstance(items, dict):
        return None
    return version, items


def save(path: str, jid: str, server: str, version: str, items: dict[str, Item]) -> None:
    """Keep `items` at `version` for the next run (atomically; errors ignored)."""
    _write_cache(path, _identity(jid, server), {"version": version, "items": items})
