"""The XMPP session: one login of the bot, roster, subscriptions, presence, confirmed sends.

Knows nothing about click or exit codes; raises `cvsmsg.errors` exceptions. A session can
send several messages, so a spool drainer or a daemon can reuse it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import ssl
import time
from collections.abc import Callable, Collection, Iterable
from typing import Any

from cvsmsg import rostercache, servernotes
from cvsmsg import slixmpp_compat as compat
from cvsmsg.config import Config
from cvsmsg.errors import (
    AuthError,
    ConfigError,
    ConnectError,
    CvsmsgError,
    MessageRefused,
)
from cvsmsg.message import as_body
from cvsmsg.policy import PresenceView, SessionPlan
from cvsmsg.record import Record

compat.apply()  # before slixmpp is imported: the cheap import, fast SCRAM

import slixmpp  # noqa: E402
from slixmpp.exceptions import IqError, IqTimeout  # noqa: E402

log = logging.getLogger(__name__)

_SHOWS = ("away", "chat", "dnd", "xa")
# Stream errors (RFC 6120 §4.9.3) that blame what we sent rather than the connection.
REFUSAL_CONDITIONS = frozenset({
    "policy-violation", "not-well-formed", "bad-format", "invalid-xml", "restricted-xml",
    "unsupported-encoding",
})


class RosterEntry(Record):
    """One contact of the bot, as the server keeps it."""

    jid: str
    subscription: str  # "to", "from", "both", or "none" while our request is pending
    pending_out: bool  # we asked to see their presence and have no answer yet


class Bounce(Record):
    """A message the server (or the recipient's server) returned as an error."""

    recipient: str
    condition: str
    text: str


def _system_trust(ctx: ssl.SSLContext) -> None:
    """Trust the system CAs, loading as little as possible.

    `create_default_context()` parses the whole CA bundle (~45 ms here) for a chain that
    needs one or two of its certificates. A hashed CA directory (Debian's /etc/ssl/certs)
    lets OpenSSL read only the certificates a chain asks for. SSL_CERT_DIR is honoured;
    an SSL_CERT_FILE other than the system bundle (which the hashed directory mirrors)
    must be read whole, as OpenSSL would, and so must a system without a hashed directory.
    """
    paths = ssl.get_default_verify_paths()
    env_file = os.environ.get(paths.openssl_cafile_env)
    custom_file = bool(env_file) and os.path.realpath(str(env_file)) != os.path.realpath(
        paths.openssl_cafile
    )
    capath = os.environ.get(paths.openssl_capath_env) or paths.openssl_capath
    if not custom_file and os.path.isdir(capath):
        with os.scandir(capath) as entries:
            hashed = any(e.name.endswith(".0") for e in entries)
        if hashed:
            ctx.load_verify_locations(capath=capath)
            return
    ctx.load_default_certs()


def make_ssl_context(cfg: Config) -> ssl.SSLContext:
    """System CAs plus the configured extra CA; verification off only on explicit opt-out."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED + hostname check
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cfg.tls_verify:
        _system_trust(ctx)
    if cfg.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(cfg.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load ca_file {cfg.ca_file}: {exc}") from None
    if not cfg.tls_verify:
        log.warning("TLS certificate verification is OFF (tls_verify = false)")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def delay_stamp(ts: float) -> str:
    """An XEP-0082 UTC DateTime to the second (`2026-12-04T10:00:00Z`), as XEP-0203's
    `stamp` wants it; whole seconds, which every client parses."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _ssl_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or str(exc)
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def tls_mode_hint(tls: str, exc: BaseException) -> str:
    """What a bare OpenSSL reason means when it comes from the wrong `tls` mode: a direct
    TLS hello answered in plain XML (a STARTTLS port) reads as a wrong version number."""
    if tls == "direct" and getattr(exc, "reason", None) == "WRONG_VERSION_NUMBER":
        return ' (is the port a STARTTLS port? set tls = "starttls")'
    return ""


def _os_reason(exc: OSError) -> str:
    """`Connection refused` rather than asyncio's `Connect call failed ('127.0.0.1', 5222)`."""
    if exc.errno:
        return os.strerror(exc.errno)
    return exc.strerror or str(exc) or type(exc).__name__


# Closing: how long to wait for the server's closing tag, in round trips to it, and at least.
CLOSE_LINGER_ROUND_TRIPS = 4
CLOSE_LINGER_MIN = 0.02


def _domain(jid: str) -> str:
    """The server a bare JID lives on (a domain JID is its own)."""
    return jid.partition("@")[2] or jid


def _answered(trips: asyncio.Future[bool]) -> bool:
    """True once `XmppSession._round_trips` has had both its answers."""
    return trips.done() and not trips.cancelled() and trips.exception() is None and (
        trips.result())


class XmppSession:
    """One authenticated stream of the bot's account.

    `phase` always says what we are waiting for, so a deadline hit anywhere can be
    reported precisely by the caller.
    """

    def __init__(self, cfg: Config, plan: SessionPlan) -> None:
        self.cfg = cfg
        self.plan = plan
        self.phase = "starting"
        self.bounces: list[Bounce] = []
        self._resources: dict[str, dict[str, str]] = {}
        self._negative: set[tuple[str, str]] = set()  # (bare, resource) with priority < 0
        self._heard: set[str] = set()
        self.asked: set[str] = set()  # asked to share presence during this session
        self._accepted: set[str] = set()  # the server's roster pushes may lag behind us
        self._presence_event = asyncio.Event()
        self._failure: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last_connect_error = ""
        self._stream_error = ""
        self._closing = False
        self.announced = False
        self.opened_at = 0.0  # loop time the login completed (for reconnect back-off)
        self._probed: set[str] = set()  # contacts sent a directed probe in this session
        self._given_up: set[str] = set()  # silent contacts this session took as offline
        self._probe_answered = False  # a probed contact answered before we announced
        self._round_trip: float | None = None  # the shortest ping round trip to our server
        # Called with the bare JID after each presence change we track (serve uses it to
        # deliver queued messages the moment their recipient becomes available).
        self.presence_listener: Callable[[str], None] | None = None
        # XEP-0237: the roster as the last run left it, per Unix user (None: no cache)
        addr = cfg.server_address
        self._roster_server = f"{addr[0]}:{addr[1]}" if addr else ""  # "": DNS SRV
        self.roster_cache = rostercache.cache_file(cfg.jid, self._roster_server, os.environ)
        self._cached_version = ""
        self._roster_rechecked = False  # a cached roster was checked against the server
        self._notes = servernotes.notes_file(cfg.jid, self._roster_server, os.environ)
        self._noted: bool | None = None  # the notes' word on probes, read on first need
        self.client = self._build_client()

    # -- construction -------------------------------------------------------------------

    def _build_client(self) -> slixmpp.ClientXMPP:
        cfg = self.cfg
        # A fresh resource per run: parallel runs must not kick each other off (<conflict/>).
        resource = f"cvsmsg-{os.getpid()}-{secrets.token_hex(3)}"
        try:
            jid = slixmpp.JID(f"{cfg.jid}/{resource}")
        except slixmpp.InvalidJID as exc:
            raise ConfigError(f"invalid jid {cfg.jid!r} in the configuration: {exc}") from None
        if not jid.user or "/" in cfg.jid:
            raise ConfigError(f"invalid jid {cfg.jid!r} in the configuration: use user@domain")
        client = slixmpp.ClientXMPP(jid, cfg.password, ssl_context=make_ssl_context(cfg))
        client.enable_plaintext = False
        client.enable_direct_tls = cfg.tls == "direct"
        client.enable_starttls = cfg.tls == "starttls"
        client.whitespace_keepalive = False
        # We answer subscriptions ourselves: slixmpp does not answer `unsubscribe`, and the
        # subscription policy must be consulted first.
        client.auto_authorize = None
        client.auto_subscribe = False
        # XEP-0198 acks tell us the server has the message. window=0: we ask for the ack
        # ourselves once the queue is written; no resumption, runs are short.
        client.register_plugin("xep_0198", {"window": 0, "allow_resume": False})

        # A failed certificate check during STARTTLS arrives only in connection_lost.
        def connection_lost(exc: BaseException | None) -> None:
            if isinstance(exc, ssl.SSLError):
                self._on_ssl_invalid(exc)
            elif isinstance(exc, OSError):
                self._last_connect_error = _os_reason(exc)

        compat.watch_connection_lost(client, connection_lost)
        compat.write_in_records(client)

        on = client.add_event_handler
        on("connected", lambda _e: self._set_phase("negotiating TLS and authenticating"))
        on("connection_failed", self._on_connection_failed)
        on("reconnect_delay", self._on_reconnect_delay)
        on("ssl_invalid_chain", self._on_ssl_invalid)
        on("failed_all_auth", self._on_failed_auth)
        on("auth_success", lambda _e: self._set_phase("binding the session"))
        on("stream_error", self._on_stream_error)
        on("disconnected", self._on_disconnected)
        on("session_start", self._on_session_start)
        on("presence", self._on_presence)
        on("presence_subscribe", self._on_subscribe)
        on("presence_unsubscribe", self._on_unsubscribe)
        on("message_error", self._on_message_error)
        return client

    # -- event handlers (each one sets a future or records a fact) ----------------------

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        log.debug("phase: %s", phase)

    def _fail(self, error: CvsmsgError) -> None:
        if not self._failure.done():
            self._failure.set_exception(error)

    def _where(self) -> str:
        addr = self.cfg.server_address
        return f"{addr[0]}:{addr[1]}" if addr else f"{self.client.boundjid.domain} (DNS SRV)"

    def _on_connection_failed(self, error: Any) -> None:
        if isinstance(error, ssl.SSLError):
            self._fail(ConnectError(f"TLS failed with {self._where()}: {_ssl_reason(error)}"
                                    f"{tls_mode_hint(self.cfg.tls, error)}"))
            return
        self._last_connect_error = (
            _os_reason(error) if isinstance(error, OSError) else str(error)
        )

    def _on_reconnect_delay(self, _delay: Any) -> None:
        # slixmpp would retry forever; one full pass over the addresses is our answer.
        reason = self._last_connect_error or "no answer"
        self._fail(ConnectError(f"cannot connect to {self._where()}: {reason}"))

    def _on_ssl_invalid(self, error: Any) -> None:
        self._fail(ConnectError(
            f"TLS certificate of {self.client.boundjid.domain} not trusted: "
            f"{_ssl_reason(error)} (set ca_file to trust a private CA)"
        ))

    def _on_failed_auth(self, _event: Any) -> None:
        sock = self.client.socket
        if not isinstance(sock, ssl.SSLSocket | ssl.SSLObject):
            self._fail(ConnectError(
                f"{self._where()} offered no TLS; refusing to send the password in plaintext"
            ))
            return
        self._fail(AuthError(f"authentication failed for {self.cfg.jid}: wrong JID or password"))

    def _on_stream_error(self, error: Any) -> None:
        condition = error["condition"] or "undefined-condition"
        text = error["text"]
        self._stream_error = f"{condition}{': ' + text if text else ''}"
        log.debug("stream error: %s", self._stream_error)
        if condition in REFUSAL_CONDITIONS and self._started.done():
            # Fail now, not at the disconnect: Prosody sends a last XEP-0198 ack just before
            # this error, and that ack counts the stanza it refused as handled.
            self._fail(self._refused(f" ({self._stream_error})"))

    @staticmethod
    def _refused(detail: str) -> MessageRefused:
        return MessageRefused(
            f"the server rejected the message and closed the stream{detail}; "
            "if it was too large, lower max_stanza_bytes"
        )

    def _on_disconnected(self, _reason: Any) -> None:
        if self._closing:
            return
        detail = f" ({self._stream_error or self._last_connect_error})" if (
            self._stream_error or self._last_connect_error
        ) else ""
        condition = self._stream_error.partition(":")[0]
        if condition in REFUSAL_CONDITIONS and self._started.done():
            # Prosody's answer to a stanza over c2s_stanza_size_limit (or to one it cannot
            # parse): the message's fault, not the connection's.
            self._fail(self._refused(detail))
            return
        self._fail(ConnectError(
            f"{self._where()} closed the connection while {self.phase}{detail}"
        ))

    def _on_session_start(self, _event: Any) -> None:
        if not self._started.done():
            self._started.set_result(None)

    def _on_presence(self, pres: Any) -> None:
        ptype = pres["type"]
        sender = pres["from"]
        bare = sender.bare
        if bare == self.client.boundjid.bare:
            return
        if ptype in ("available", *_SHOWS):
            show = pres["show"] if pres["show"] in _SHOWS else ""
            self._resources.setdefault(bare, {})[sender.resource] = show
            key = (bare, sender.resource)
            if int(pres["priority"] or 0) < 0:
                self._negative.add(key)
            else:
                self._negative.discard(key)
        elif ptype == "unavailable":
            if sender.resource:
                self._resources.get(bare, {}).pop(sender.resource, None)
            else:
                self._resources.pop(bare, None)
                if not self.can_see(bare):
                    # Prosody answers our fresh `subscribe` with an unavailable from the
                    # bare JID; without a subscription it says nothing about them yet.
                    return
        elif ptype == "error":
            self._resources.pop(bare, None)
        else:
            return  # subscription management, handled elsewhere
        self._heard.add(bare)
        if bare in self._probed and not self.announced:
            self._probe_answered = True
        self._presence_event.set()
        if self.presence_listener is not None:
            self.presence_listener(bare)

    def _on_subscribe(self, pres: Any) -> None:
        who = pres["from"].bare
        contacts = {entry.jid for entry in self.roster()} | self._accepted
        # Someone we asked to share presence is a recipient of ours, whatever the path.
        verdict = self.plan.policy.verdict(who, contacts, asked=who in self.asked)
        if not verdict.accept:
            level = logging.WARNING if verdict.roster_full else logging.INFO
            log.log(level, "not accepting %s: %s", who, verdict.reason)
            self.client.send_presence(pto=who, ptype="unsubscribed")
            log.info("refused presence subscription from %s", who)
            return
        self._accepted.add(who)
        # Accept and ask back, so the relation becomes mutual (RFC 6121 §3.1).
        self.client.send_presence(pto=who, ptype="subscribed")
        self.client.send_presence(pto=who, ptype="subscribe")
        self.asked.add(who)
        log.info("accepted presence subscription from %s and asked back", who)

    def _on_unsubscribe(self, pres: Any) -> None:
        who = pres["from"].bare
        self.client.send_presence(pto=who, ptype="unsubscribed")
        self.client.send_presence(pto=who, ptype="unsubscribe")
        log.info("%s unsubscribed; cancelled our subscription too", who)

    def _on_message_error(self, msg: Any) -> None:
        bounce = Bounce(msg["from"].bare, msg["error"]["condition"], msg["error"]["text"] or "")
        log.debug("message bounced: %s", bounce)
        self.bounces.append(bounce)

    # -- waiting helpers -----------------------------------------------------------------

    async def _race(self, awaitable: Any) -> Any:
        """Await `awaitable`, but raise the session's failure as soon as one is recorded."""
        task = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait({task, self._failure}, return_when=asyncio.FIRST_COMPLETED)
        if self._failure in done and task not in done:
            task.cancel()
        if self._failure.done():
            self._failure.result()  # raises
        return task.result()

    async def _ping_server(self) -> None:
        """A round trip: RFC 6120 §10.1 in-order processing means all we sent before is done."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await compat.ping(self.client, self.client.boundjid.domain, self.plan.step_timeout)
        took = loop.time() - start
        self._round_trip = took if self._round_trip is None else min(self._round_trip, took)

    # -- public API ----------------------------------------------------------------------

    async def open(self, recipients: Collection[str] = ()) -> None:
        """Connect, authenticate, fetch the roster and learn the recipients' presence.

        A session whose plan says so announces itself (initial presence): the server then
        hands over subscription requests stored while we were offline and probes every
        contact for us. Otherwise it stays invisible and sends the recipients directed
        presence probes, so a run does not flash the bot online and offline to its roster.
        """
        addr = self.cfg.server_address
        self._set_phase(f"connecting to {self._where()}")
        if addr:
            self.client.connect(addr[0], addr[1])
        else:
            self.client.connect()
        await self._race(self._started)
        self._load_roster_cache()
        self._set_phase("requesting the roster and presence")
        step = self.plan.step_timeout
        try:
            if self.plan.announce:
                # Pipelined: the server answers in order, so when the ping comes back the
                # roster is ours and (for local contacts) their presence and any
                # subscription requests stored while we were offline have been delivered.
                roster = self.client.get_roster(timeout=step)
                self.announce()
                await self._race(asyncio.gather(roster, self._ping_server()))
                return
            # Probes need the roster first: a probe to someone who has not authorised us
            # is answered `unsubscribed`, which cancels our pending request (RFC 6121 §4.3).
            await self._race(self.client.get_roster(timeout=step))
            await self.probe(recipients)
        except IqTimeout:
            raise ConnectError(f"{self._where()} did not answer the roster request") from None
        except IqError as exc:
            raise ConnectError(f"the server refused the roster request: {exc}") from None

    def _load_roster_cache(self) -> None:
        """Start from the cached roster, so the server can answer "unchanged" (XEP-0237)."""
        compat.drop_missing_on_full_roster(self.client)
        if self.roster_cache is None or not compat.versioned_roster(self.client):
            return
        cached = rostercache.load(self.roster_cache, self.cfg.jid, self._roster_server)
        if cached is not None:
            self._cached_version = cached[0]
            compat.preload_roster(self.client, *cached)

    async def _recheck_cached_roster(self, jids: list[str]) -> None:
        """Fetch the whole roster once before taking a recipient as not visible on the word
        of a cached roster the server called unchanged: XEP-0237 versions are opaque, and
        Prosody's are counters that start again for a recreated account (or a server whose
        data was reset), so an old cache can match a new version. Costs one round trip,
        only when a recipient looks invisible, which is rare and slow anyway."""
        version = compat.roster_version(self.client)
        if (self._roster_rechecked or not self._cached_version
                or version != self._cached_version or all(self.can_see(j) for j in jids)):
            return
        self._roster_rechecked = True
        compat.forget_roster_version(self.client)
        await self._race(self.client.get_roster(timeout=self.plan.step_timeout))
        self._cached_version = ""  # whatever came back is written again at close

    def _save_roster_cache(self) -> None:
        """Keep the roster for the next run when the server gave it a new version."""
        version = compat.roster_version(self.client)
        if self.roster_cache is None or not version or version == self._cached_version:
            return
        items = {jid: item for jid, item in compat.roster_items(self.client).items()
                 if item[0] or item[1] or item[2]}
        rostercache.save(self.roster_cache, self.cfg.jid, self._roster_server, version, items)
        self._cached_version = version

    async def probe(self, jids: Iterable[str]) -> None:
        """Learn the presence of visible contacts not probed yet, without announcing.

        Does nothing once announced (the server probed everyone for us). One round trip.
        A local contact's silence then means offline only on a server known to answer
        client probes (RFC 6121 §4.3.2 lets it stay silent about an offline contact, and
        only says it SHOULD process client probes at all): on one not known to, fall back
        to the initial presence every server MUST answer with probes of its own (§4.2.2).
        Remote contacts answer over s2s, after the round trip: see `_wait_presence`.
        """
        if self.announced:
            await self._race(self._ping_server())
            return
        fresh = [j for j in jids if self.can_see(j) and j not in self._probed]
        for jid in fresh:
            self._probed.add(jid)
            self.client.send_presence(pto=jid, ptype="probe")
        await self._race(self._ping_server())
        if any(j not in self._heard and self._is_local(j) for j in fresh) and (
            not self._answers_probes()
        ):
            log.info("presence probes unanswered: announcing instead")
            self.announce()
            await self._race(self._ping_server())

    def _is_local(self, jid: str) -> bool:
        return _domain(jid) == self.client.boundjid.domain

    def _answers_probes(self) -> bool:
        """True when this server is known to answer our probes (this run, or an earlier one)."""
        return self._probe_answered or self._notes_say_answers()

    def _notes_say_answers(self) -> bool:
        if self._noted is None:  # read once, and only when needed
            self._noted = self._notes is not None and servernotes.answers_probes(
                self._notes, self.cfg.jid, self._roster_server)
        return self._noted

    def _save_notes(self) -> None:
        if self._probe_answered and self._notes is not None and not self._notes_say_answers():
            servernotes.note_answers_probes(self._notes, self.cfg.jid, self._roster_server)
            self._noted = True

    def announce(self) -> None:
        """Send initial presence: contacts see the bot online, stored requests arrive."""
        if not self.announced:
            self.announced = True
            self.client.send_presence()

    def can_see(self, jid: str) -> bool:
        """True when our roster subscription lets us receive their presence."""
        roster = self.client.client_roster
        return roster.has_jid(jid) and roster[jid]["subscription"] in ("to", "both")

    def ask_presence(self, jid: str) -> bool:
        """Ask `jid` to share presence unless a request is already pending; True if asked."""
        roster = self.client.client_roster
        if jid in self.asked or (roster.has_jid(jid) and roster[jid]["pending_out"]):
            return False
        self.client.send_presence(pto=jid, ptype="subscribe")
        self.asked.add(jid)
        return True

    async def presence_of(self, jids: Iterable[str]) -> dict[str, PresenceView]:
        """Presence views for `jids`, waiting a bounded grace for any not heard from yet.

        Prosody delivers local contacts' presence (or an `unavailable` for offline ones)
        before answering the round trip in `open`; ejabberd answers for available contacts
        only, and may route the answer after the round trip, and a remote contact's answer
        comes over s2s (RFC 6121 §4.3.2 allows all that): a visible contact still silent
        is decided by round trips to their server (`_wait_presence`). Only a server slow to
        answer, or someone we asked to share presence in this session (a client that
        approves at once makes the very first notification deliverable), makes us wait,
        at most `presence_grace` seconds. Each contact is waited for once per session.
        """
        jids = list(jids)
        await self._recheck_cached_roster(jids)
        # Ask anyone whose presence we cannot see before waiting: if their client approves
        # at once, this very notification can still be gated and delivered.
        for jid in jids:
            if not self.can_see(jid):
                self.ask_presence(jid)
        if not self.announced and any(
            self.can_see(j) and j not in self._probed and j not in self._heard for j in jids
        ):
            await self.probe(jids)  # e.g. queued messages' recipients, in probe mode
        pending = {
            j for j in jids if (self.can_see(j) or j in self.asked)
            and j not in self._heard and j not in self._given_up
        }
        if pending:
            self._set_phase(f"waiting for the presence of {', '.join(sorted(pending))}")
            answered = await self._wait_presence(pending)
            if answered:
                log.info("no presence from %s: offline (their server answered a later "
                         "request first)", ", ".join(sorted(answered)))
            late = pending - self._heard - answered
            if late:
                log.info("no presence from %s within %g s: treated as offline",
                         ", ".join(sorted(late)), self.cfg.presence_grace)
            # in this session, waited for once: a later batch decides at once (a presence
            # that comes later still counts)
            self._given_up |= pending - self._heard
        return {j: self._view(j) for j in jids}

    async def _wait_presence(self, pending: set[str]) -> set[str]:
        """Wait for `pending` contacts' presence, at most `presence_grace` seconds; return
        the visible ones whose own server (ours, for a local contact) answered two round
        trips since their probe went out without it. RFC 6120 §10.1: their server handles
        our probe before our ping (in order, over our stream and the one s2s stream); one
        more round trip gives an answer it routes asynchronously (ejabberd) time to land.
        Silent after that: offline, with no need to wait out the grace. A contact asked to
        share presence needs a person: the grace."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cfg.presence_grace
        # asked by our probe, or by the server's own probes once we announced (a server
        # not known to answer probes made `probe` announce)
        visible = {j for j in pending
                   if self.can_see(j) and (self.announced or j in self._probed)}
        trips = {d: asyncio.ensure_future(self._round_trips(d, deadline))
                 for d in {_domain(j) for j in visible}}
        answered: set[str] = set()
        try:
            while True:
                answered |= {j for j in visible - self._heard if _answered(trips[_domain(j)])}
                if not pending - self._heard - answered or loop.time() >= deadline:
                    return answered - self._heard
                self._presence_event.clear()
                heard = asyncio.ensure_future(self._presence_event.wait())
                waits = {heard, *(t for t in trips.values() if not t.done())}
                try:
                    await self._race(asyncio.wait(waits, timeout=deadline - loop.time(),
                                                  return_when=asyncio.FIRST_COMPLETED))
                finally:
                    heard.cancel()
        finally:
            for trip in trips.values():
                if trip.done() and not trip.cancelled():
                    trip.exception()  # a failed round trip only ended the wait early
                trip.cancel()

    async def _round_trips(self, domain: str, deadline: float) -> bool:
        """Two XEP-0199 round trips to `domain` (an error reply is one too) by `deadline`?"""
        loop = asyncio.get_running_loop()
        for _ in range(2):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await compat.ping(self.client, domain, left)
            except IqTimeout:
                return False
        return True

    def view(self, jid: str) -> PresenceView:
        """What we know of `jid`'s presence right now, without waiting."""
        return self._view(jid)

    async def watch(self, awaitable: Any) -> Any:
        """Await `awaitable`, raising the session's error if the session fails first."""
        return await self._race(awaitable)

    async def ping(self) -> None:
        """One round trip to the server (a keepalive that notices a dead connection)."""
        await self._race(self._ping_server())

    def _view(self, jid: str) -> PresenceView:
        resources = dict(self._resources.get(jid, {}))
        negative = frozenset(r for r in resources if (jid, r) in self._negative)
        return PresenceView(resources, visible=self.can_see(jid), negative_priority=negative)

    def send(
        self, jid: str, subject: str, body: str, mtype: str, delay: float | None = None
    ) -> None:
        """Queue one message to a bare JID; `confirm` tells when the server has it.
        `delay`: when the notification was made, for a late one (XEP-0203 <delay>, from
        the bot's bare JID: we are the entity that held it back)."""
        msg = self.client.make_message(
            mto=jid, mbody=as_body(body), msubject=subject, mtype=mtype  # type: ignore[arg-type]
        )
        msg["id"] = secrets.token_hex(8)
        if delay is not None:
            if self.client.plugin.get("xep_0203", None) is None:
                self.client.register_plugin("xep_0203")
            msg["delay"]["stamp"] = delay_stamp(delay)
            msg["delay"]["from"] = self.client.boundjid.bare
        msg.send()

    async def confirm(self) -> None:
        """Return once the server has processed everything we sent (XEP-0198 ack or round trip)."""
        self._set_phase("waiting for the server to confirm")
        client = self.client
        await self._race(compat.send_queue_written(client))
        if not await compat.wait_acked(client, self._race):
            await self._race(self._ping_server())
        await asyncio.sleep(0)  # an error that came with the answer (see _on_stream_error)
        if self._failure.done():
            self._failure.result()  # raises

    @property
    def max_stanza_bytes(self) -> int:
        """Our configured limit, lowered to the server's XEP-0478 advertisement if smaller."""
        advertised = compat.server_max_bytes(self.client)
        if advertised:
            return min(self.cfg.max_stanza_bytes, int(advertised))
        return self.cfg.max_stanza_bytes

    async def close(self, wait: float = 2.0) -> None:
        """Close the stream; end the connection when the server has closed its own, or after
        a few of its round trips, at most `wait`.

        RFC 6120 §4.4 asks the closing side to wait for the other's closing tag for "a
        reasonable amount of time", so that it can finish sending. Nothing we need comes
        then: what we sent is confirmed by now (XEP-0198 or a round trip) or queued. So a
        few round trips are enough: Prosody answers in about one; ejabberd always lingers
        ~100 ms, which was nearly half of a direct run there."""
        if self._round_trip is not None:
            wait = min(wait, max(CLOSE_LINGER_MIN, CLOSE_LINGER_ROUND_TRIPS * self._round_trip))
        client = self.client
        self._closing = True
        client.cancel_connection_attempt()
        if self._started.done():
            self._save_roster_cache()
            self._save_notes()
        if client.transport is None:
            return
        self._set_phase("closing the stream")
        try:
            await asyncio.wait_for(client.disconnect(wait=wait), wait + 0.5)
        except (TimeoutError, asyncio.CancelledError):
            client.abort()

    def abort(self) -> None:
        """Drop the connection now (deadline hit or error): never leave a socket behind."""
        self._closing = True
        self.client.cancel_connection_attempt()
        self.client.abort()

    # -- introspection (subscription policy, `cvsmsg check`) -------------------------------

    def roster(self) -> list[RosterEntry]:
        """The bot's contacts, by JID. Our own JID and slixmpp's local placeholders (made
        for anyone who sent us presence, with no subscription either way) are left out."""
        roster = self.client.client_roster
        own = self.client.boundjid.bare
        entries = []
        for jid in list(roster):
            item = roster[jid]
            subscription, pending = str(item["subscription"]), bool(item["pending_out"])
            if jid == own or (subscription not in ("to", "from", "both") and not pending):
                continue
            entries.append(RosterEntry(str(jid), subscription, pending))
        return sorted(entries, key=lambda e: e.jid)

    def on_progress(self, callback: Callable[[str], None]) -> None:
        """Call `callback(step)` as the stream gets there: "tls", "authenticated",
        "session", "roster" (for timings; failures still raise from `open`)."""
        on = self.client.add_event_handler
        on("tls_success", lambda _e: callback("tls"))
        on("auth_success", lambda _e: callback("authenticated"))
        on("session_start", lambda _e: callback("session"))
        on("roster_update", lambda _e: callback("roster"))

    @property
    def tls_version(self) -> str | None:
        """The TLS version (e.g. TLSv1.3) once the stream is encrypted; None before."""
        sock = self.client.socket
        if isinstance(sock, ssl.SSLSocket | ssl.SSLObject):
            return sock.version()
        return None
