"""What cvsmsg's slixmpp work-arounds assume about slixmpp, checked one by one.

Each test names the assumption a helper in `cvsmsg.slixmpp_compat` makes. A slixmpp upgrade
that changes one of them fails here, with a message saying which work-around to revisit,
rather than in a user's CVS commit. The live tests use a bare `slixmpp.ClientXMPP` against
the test Prosody (not `XmppSession`), so they check slixmpp, not our session logic.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import inspect
import re
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from cvsmsg import slixmpp_compat as compat

compat.apply()

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqTimeout  # noqa: E402
from slixmpp.util.sasl.mechanisms import SCRAM  # noqa: E402

from tests.conftest import unique  # noqa: E402
from tests.harness.prosody import Prosody  # noqa: E402

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def run(coro: Awaitable[T], timeout: float = 20.0) -> T:
    """Run one test body on a fresh loop, bounded (slixmpp retries connecting forever)."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def params(func: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(func).parameters)


# -- version range ---------------------------------------------------------------------------


def test_installed_slixmpp_is_in_the_checked_range():
    low, high = compat.CHECKED_VERSIONS
    assert low <= compat.installed_version()[:2] < high, (
        f"slixmpp {slixmpp.__version__} is outside the range the work-arounds in "
        f"cvsmsg.slixmpp_compat were checked against ({low} to before {high})"
    )


def test_pyproject_pins_the_checked_range():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d.replace(" ", "") for d in deps if re.match(r"slixmpp\b", d)]
    low, high = (".".join(map(str, v)) for v in compat.CHECKED_VERSIONS)
    assert pin == f"slixmpp>={low},<{high}"


# -- import stand-in -------------------------------------------------------------------------


def _fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-X", "importtime", "-W", "error", "-c", code],
                          capture_output=True, text=True, timeout=60)


def _imported(importtime_stderr: str) -> list[str]:
    """Modules in the order their import finished (`-X importtime`)."""
    return [line.rsplit("|", 1)[-1].strip() for line in importtime_stderr.splitlines()
            if line.startswith("import time:")]


def test_import_stand_in_keeps_importlib_metadata_out():
    result = _fresh_python(
        "import sys\n"
        "from cvsmsg import slixmpp_compat\n"
        "slixmpp = slixmpp_compat.import_slixmpp()\n"
        "assert 'importlib.metadata' not in sys.modules, 'metadata is loaded'\n"
        "import importlib, importlib.metadata as real\n"
        "assert importlib.metadata is real and hasattr(real, 'distributions')\n"
        "print(slixmpp.__version__, real.version('slixmpp'))\n"
    )
    assert result.returncode == 0, result.stderr
    ours, real = result.stdout.split()
    assert ours == real != "not-installed"
    # The real module was loaded only by the test's own import, after slixmpp.
    imported = _imported(result.stderr)
    assert imported.index("importlib.metadata") > imported.index("slixmpp")


def test_slixmpp_still_reads_its_version_through_importlib_metadata():
    """Without the stand-in slixmpp loads importlib.metadata: if this fails, slixmpp no
    longer does, and import_slixmpp() can go."""
    result = _fresh_python("import slixmpp")
    assert result.returncode == 0, result.stderr
    assert "importlib.metadata" in _imported(result.stderr)


# -- fast SCRAM --------------------------------------------------------------------------------

# RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256): user "user", password "pencil".
RFC_VECTORS = [
    pytest.param(
        "SCRAM-SHA-1", "fyko+d2lbbFgONRv9qkxdawL",
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
        "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        id="rfc5802-sha1",
    ),
    pytest.param(
        "SCRAM-SHA-256", "rOprNGfwEbeRWgbNEkqO",
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,"
        "i=4096",
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        id="rfc7677-sha256",
    ),
]


def _scram(name: str) -> Any:
    """slixmpp's SCRAM mechanism, set up as slixmpp sets it up for a TLS stream."""
    creds = {"username": b"user", "password": b"pencil", "authzid": b"", "channel_binding": b""}
    security = {"encrypted": True, "unencrypted_scram": False, "binding_proposed": True,
                "tls_version": "TLSv1.3"}
    return SCRAM(name, creds, security)


def test_fast_scram_is_installed_once():
    hi = SCRAM.Hi
    assert getattr(hi, "_cvsmsg_fast", False)
    compat.apply()
    assert SCRAM.Hi is hi
    assert params(hi.__wrapped__) == ["self", "text", "salt", "iterations"], (  # type: ignore[attr-defined]
        "slixmpp's SCRAM.Hi changed its signature: re-check the fast Hi in slixmpp_compat"
    )


