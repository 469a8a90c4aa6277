"""Real slixmpp clients that play the people cvsmsg notifies.

They run on one asyncio loop in a background thread, so synchronous tests (and the demo)
can drive them while `cvsmsg` runs as a real subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import slixmpp
from slixmpp.exceptions import IqError

T = TypeVar("T")
log = logging.getLogger(__name__)


class LoopThread:
    """An asyncio loop in a daemon thread; `run()` executes a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 20.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()


@dataclass
class Received:
    sender: str
    subject: str
    body: str
    type: str
    resource: str = ""  # which of the person's devices got it
    # XEP-0203 <delay xmlns='urn:xmpp:delay'>, read from the raw XML: its stamp and from
    delay: str = ""
    delay_from: str = ""


class Person:
    """One XMPP account with any number of resources (devices), each with its own show."""

    def __init__(self, loops: LoopThread, jid: str, password: str, port: int, ca: Path) -> None:
        self.loops = loops
        self.jid = jid
        self.password = password
        self.port = port
        self.ca = ca
        self.clients: dict[str, slixmpp.ClientXMPP] = {}
        self.messages: list[Received] = []
        self.subscription_requests: list[str] = []
        self.presences: list[tuple[str, str]] = []  # (sender bare JID, type) seen
        self._lock = threading.Lock()

    # -- on the loop ---------------------------------------------------------------------

    async def _connect(
        self, resource: str, show: str | None, auto_accept: bool, priority: int = 0
    ) -> None:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        client = slixmpp.ClientXMPP(f"{self.jid}/{resource}", self.password, ssl_context=ctx)
        client.enable_direct_tls = False
        client.whitespace_keepalive = False
        client.auto_authorize = True if auto_accept else None
        client.auto_subscribe = auto_accept
        started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_start(_e: Any) -> None:
            if not started.done():
                started.set_result(None)

        def on_fail(_e: Any) -> None:
            if not started.done():
                started.set_exception(RuntimeError(f"{self.jid}/{resource} could not log in"))

        def on_message(msg: Any) -> None:
            if msg["type"] in ("normal", "chat", "headline"):
                delay = msg.xml.find("{urn:xmpp:delay}delay")
                stamp, origin = ("", "") if delay is None else (
                    delay.get("stamp", ""), delay.get("from", ""))
                with self._lock:
                    self.messages.append(
                        Received(msg["from"].bare, msg["subject"], msg["body"], msg["type"],
                                 resource, stamp, origin)
                    )

        def on_presence(pres: Any) -> None:
            if pres["type"] in ("available", "unavailable", "away", "chat", "dnd", "xa"):
                with self._lock:
                    self.presences.append((pres["from"].bare, pres["type"]))

        def on_subscribe(pres: Any) -> None:
            with self._lock:
                self.subscription_requests.append(pres["from"].bare)

        client.add_event_handler("session_start", on_start)
        client.add_event_handler("failed_all_auth", on_fail)
        client.add_event_handler("message", on_message)
        client.add_event_handler("presence_subscribe", on_subscribe)
        client.add_event_handler("presence", on_presence)
        client.connect("127.0.0.1", self.port)
        await asyncio.wait_for(started, 10)
        await client.get_roster(timeout=10)
        self.clients[resource] = client
        await self._announce(resource, show, priority)

    async def _announce(self, resource: str, show: str | None, priority: int = 0) -> None:
        client = self.clients[resource]
        if show is None:
            await asyncio.wait_for(client.disconnect(), 5)
            del self.clients[resource]
            return
        client.send_presence(pshow=show or None, ppriority=priority or None)
        await self._roundtrip(client)

    @staticmethod
    async def _roundtrip(client: slixmpp.ClientXMPP) -> None:
        """Our presence is processed by the server once a ping after it comes back."""
        iq = client.Iq()
        iq["type"] = "get"
        iq["to"] = client.boundjid.domain
        iq.append(slixmpp.xmlstream.ET.Element("{urn:xmpp:ping}ping"))
        with contextlib.suppress(IqError):  # a server without mod_ping still answers
            await iq.send(timeout=10)

    # -- from the test thread -------------------------------------------------------------

    def online(
        self, show: str = "", resource: str = "desk", auto_accept: bool = True, priority: int = 0
    ) -> Person:
        """Log a resource in with `show` ('' = available, or away/chat/dnd/xa)."""
        if resource in self.clients:
            self.loops.run(self._announce(resource, show, priority))
        else:
            self.loops.run(self._connect(resource, show, auto_accept, priority))
        return self

    def offline(self, resource: str | None = None) -> Person:
        """Log one resource (or all) out."""
        for res in [resource] if resource else list(self.clients):
            if res in self.clients:
                self.loops.run(self._announce(res, None))
        return self

    def send_presence(self, to: str, ptype: str, resource: str = "desk") -> None:
        """Send a subscription-management presence (subscribe, unsubscribe, ...)."""
        client = self.clients[resource]

        async def go() -> None:
            client.send_presence(pto=to, ptype=ptype)
            await self._roundtrip(client)

        self.loops.run(go())

    def roster_subscription(self, jid: str, resource: str = "desk") -> str:
        """Our side's subscription state toward `jid`, fresh from the server."""
        client = self.clients[resource]

        async def go() -> str:
            await client.get_roster(timeout=10)
            roster = client.client_roster
            return str(roster[jid]["subscription"]) if roster.has_jid(jid) else "none"

        return self.loops.run(go())

    def roster_item(self, jid: str, resource: str = "desk") -> tuple[str, bool]:
        """(subscription, pending_out) toward `jid`, fresh from the server: ("none", True)
        is a request still unanswered, ("none", False) one refused (or never made)."""
        client = self.clients[resource]

        async def go() -> tuple[str, bool]:
            await client.get_roster(timeout=10)
            roster = client.client_roster
            if not roster.has_jid(jid):
                return "none", False
            return str(roster[jid]["subscription"]), bool(roster[jid]["pending_out"])

        return self.loops.run(go())

    def track_presence(self, resource: str = "desk") -> list[tuple[str, str]]:
        """From now on, record every presence stanza `resource` receives as (sender bare
        JID, type), subscription answers (`subscribed`, `unsubscribed`) included; the
        returned list fills in as they arrive."""
        client = self.clients[resource]
        seen: list[tuple[str, str]] = []

        def on_presence(pres: Any) -> None:
            with self._lock:
                seen.append((pres["from"].bare, pres["type"]))

        async def go() -> None:
            client.add_event_handler("presence", on_presence)

        self.loops.run(go())
        return seen

    def join_room(
        self, room: str, nick: str, resource: str = "desk", **config: object
    ) -> list[Received]:
        """Join the group-chat `room` as `nick`, creating it when it does not exist, and
        configure it as its owner with `config` (e.g. `membersonly=True`; this also unlocks
        a new room). The returned list fills in with each groupchat message the
        room relays from then on (sender = the occupant's nick)."""
        client = self.clients[resource]
        got: list[Received] = []

        def on_groupchat(msg: Any) -> None:
            if msg["from"].bare == room and msg["type"] == "groupchat" and msg["body"]:
                with self._lock:
                    got.append(Received(msg["from"].resource, msg["subject"], msg["body"],
                                        "groupchat", resource))

        async def go() -> None:
            if "xep_0045" not in client.plugin:
                client.register_plugin("xep_0045")
            await client.plugin["xep_0045"].join_muc_wait(
                slixmpp.JID(room), nick, maxstanzas=0, timeout=10)
            await self._configure_room(client, room, config)
            client.add_event_handler("message", on_groupchat)

        self.loops.run(go())
        return got

    def configure_room(
        self, room: str, resource: str = "desk", members: tuple[str, ...] = (),
        **config: object,
    ) -> None:
        """As the room's owner: change its configuration (`membersonly=False`) and make
        `members` members."""
        client = self.clients[resource]

        async def go() -> None:
            if config:
                await self._configure_room(client, room, config)
            for jid in members:
                await client.plugin["xep_0045"].set_affiliation(room, "member", jid=jid,
                                                                timeout=10)

        self.loops.run(go())

    @staticmethod
    async def _configure_room(
        client: slixmpp.ClientXMPP, room: str, config: dict[str, object]
    ) -> None:
        form = client.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden",
                       value="http://jabber.org/protocol/muc#roomconfig")
        for name, value in config.items():
            form.add_field(var=f"muc#roomconfig_{name}", value=value)
        await client.plugin["xep_0045"].set_room_config(room, form, timeout=10)

    def wait_messages(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        """Messages received so far, waiting up to `timeout` for at least `count`."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= count:
                    return list(self.messages)
            time.sleep(0.02)
        with self._lock:
            return list(self.messages)

    def settle(self) -> list[Received]:
        """Everything received once the server has processed all that was sent to us."""
        for client in list(self.clients.values()):
            self.loops.run(self._roundtrip(client))
        with self._lock:
            return list(self.messages)


def befriend(loops: LoopThread, bot_jid: str, bot_password: str, person: Person,
             timeout: float = 10.0) -> None:
    """Make `person` and the bot mutually subscribed, the way a real user would:
    the person asks, a bot session accepts and asks back, the person accepts."""
    import time

    bot = Person(loops, bot_jid, bot_password, person.port, person.ca)
    bot.online(resource="setup", auto_accept=True)
    try:
        resource = next(iter(person.clients))
        person.send_presence(bot_jid, "subscribe", resource=resource)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if person.roster_subscription(bot_jid, resource) == "both":
                return
            time.sleep(0.05)
        raise RuntimeError(f"{person.jid} and {bot_jid} did not become mutual contacts")
    finally:
        bot.offline()
