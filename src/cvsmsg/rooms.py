"""Group-chat rooms (XEP-0045): join with a nick and no history, send groupchat messages,
wait for the room's echo, leave.

A room is not presence-gated (people chose to read it there). Joining is presence
directed at the room only (`to='room@service/nick'`): the server does not broadcast it
to the bot's roster, so contacts never see the bot come and go. The room reflects each
groupchat message to its sender (XEP-0045 §7.4): that echo is the confirmation that the
room has it and passed it on to the occupants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from slixmpp.xmlstream import ET

from cvsmsg.config import Config
from cvsmsg.errors import DeadlineError, RoomError

if TYPE_CHECKING:
    from cvsmsg.message import Part
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

MUC_NS = "http://jabber.org/protocol/muc"
MUC_USER_NS = "http://jabber.org/protocol/muc#user"
SELF_PRESENCE = "110"  # status code: this presence is about you
ROOM_CREATED = "201"  # status code: you just created the room (it did not exist)
NICK_TRIES = 5  # nick, nick-2, … nick-5 when someone else holds the nick
LEAVE_WAIT = 2.0  # the room's answer to our leaving is a courtesy: never wait longer

# What each refusal of a join means (XEP-0045 §7.2), as an admin would say it.
JOIN_REFUSALS = {
    "registration-required": "members-only",
    "forbidden": "banned",
    "item-not-found": "no such room",
    "not-authorized": "password required",
    "service-unavailable": "room is full",
    "not-allowed": "no such room, and the bot may not create it",
    "conflict": "nick in use",
    "jid-malformed": "no nick",
    "remote-server-not-found": "no such service",
}


def room_nick(cfg: Config) -> str:
    """The bot's nick in rooms: `room_nick`, else the localpart of its JID."""
    return cfg.room_nick or cfg.jid.partition("@")[0]


def refusal(room: str, condition: str, text: str = "") -> RoomError:
    """The one line for a room the bot cannot join: `cannot join room R: members-only
    (registration-required)`."""
    meaning = JOIN_REFUSALS.get(condition, "refused")
    detail = f": {text}" if text else ""
    return RoomError(f"cannot join room {room}: {meaning} ({condition}{detail})")


def _status_codes(stanza: Any) -> set[str]:
    return {
        str(s.get("code"))
        for s in stanza.xml.findall(f"{{{MUC_USER_NS}}}x/{{{MUC_USER_NS}}}status")
    }