@pytest.mark.parametrize(("mech", "cnonce", "server_first", "client_final", "server_final"),
                         RFC_VECTORS)
def test_fast_scram_hi_equals_slixmpps_on_the_rfc_vector(
    mech, cnonce, server_first, client_final, server_final
):
    scram = _scram(mech)
    salt = base64.b64decode(re.search(r"s=([^,]+)", server_first)[1])  # type: ignore[index]
    slow = SCRAM.Hi.__wrapped__(scram, b"pencil", salt, 4096)  # type: ignore[attr-defined]
    assert SCRAM.Hi(scram, b"pencil", salt, 4096) == slow
    assert SCRAM.Hi(scram, "pencil", salt, 4096) == slow  # str password, as in credentials


@pytest.mark.parametrize(("mech", "cnonce", "server_first", "client_final", "server_final"),
                         RFC_VECTORS)
def test_slixmpp_scram_with_fast_hi_passes_the_rfc_exchange(
    mech, cnonce, server_first, client_final, server_final
):
    scram = _scram(mech)
    scram.process()  # client-first; the RFC's nonce replaces the random one
    scram.cnonce = cnonce.encode()
    scram.client_first_message_bare = b"n=user,r=" + scram.cnonce
    assert scram.process(server_first.encode()) == client_final.encode()
    scram.process(server_final.encode())  # raises if the server signature does not match


# -- live: against the test Prosody -----------------------------------------------------------


async def start(
    prosody: Prosody, *, trusted: bool = True, sm: bool = True, name: str = "compat",
    before_connect: Callable[[slixmpp.ClientXMPP], None] | None = None,
) -> slixmpp.ClientXMPP:
    """A bare slixmpp client of a fresh account, logged in (STARTTLS, no presence sent)."""
    user = unique(name)
    jid = prosody.register(user, "pw-" + user)
    cafile = str(prosody.ca) if trusted else None
    client = slixmpp.ClientXMPP(f"{jid}/t", "pw-" + user,
                                ssl_context=ssl.create_default_context(cafile=cafile))
    client.enable_direct_tls = False
    client.whitespace_keepalive = False
    if sm:
        client.register_plugin("xep_0198", {"window": 0, "allow_resume": False})
    if before_connect:
        before_connect(client)
    # slixmpp fires session_start at bind, before the server's <enabled/> (XEP-0198).
    ready = "sm_enabled" if sm else "session_start"
    started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    client.add_event_handler(ready, lambda _e: started.done() or started.set_result(None))
    client.connect("127.0.0.1", prosody.port)
    if trusted:
        await asyncio.wait_for(started, 10)
    return client


async def stop(client: slixmpp.ClientXMPP) -> None:
    client.cancel_connection_attempt()
    if client.transport is not None:
        await asyncio.wait_for(client.disconnect(wait=2), 5)
    await compat.cancel_send_filters(client)


def test_connection_lost_hook_sees_the_untrusted_certificate(prosody):
    seen: list[BaseException | None] = []
    disconnected: list[Any] = []

    async def body() -> None:
        lost = asyncio.Event()

        def hook(client: slixmpp.ClientXMPP) -> None:
            compat.watch_connection_lost(client, lambda exc: (seen.append(exc), lost.set()))
            client.add_event_handler("disconnected", disconnected.append)

        client = await start(prosody, trusted=False, before_connect=hook)
        try:
            await asyncio.wait_for(lost.wait(), 10)
            await asyncio.sleep(0)
        finally:
            client.abort()
            await stop(client)

    run(body())
    assert isinstance(seen[0], ssl.SSLError), seen
    assert "certificate verify failed" in str(seen[0])
    assert disconnected, "slixmpp's own connection_lost no longer ran after the hook"


def test_connection_lost_signature():
    assert params(slixmpp.ClientXMPP.connection_lost) == ["self", "exception"]


def test_stream_acks_confirm_a_message(prosody):
    recipient = prosody.register(unique("to"), "pw")  # offline: the server stores it

    async def body() -> tuple[int, int, bool]:
        client = await start(prosody)
        try:
            acks = compat.stream_acks(client)
            assert acks is not None, "Prosody's mod_smacks is on: XEP-0198 should be enabled"
            client.send_message(mto=recipient, mbody="hello")
            await compat.send_queue_written(client)
            before = acks.unacked_count()
            done = await asyncio.wait_for(compat.wait_acked(client), 5)
            return before, acks.unacked_count(), done
        finally:
            await stop(client)

    before, after, done = run(body())
    assert (before, after, done) == (1, 0, True), (
        "the xep_0198 plugin counts a written message as unacked and the server's <a/> "
        "clears it"
    )


