"""Every slixmpp work-around and every use of its internals, in one place.

cvsmsg relies on a few things slixmpp 1.17 does not offer as public API (or offers slowly).
Each one is here, named for what the session needs, and each assumption it makes about
slixmpp is checked by tests/test_slixmpp_compat.py, so an upgrade fails a test rather than
a user. `CHECKED_VERSIONS` is the range those tests were run against.

This module imports slixmpp only inside its functions: `apply()` must run before anything
else imports slixmpp (the import stand-in only helps the first import).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import logging
import os
import re
import sys
import types
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slixmpp import ClientXMPP
    from slixmpp.stanza import Iq

log = logging.getLogger(__name__)

# slixmpp versions (>= low, < high) whose internals the patches below were checked against;
# pyproject pins the same range. Widen it only after tests/test_slixmpp_compat.py passes.
CHECKED_VERSIONS = ((1, 17), (1, 18))


# -- import: skip slixmpp's import-time `importlib.metadata` lookup ------------------------


def _version_from_dist_info() -> str | None:
    spec = importlib.util.find_spec("slixmpp")
    if spec is None or not spec.origin:
        return None
    site = os.path.dirname(os.path.dirname(spec.origin))
    for name in os.listdir(site):
        if name.startswith("slixmpp-") and name.endswith(".dist-info"):
            return name[len("slixmpp-"):-len(".dist-info")]
    return None


def import_slixmpp() -> types.ModuleType:
    """`import slixmpp` without paying for `importlib.metadata` (~16-22 ms per run).

    slixmpp 1.17 reads its own version through `importlib.metadata.version("slixmpp")` at
    import time, which pulls in the email parser and scans site-packages. While slixmpp
    imports, a stand-in answers from the `*.dist-info` directory name; it is removed right
    after, so a later `import importlib.metadata` gets the real module. If anything is
    unusual, slixmpp is imported the normal way. (Belongs in slixmpp: a version constant
    written at build time.)
    """
    if "slixmpp" in sys.modules or "importlib.metadata" in sys.modules:
        import slixmpp

        return slixmpp
    found = _version_from_dist_info()
    if found is None:
        import slixmpp

        return slixmpp

    stand_in = types.ModuleType("importlib.metadata")

    class PackageNotFoundError(ModuleNotFoundError):
        pass

    def version(name: str) -> str:
        if name == "slixmpp":
            return found
        raise PackageNotFoundError(name)

    stand_in.PackageNotFoundError = PackageNotFoundError  # type: ignore[attr-defined]
    stand_in.version = version  # type: ignore[attr-defined]
    sys.modules["importlib.metadata"] = stand_in
    try:
        import slixmpp
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
        # `importlib.metadata` as an attribute of `importlib` must not be the stand-in
        # either (the import system set it when we registered the module).
        import importlib

        if getattr(importlib, "metadata", None) is stand_in:
            del importlib.metadata
    return slixmpp


# -- patches, installed by apply() ---------------------------------------------------------


def _use_fast_scram() -> None:
    """SCRAM's Hi() is PBKDF2; slixmpp computes it in pure Python (~100 ms at 10,000
    iterations). hashlib does the same in well under a millisecond. (Belongs in slixmpp.)"""
    from slixmpp.util import bytes as to_bytes
    from slixmpp.util.sasl.mechanisms import SCRAM

    if getattr(SCRAM.Hi, "_cvsmsg_fast", False):
        return
    original = SCRAM.Hi

    def fast_hi(self: Any, text: Any, salt: bytes, iterations: int) -> bytes:
        return hashlib.pbkdf2_hmac(self.hash().name, to_bytes(text), salt, iterations)

    fast_hi._cvsmsg_fast = True  # type: ignore[attr-defined]
    fast_hi.__wrapped__ = original  # type: ignore[attr-defined]  # slixmpp's own, for tests
    SCRAM.Hi = fast_hi  # type: ignore[method-assign]


def _use_fast_escape() -> None:
    """slixmpp serialises text through a generator over every character (~16 ms per
    256 KB part, ~1 M calls per MB); chained `str.replace` gives the same XML (the same
    text once parsed) ~8x faster, with fewer entities for the server to parse (see
    `message.xml_escape`); text marked `message.CData` (only ever a message body, never
    an attribute value) goes as a CDATA section. `tostring` looks `escape` up in its
    module at each call, so replacing it there is enough; slixmpp's own CDATA output
    (`use_cdata`) stays its own. (Belongs in slixmpp.)"""
    from cvsmsg.message import CData, cdata_section, xml_escape  # what splitting counts

    # the module: `slixmpp.xmlstream.tostring` as an attribute is the function
    module = importlib.import_module("slixmpp.xmlstream.tostring")

    original = module.escape
    if getattr(original, "_cvsmsg_fast", False):
        return

    def fast_escape(text: str, use_cdata: bool = False) -> str:
        if use_cdata:
            return original(text, use_cdata)
        return cdata_section(text) if type(text) is CData else xml_escape(text)

    fast_escape._cvsmsg_fast = True  # type: ignore[attr-defined]
    fast_escape.__wrapped__ = original  # type: ignore[attr-defined]  # slixmpp's own, for tests
    module.escape = fast_escape  # type: ignore[attr-defined]


def skip_optional_imports(server_configured: bool) -> None:
    """Keep slixmpp from importing what a one-shot run never uses (~30-50 ms at start-up).

    slixmpp imports pygments (to colour its debug log) and aiodns (SRV lookups) when they
    are installed. Marking them absent makes slixmpp take its own fallbacks: plain log
    text, and no resolver when `server` names the host. Only this process is affected.
    """
    optional = ["pygments"]
    if server_configured:
        optional.append("aiodns")
    for name in optional:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def fix_ssl_abort() -> None:
    """CPython 3.11.0-3.11.2 (Debian 12's python3): an SSL transport closed twice forgets
    its protocol, and abort() then raises AttributeError. slixmpp's abort() is close() then
    abort(), so every abort after the stream began closing (a refused login, a deadline)
    became an internal error instead of exit 4 or 6. 3.11.3 fixed it in asyncio the same
    way (skip what is gone); idempotent, and nothing is changed on a fixed Python."""
    if sys.version_info >= (3, 11, 3):
        return
    from asyncio import sslproto

    transport = sslproto._SSLProtocolTransport
    if getattr(transport.abort, "_cvsmsg_fixed", False):
        return
    original = transport.abort

    def abort(self: Any) -> None:
        if self._ssl_protocol is None:  # closed twice: the protocol is shut down already
            self._closed = True
            return
        original(self)

    abort._cvsmsg_fixed = True  # type: ignore[attr-defined]
    transport.abort = abort  # type: ignore[method-assign]


def apply() -> types.ModuleType:
    """Import slixmpp the cheap way and install the patches; idempotent. Returns slixmpp.

    Call once before anything else imports slixmpp (cvsmsg.xmpp does, at import)."""
    slixmpp = import_slixmpp()
    _use_fast_scram()
    _use_fast_escape()
    fix_ssl_abort()
    return slixmpp


def installed_version() -> tuple[int, ...]:
    """The installed slixmpp's version as numbers, e.g. (1, 17, 0)."""
    import slixmpp

    found = re.match(r"\d+(?:\.\d+)*", str(slixmpp.__version__))
    return tuple(int(n) for n in found[0].split(".")) if found else ()


# -- helpers the session calls instead of touching slixmpp internals ----------------------


def watch_connection_lost(
    client: ClientXMPP, callback: Callable[[BaseException | None], None]
) -> None:
    """Call `callback(exc)` with the reason asyncio gives when the connection is lost.

    slixmpp's `disconnected` event reports a stored disconnect reason in preference to it,
    and a certificate rejected during STARTTLS arrives only there. The callback runs first,
    then slixmpp's own handler.
    """
    original = client.connection_lost

    def connection_lost(exc: BaseException | None) -> None:
        try:
            callback(exc)
        finally:
            original(exc)

    client.connection_lost = connection_lost  # type: ignore[method-assign,assignment]


# Prosody's network loop (net.server_epoll) reads 8 KiB at a time; when the TLS record it
# opened holds more, it waits for its next 1 ms timer tick before reading the rest.
# OpenSSL cuts one write into 16 KiB records, and slixmpp writes a stanza in one go: a
# 256 KB part cost ~16 such waits (~55 ms), a 1 MB message ~0.2 s. 8 KiB records are read
# whole, with no wait, as long as the run of records starts where the server's reading
# does: bytes of ours it has not read yet (an XEP-0198 answer written just before) shift
# every record against its reads, and then each one waits.
RECORD_BYTES = 8192
# How long our answer to the server's XEP-0198 request may wait to go out with our next write.
ACK_HOLD = 0.05


def write_in_records(client: ClientXMPP, size: int = RECORD_BYTES, hold: float = ACK_HOLD
                     ) -> None:
    """Shape the client's writes for a server that reads `size` bytes at a time.

    A write longer than `size` goes as `size`-byte TLS records (asyncio's SSL transport
    encrypts each item of `writelines` as a record of its own). Our answer to the server's
    ack request (XEP-0198 `<a/>`) waits up to `hold` seconds and goes out in front of our
    next write, in the same run of records. Same bytes, same order, one debug line per
    write as slixmpp logs it. Call after registering xep_0198, inside the running loop.
    """
    from slixmpp.xmlstream import xmlstream

    loop = asyncio.get_running_loop()
    original = client.send_raw
    sm = client.plugin.get("xep_0198", None)
    held: list[asyncio.TimerHandle] = []  # at most one answer waiting

    def answer() -> bytes:
        """The held answer, with the count as it is now (a larger h is still right)."""
        if not held:
            return b""
        held.pop().cancel()
        ack = _sm_ack(client, sm.handled)
        xmlstream.log.debug("SEND: %s", ack)
        return ack.encode("utf-8")

    def drop(_event: Any = None) -> None:
        while held:  # the stream it answered is gone
            held.pop().cancel()

    def send_raw(data: str | bytes) -> None:
        if client.transport is None:
            drop()
        if client.transport is None or (not held and len(data) <= size):
            if data:  # (a str is never longer than its UTF-8 bytes)
                original(data)  # as slixmpp would (NotConnectedError without a transport)
            return
        front = answer()
        if data:
            xmlstream.log.debug("SEND: %s", data)
        raw = data.encode("utf-8") if isinstance(data, str) else data
        raw = front + raw if front else raw
        if len(raw) <= size:
            client.transport.write(raw)
            return
        view = memoryview(raw)
        client.transport.writelines([view[i:i + size] for i in range(0, len(raw), size)])

    def send_ack() -> None:
        if client.transport is not None and not held:
            held.append(loop.call_later(hold, send_raw, b""))

    client.send_raw = send_raw  # type: ignore[method-assign]
    if sm is not None:
        sm.send_ack = send_ack  # type: ignore[method-assign]
        client.add_event_handler("disconnected", drop)


def _sm_ack(client: ClientXMPP, handled: int) -> str:
    """An XEP-0198 `<a h=…/>` as slixmpp's plugin writes it."""
    from slixmpp.plugins.xep_0198 import stanza

    ack = stanza.Ack(client)
    ack["h"] = handled
    return str(ack)


def server_max_bytes(client: ClientXMPP) -> int | None:
    """The stanza size limit the server advertised (XEP-0478), or None if it did not."""
    advertised = getattr(getattr(client, "limits", None), "max_bytes", None)
    return int(advertised) if advertised else None


async def send_queue_written(client: ClientXMPP) -> None:
    """Return once slixmpp has written every queued stanza to the socket (not: the server
    has them). XEP-0198's filter counts a stanza as it leaves this queue."""
    await client.waiting_queue.join()


async def cancel_send_filters(client: ClientXMPP, wait: float = 1.0) -> None:
    """Stop the send-filter task slixmpp starts in `connect()` and never ends, so a process
    that reconnects does not leave one pending task per connection ("Task was destroyed
    but it is pending"). Call after the stream is closed or aborted."""
    task = getattr(client, "_run_out_filters", None)
    if isinstance(task, asyncio.Future) and not task.done():
        task.cancel()
        if wait > 0:  # 0: never awaits (safe in a task being cancelled)
            await asyncio.wait({task}, timeout=wait)


async def ping(client: ClientXMPP, jid: str, timeout: float) -> Iq:
    """One XEP-0199 round trip to `jid`; returns the reply, result or error alike.

    An error reply is a reply too: the round trip (RFC 6120 §10.1 in-order processing) is
    what callers want. A timeout raises `slixmpp.exceptions.IqTimeout`. Registers slixmpp's
    `xep_0199` plugin on first use (it also answers the server's pings).
    """
    from slixmpp import JID
    from slixmpp.exceptions import IqError

    plugin = client.plugin.get("xep_0199", None)
    if plugin is None:
        client.register_plugin("xep_0199")
        plugin = client.plugin["xep_0199"]
    try:
        return await plugin.send_ping(JID(jid), timeout=timeout)
    except IqError as exc:
        return exc.iq


# -- XEP-0237 roster versioning: a cached roster in slixmpp's roster ---------------------------


def roster_version(client: ClientXMPP) -> str:
    """The version of the roster slixmpp holds ('' when the server never gave one)."""
    return str(client.client_roster.version or "")


def roster_items(client: ClientXMPP) -> dict[str, tuple[bool, bool, bool, str, list[str]]]:
    """Every contact slixmpp holds: JID → (from, to, pending_out, name, groups)."""
    roster = client.client_roster
    out = {}
    for jid in list(roster):
        item = roster[jid]
        out[str(jid)] = (bool(item["from"]), bool(item["to"]), bool(item["pending_out"]),
                         str(item["name"] or ""), list(item["groups"] or []))
    return out


def preload_roster(client: ClientXMPP, version: str,
                   items: dict[str, tuple[bool, bool, bool, str, list[str]]]) -> None:
    """Put a cached roster in place before `get_roster()`: slixmpp then sends its version
    (XEP-0237, when the server advertises `rosterver`), and a server with nothing new
    answers with an empty result that leaves these items as they are. A full answer
    (a version mismatch) replaces them: see `drop_missing_on_full_roster`."""
    roster = client.client_roster
    # `add` builds each item from its state in one call (1000 contacts: ~1.7 ms); going
    # through `roster[jid]` parsed a JID and set five fields one by one (~5.7 ms). The
    # keys are bare JIDs as slixmpp keyed them when the cache was written (roster_items).
    for jid, (sub_from, sub_to, pending_out, name, groups) in items.items():
        roster.add(jid, name=name, groups=list(groups), afrom=sub_from, ato=sub_to,
                   pending_out=pending_out)
    roster.version = version


def forget_roster_version(client: ClientXMPP) -> None:
    """Ask for the whole roster on the next `get_roster()` (an empty `ver`, XEP-0237 §2.2);
    the full answer replaces the items (see `drop_missing_on_full_roster`)."""
    client.client_roster.version = ""


def drop_missing_on_full_roster(client: ClientXMPP) -> None:
    """When the roster result carries the whole roster, forget contacts not in it (slixmpp
    only adds and updates from a result; a cached contact removed meanwhile would stay).

    A versioning server's whole roster carries its `ver`; its "unchanged" answer is an
    empty result (slixmpp's own handler, which runs first, adds an empty query to it)."""

    def on_roster(iq: Any) -> None:
        if iq["type"] != "result" or not iq["roster"]["ver"]:
            return
        present = {str(jid) for jid in iq["roster"]["items"]}
        roster = client.client_roster
        for jid in list(roster):
            if str(jid) not in present:
                del roster[jid]

    client.add_event_handler("roster_update", on_roster)


def versioned_roster(client: ClientXMPP) -> bool:
    """True when the server advertised roster versioning (XEP-0237) on this stream."""
    return "rosterver" in client.features


class StreamAcks:
    """XEP-0198 on one stream, through slixmpp's `xep_0198` plugin internals."""

    def __init__(self, client: ClientXMPP, plugin: Any) -> None:
        self.client = client
        self._sm = plugin

    def unacked_count(self) -> int:
        """Stanzas sent on this stream that the server has not acknowledged yet."""
        return len(self._sm.unacked_queue)

    def request_ack(self) -> None:
        """Send `<r/>`: the server answers `<a h=…/>` with the count it has handled."""
        self._sm.request_ack()

    @contextlib.contextmanager
    def on_every_ack(self, callback: Callable[[], None]) -> Iterator[None]:
        """Call `callback()` on every `<a/>`, even one that acknowledges nothing new (the
        plugin fires no `stanza_acked` then). Runs after the plugin's own ack handler."""
        from slixmpp.xmlstream.handler import Callback
        from slixmpp.xmlstream.matcher import MatchXPath

        handler = Callback(
            f"cvsmsg ack {id(self)}",
            MatchXPath(self._sm.stanza.Ack.tag_name()),
            lambda _ack: callback(),
        )
        self.client.register_handler(handler)
        try:
            yield
        finally:
            self.client.remove_handler(handler.name)


def stream_acks(client: ClientXMPP) -> StreamAcks | None:
    """XEP-0198 acks for this stream, or None unless enabled both ways (server and us).

    slixmpp fires `session_start` at bind, before the server's `<enabled/>`: right after
    it this is still None (the `sm_enabled` event, or any round trip, settles it)."""
    sm = client.plugin.get("xep_0198", None)
    if sm is None or not (sm.enabled_out and sm.enabled_in):
        return None
    return StreamAcks(client, sm)


async def wait_acked(
    client: ClientXMPP, guard: Callable[[Awaitable[Any]], Awaitable[Any]] | None = None
) -> bool:
    """Wait until the server has acknowledged every stanza sent on this stream (XEP-0198).

    Returns False at once if the stream has no XEP-0198 (the caller falls back to a ping).
    Call after `send_queue_written`: the plugin counts a stanza only as it is written, so
    an ack requested earlier can come back short. `guard` wraps each wait (a session uses
    it to give up as soon as the stream fails).
    """
    acks = stream_acks(client)
    if acks is None:
        return False
    guard = guard or (lambda aw: aw)
    answered = asyncio.Event()
    with acks.on_every_ack(answered.set):
        # Prosody may answer <r/> while a stanza is still being handled: ask again.
        while acks.unacked_count():
            answered.clear()
            acks.request_ack()
            await guard(answered.wait())
            await asyncio.sleep(0)  # let the plugin's own ack handler run first
    return True