class Room:
    """One visit of the bot to one room, within a session (see `joined`): join, send,
    leave, close. Every wait is bounded by `timeout` (and by the run's deadline)."""

    def __init__(self, session: XmppSession, room: str, nick: str, timeout: float) -> None:
        self.session = session
        self.room = room
        self.base_nick = nick
        self.nick = nick
        self.timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._joined: asyncio.Future[set[str]] | None = None
        self._left: asyncio.Future[None] | None = None
        self._echoes: dict[str, asyncio.Future[None]] = {}
        self._inside = False

    # -- stanzas from the room ------------------------------------------------------------

    def _on_presence(self, pres: Any) -> None:
        sender = pres["from"]
        if sender.bare != self.room:
            return
        if pres["type"] == "error":
            if self._joined is not None and not self._joined.done():
                error = pres["error"]
                self._joined.set_exception(
                    refusal(self.room, error["condition"] or "undefined-condition",
                            error["text"] or ""))
            return
        codes = _status_codes(pres)
        if SELF_PRESENCE not in codes and sender.resource != self.nick:
            return  # another occupant
        if pres["type"] == "unavailable":
            if self._left is not None and not self._left.done():
                self._left.set_result(None)
        elif self._joined is not None and not self._joined.done():
            self.nick = sender.resource or self.nick  # the room may have changed it (210)
            self._joined.set_result(codes)

    def _on_message(self, msg: Any) -> None:
        if msg["from"].bare != self.room or msg["type"] != "groupchat":
            return
        waiter = self._echoes.get(msg["id"])
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_message_error(self, msg: Any) -> None:
        if msg["from"].bare != self.room:
            return
        waiter = self._echoes.get(msg["id"])
        if waiter is not None and not waiter.done():
            error = msg["error"]
            detail = f": {error['text']}" if error["text"] else ""
            waiter.set_exception(RoomError(
                f"room {self.room} refused the message ({error['condition']}{detail})"))

    # -- the visit ------------------------------------------------------------------------

    async def _wait(self, future: asyncio.Future[Any], what: str) -> Any:
        self.session.phase = f"{what} room {self.room}"
        try:
            async with asyncio.timeout(self.timeout):
                return await self.session.watch(future)
        except TimeoutError:
            raise DeadlineError(
                f"timed out after {self.timeout:g} s while {what} room {self.room}") from None

    def _handlers(self, add: bool) -> None:
        client = self.session.client
        change = client.add_event_handler if add else client.del_event_handler
        change("presence", self._on_presence)
        change("message", self._on_message)
        change("message_error", self._on_message_error)

    async def join(self) -> None:
        """Enter the room (directed presence, no history). RoomError when the room refuses
        us, or when it did not exist (we would have created it: left again at once)."""
        self._handlers(True)
        for attempt in range(1, NICK_TRIES + 1):
            self.nick = self.base_nick if attempt == 1 else f"{self.base_nick}-{attempt}"
            self._joined = self._loop.create_future()
            pres = self.session.client.make_presence(pto=f"{self.room}/{self.nick}")
            muc = ET.SubElement(pres.xml, f"{{{MUC_NS}}}x")
            ET.SubElement(muc, f"{{{MUC_NS}}}history", {"maxstanzas": "0"})
            pres.send()
            try:
                codes = await self._wait(self._joined, "joining")
            except RoomError as exc:
                if "(conflict" in str(exc) and attempt < NICK_TRIES:
                    log.info("nick %s is taken in %s: trying another", self.nick, self.room)
                    continue
                raise
            self._inside = True
            if ROOM_CREATED in codes:
                await self.leave()  # an unconfigured new room: it goes away with us
                raise refusal(self.room, "item-not-found", "the bot would have created it")
            log.info("joined room %s as %s", self.room, self.nick)
            return

    async def send(self, part: Part, mtype: str = "groupchat") -> None:
        """One groupchat message; returns once the room has reflected it to us. A subject
        would change the room's topic: it becomes the first line of the body instead."""
        body = f"{part.subject}\n{part.body}" if part.subject else part.body
        msg = self.session.client.make_message(mto=self.room, mbody=body, mtype=mtype)  # type: ignore[arg-type]
        msg["id"] = secrets.token_hex(8)
        echo: asyncio.Future[None] = self._loop.create_future()
        self._echoes[msg["id"]] = echo
        msg.send()
        try:
            await self._wait(echo, "sending to")
        finally:
            self._echoes.pop(msg["id"], None)

    async def leave(self) -> None:
        """Unavailable presence to the room; waits briefly for the room to say we left."""
        if not self._inside:
            return
        self._inside = False
        self._left = self._loop.create_future()
        self.session.client.send_presence(pto=f"{self.room}/{self.nick}", ptype="unavailable")
        try:
            async with asyncio.timeout(min(LEAVE_WAIT, self.timeout)):
                await self.session.watch(self._left)
        except TimeoutError:
            log.info("room %s did not confirm that we left", self.room)

    def close(self) -> None:
        """Stop listening to the room (after leaving, or after a failure)."""
        self._handlers(False)


@contextlib.asynccontextmanager
async def joined(
    session: XmppSession, cfg: Config, room: str, timeout: float
) -> AsyncIterator[Room]:
    """The bot in `room` with its nick (`room_nick`); it leaves when the block ends
    normally. Every wait is bounded by `timeout`."""
    visit = Room(session, room, room_nick(cfg), timeout)
    try:
        await visit.join()
        yield visit
        await visit.leave()
    finally:
        visit.close()


async def post(
    session: XmppSession, cfg: Config, room: str, parts: Iterable[Part], timeout: float
) -> None:
    """Join `room`, send each part (each reflected by the room), leave."""
    async with joined(session, cfg, room, timeout) as visit:
        for part in parts:
            await visit.send(part)