def test_without_stream_management_wait_acked_says_so(prosody):
    async def body() -> tuple[object, bool]:
        client = await start(prosody, sm=False)
        try:
            return compat.stream_acks(client), await compat.wait_acked(client)
        finally:
            await stop(client)

    assert run(body()) == (None, False)


def test_stream_management_internals_are_where_we_look():
    from slixmpp.plugins.xep_0198 import XEP_0198, stanza

    assert stanza.Ack.tag_name() == "{urn:xmpp:sm:3}a"
    assert params(XEP_0198.request_ack) == ["self", "e"]
    assert params(slixmpp.plugins.base.PluginManager.get) == ["self", "name", "default"]

    async def body() -> None:
        client = slixmpp.ClientXMPP("a@localhost/x", "p")
        client.register_plugin("xep_0198", {"window": 0, "allow_resume": False})
        sm = client.plugin["xep_0198"]
        assert (sm.enabled_in, sm.enabled_out, len(sm.unacked_queue)) == (False, False, 0)
        assert isinstance(client.waiting_queue, asyncio.Queue)
        assert compat.stream_acks(client) is None

    run(body())


def _tap(client: slixmpp.ClientXMPP) -> list[bytes]:
    """What the client hands its (TLS) transport, one item per write."""
    out: list[bytes] = []
    transport = client.transport
    write, writelines = transport.write, transport.writelines
    transport.write = lambda data: (out.append(bytes(data)), write(data))[1]
    transport.writelines = lambda items: (out.append(b"".join(items)), writelines(items))[1]
    return out


def _tls_records(wire: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in `wire`."""
    records, at = [], 0
    while at + 5 <= len(wire):
        length = int.from_bytes(wire[at + 3:at + 5], "big")
        records.append((wire[at], length))
        at += 5 + length
    return records


def test_a_long_write_goes_as_8_kib_tls_records(prosody):
    """write_in_records: asyncio's SSL transport encrypts each `writelines` item as a record
    of its own, so a 40 KB stanza leaves in records of RECORD_BYTES (plus the AEAD's
    17 bytes), not OpenSSL's 16 KiB ones; the server takes it (acked)."""
    recipient = prosody.register(unique("to"), "pw")

    async def body() -> tuple[list[tuple[int, int]], bool]:
        client = await start(prosody, before_connect=compat.write_in_records)
        try:
            raw = client.transport._ssl_protocol._transport  # the socket's own transport
            wire = bytearray()
            write = raw.write
            raw.write = lambda data: (wire.extend(data), write(data))[1]
            client.send_message(mto=recipient, mbody="x" * 40_000)
            await compat.send_queue_written(client)
            done = await asyncio.wait_for(compat.wait_acked(client), 5)
            return _tls_records(bytes(wire)), done
        finally:
            await stop(client)

    records, done = run(body())
    sizes = [length for kind, length in records if kind == 23]  # application data
    assert done
    assert sizes.count(compat.RECORD_BYTES + 17) >= 4, sizes
    assert max(sizes) == compat.RECORD_BYTES + 17, sizes


def test_the_answer_to_an_ack_request_goes_with_the_next_write(prosody):
    """Prosody asks for an ack (`<r/>`) after the stanzas it sends us; slixmpp's plugin
    answers through its `send_ack`. write_in_records holds that answer: it goes in front
    of our next write, or alone after ACK_HOLD."""
    async def body() -> tuple[list[bytes], list[bytes], list[bytes]]:
        client = await start(prosody, before_connect=compat.write_in_records)
        try:
            out = _tap(client)
            await compat.ping(client, client.boundjid.domain, 5)
            await asyncio.sleep(0.01)
            at_once = list(out)
            await asyncio.sleep(compat.ACK_HOLD + 0.1)
            alone = list(out)
            await compat.ping(client, client.boundjid.domain, 5)
            await asyncio.sleep(0.01)
            client.send_raw(" ")
            return at_once, alone, list(out)
        finally:
            await stop(client)

    at_once, alone, last = run(body())
    assert [w[:3] for w in at_once] == [b"<iq"], at_once
    assert alone[1] == b'<a xmlns="urn:xmpp:sm:3" h="1" />', alone
    assert last[3] == b'<a xmlns="urn:xmpp:sm:3" h="2" /> ', last


def test_ping_round_trip_and_error_reply(prosody):
    async def body() -> tuple[str, str, str]:
        client = await start(prosody)
        try:
            ok = await compat.ping(client, client.boundjid.domain, 5)
            # s2s is off in the test server: another domain gets an error reply
            bad = await compat.ping(client, "nowhere.invalid", 5)
            return ok["type"], bad["type"], bad["error"]["condition"]
        finally:
            await stop(client)

    ok, bad, condition = run(body())
    assert (ok, bad) == ("result", "error")
    assert condition in ("not-allowed", "remote-server-not-found")  # Prosody 0.12: the first


def test_ping_without_reply_raises_timeout(prosody):
    """A peer that swallows the ping: the round trip never completes, so `ping` raises."""
    from slixmpp.xmlstream.handler import Callback
    from slixmpp.xmlstream.matcher import StanzaPath

    def swallow_pings(client: slixmpp.ClientXMPP) -> None:
        client.register_plugin("xep_0199")
        client.remove_handler("Ping")  # the plugin's auto-reply
        client.register_handler(Callback("swallow", StanzaPath("iq@type=get/ping"),
                                         lambda _iq: None))

    async def body() -> None:
        client = await start(prosody)
        mute = await start(prosody, name="mute", before_connect=swallow_pings)
        try:
            with pytest.raises(IqTimeout):
                await compat.ping(client, mute.boundjid.full, 0.5)
        finally:
            await stop(mute)
            await stop(client)

    run(body())


def test_ping_plugin_api():
    from slixmpp.plugins.xep_0199 import XEP_0199

    assert params(XEP_0199.send_ping)[:3] == ["self", "jid", "ifrom"]
    assert "timeout" in params(XEP_0199.send_ping)


def test_cancel_send_filters_leaves_no_pending_task(prosody):
    def filter_tasks() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if not t.done()
                and getattr(t.get_coro(), "__name__", "") == "run_filters"]

    async def body() -> tuple[int, int]:
        client = await start(prosody)
        client.cancel_connection_attempt()
        await asyncio.wait_for(client.disconnect(wait=2), 5)
        left_by_slixmpp = len(filter_tasks())
        await compat.cancel_send_filters(client)
        return left_by_slixmpp, len(filter_tasks())

    left_by_slixmpp, after = run(body())
    assert left_by_slixmpp == 1, (
        "slixmpp no longer leaves its send-filter task pending after disconnect: "
        "cancel_send_filters may be unnecessary, or it moved"
    )
    assert after == 0


def test_server_max_bytes_is_none_on_prosody_012(prosody):
    async def body() -> int | None:
        client = await start(prosody)
        try:
            return compat.server_max_bytes(client)
        finally:
            await stop(client)

    assert run(body()) is None


def test_server_max_bytes_reads_the_xep_0478_limits():
    from slixmpp.features.feature_limits.limits import Limits

    async def body() -> tuple[int | None, int | None]:
        client = slixmpp.ClientXMPP("a@localhost/x", "p")
        unset = compat.server_max_bytes(client)
        client.limits = Limits(max_bytes=10000, idle_seconds=None)
        return unset, compat.server_max_bytes(client)

    assert run(body()) == (None, 10000)


TRICKY_TEXTS = [
    "", "plain", "&", "&amp;", "&&<<>>", "<![CDATA[x]]>", "a'b\"c", "é ü 雪 \U0001f600",
    "tab\tnew\nline\rcr", "&lt;already&gt; &#38; &quot;", "]]>", "x" * 70_000 + "<&>'\"",
    "".join(chr(c) for c in range(0x20, 0x250)),
]


@pytest.mark.parametrize("text", TRICKY_TEXTS)
def test_fast_escape_parses_as_slixmpps(text):
    """The fast escape gives the same XML as slixmpp's (the same text and attribute value
    once parsed: tostring quotes attributes with `"`), and CDATA output is slixmpp's own."""
    # the module: `slixmpp.xmlstream.tostring` as an attribute is the function
    module = importlib.import_module("slixmpp.xmlstream.tostring")

    original = module.escape.__wrapped__

    def parsed(escaped: str) -> tuple[str, str]:
        elem = slixmpp.xmlstream.ET.fromstring(f'<a b="{escaped}">{escaped}</a>')
        return elem.text or "", elem.attrib["b"]

    text = text.replace("\r", "")  # (XML parsers turn it into a newline, either way)
    assert parsed(module.escape(text)) == parsed(original(text))
    assert parsed(module.escape(text))[0] == text
    assert module.escape(text, True) == original(text, True)


def test_a_cdata_body_is_serialised_as_cdata():
    """Text marked CData (a long message body) goes as a CDATA section, `]]>` split across
    two, and parses back to the same text; attribute values are never marked."""
    from cvsmsg.message import CData

    module = importlib.import_module("slixmpp.xmlstream.tostring")
    elem = slixmpp.xmlstream.ET.Element("body", {"a": 'x"<'})
    text = "a < b & ]]> 'c' \"d\"\né"
    elem.text = CData(text)
    out = module.tostring(elem)
    assert out == '<body a="x&quot;&lt;"><![CDATA[a < b & ]]]]><![CDATA[> \'c\' "d"\né]]></body>'
    assert slixmpp.xmlstream.ET.fromstring(out).text == text


def test_tostring_uses_the_patched_escape():
    """`tostring` looks `escape` up in its module at each call (what the patch relies on),
    and a serialised message body comes out escaped."""
    # the module: `slixmpp.xmlstream.tostring` as an attribute is the function
    module = importlib.import_module("slixmpp.xmlstream.tostring")

    assert getattr(module.escape, "_cvsmsg_fast", False)
    assert "escape" in module.tostring.__code__.co_names
    elem = slixmpp.xmlstream.ET.Element("body")
    elem.text = "a < b & 'c'"
    assert module.tostring(elem) == "<body>a &lt; b &amp; 'c'</body>"
    compat.apply()  # idempotent: never wraps twice
    assert getattr(module.escape.__wrapped__, "_cvsmsg_fast", False) is False


def test_roster_versioning_with_a_preloaded_roster(prosody):
    """XEP-0237 through slixmpp: Prosody advertises `rosterver`; a preloaded roster at the
    current version gets an empty answer and stays; at an old version the whole roster
    comes back and cached contacts missing from it are dropped."""
    user = unique("ver")
    jid = prosody.register(user, "pw-" + user)
    friend, ghost = f"friend-{user}@localhost", f"ghost-{user}@localhost"

    async def session(preload: tuple[str, dict[str, Any]] | None = None
                      ) -> tuple[str, dict[str, Any], int]:
        client = slixmpp.ClientXMPP(f"{jid}/t", "pw-" + user,
                                    ssl_context=ssl.create_default_context(cafile=str(prosody.ca)))
        client.enable_direct_tls = False
        client.whitespace_keepalive = False
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start",
                                 lambda _e: started.done() or started.set_result(None))
        client.connect("127.0.0.1", prosody.port)
        try:
            await asyncio.wait_for(started, 10)
            assert compat.versioned_roster(client)
            compat.drop_missing_on_full_roster(client)
            if preload is not None:
                compat.preload_roster(client, *preload)
            answer = await client.get_roster(timeout=5)
            sent = len(answer["roster"]["items"])
            if preload is None:
                await client.update_roster(friend, name="Friend")
            return compat.roster_version(client), compat.roster_items(client), sent
        finally:
            await stop(client)

    version, items, _ = run(session())
    assert version and friend in items  # the push after our change carried a new version
    assert items[friend][3] == "Friend"
    again, kept, sent = run(session((version, items)))
    assert (again, sent) == (version, 0), "unchanged: an empty result"
    assert kept == items
    stale = {**items, ghost: (True, True, False, "", [])}
    _, fresh, sent = run(session(("stale", stale)))
    assert sent == 1
    assert set(fresh) == {friend}, "a full answer replaces the cached roster"


def test_an_ssl_transport_closed_twice_can_still_be_aborted():
    """slixmpp's abort() is close() then abort(); on CPython 3.11.0-3.11.2 a transport
    closed before forgot its protocol and abort() raised AttributeError (a wrong password
    became "internal error"; test_errors covers that end to end)."""
    from asyncio import sslproto

    compat.fix_ssl_abort()

    class Protocol:
        aborted = shutdowns = 0

        def _start_shutdown(self) -> None:
            self.shutdowns += 1

        def _abort(self, exc: BaseException | None = None) -> None:
            self.aborted += 1

    loop = asyncio.new_event_loop()
    try:
        protocol = Protocol()
        transport = sslproto._SSLProtocolTransport(loop, protocol)
        transport.abort()  # a live one is aborted as before
        assert protocol.aborted == 1
        transport = sslproto._SSLProtocolTransport(loop, protocol)
        transport.close()
        transport.close()
        transport.abort()
        assert transport.is_closing()
        assert protocol.shutdowns == 1
    finally:
        loop.close()
