"""Delivering what the spool holds, over one open XmppSession.

`Drainer` is the engine shared by the background deliverer, `cvsmsg flush`, `cvsmsg serve`
and a direct `notify` run (which delivers queued messages for recipients who are back).
It decides with the same pure policy as `notify`, coalesces bursts into digests, and
removes a message only after the server confirmed it: one digest in flight at a time, so
a process killed mid-drain leaves at most that digest to be sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cvsmsg.config import Config
from cvsmsg.digest import Batch, batches, render
from cvsmsg.drops import ingest, pending_drops
from cvsmsg.errors import AuthError, ConnectError, CvsmsgError, DeadlineError
from cvsmsg.message import STANZA_OVERHEAD, split_message, wire_size
from cvsmsg.policy import decide
from cvsmsg.slixmpp_compat import cancel_send_filters
from cvsmsg.spool import DELIVER_LOCK, Entry, Spool, claimed

if TYPE_CHECKING:
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

# A burst that keeps going is still sent after this long (a digest per minute at most).
COALESCE_MAX_WAIT = 60.0
# The background deliverer stays this long after its last work, for more hand-offs.
LINGER_SECONDS = 2.0
# How often a waiting drainer looks at the spool even without a wake-up.
POLL_SECONDS = 0.5
# The background deliverer retries connecting this long before it leaves the messages
# for the next run (each run is cheap to start again; a stuck one is not).
RETRY_SECONDS = 30.0


@dataclass
class DrainStats:
    """What one pass did, per recipient."""

    delivered: dict[str, int] = field(default_factory=dict)  # notifications delivered
    withheld: dict[str, str] = field(default_factory=dict)  # reason, still queued
    dropped: int = 0
    next_ready: float | None = None  # when a burst still being coalesced will be ready

    def add(self, other: DrainStats) -> None:
        for jid, n in other.delivered.items():
            self.delivered[jid] = self.delivered.get(jid, 0) + n
            self.withheld.pop(jid, None)
        self.withheld.update(other.withheld)
        self.dropped += other.dropped
        self.next_ready = other.next_ready


class Drainer:
    """Delivers ready batches of the spool through `session`.

    `count_attempts`: a withheld message gets attempts+1 and the reason, once per session
    (a direct notify run does not touch withheld messages: rewriting a big queue on every
    CVS operation would make CVS wait).
    """

    def __init__(
        self, cfg: Config, spool: Spool, session: XmppSession | None = None, *,
        count_attempts: bool = True, clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.spool = spool
        self.session = session
        self.count_attempts = count_attempts
        self.clock = clock
        self.pending: dict[str, Entry] = {}
        self.seen: set[str] = set()
        self._counted: set[str] = set()  # attempts counted in this session
        self._looked: set[str] = set()  # recipients whose presence we waited for
        self.stopping: Callable[[], bool] = lambda: False  # checked between batches

    def new_session(self, session: XmppSession) -> None:
        """After a reconnect: presence and attempt counting start afresh."""
        self.session = session
        self._counted.clear()
        self._looked.clear()

    # -- reading the spool ----------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Pick up messages added since the last look (cvsmsg-drop's drops first turned into
        messages), forget removed ones; the new ids."""
        ingest(self.cfg, self.spool)
        ids = self.spool.ids()
        current = set(ids)
        for gone in set(self.pending) - current:
            del self.pending[gone]
        # An id never comes back once its file is gone: forget it (serve runs for months).
        self.seen &= current
        self._counted &= current
        new = [i for i in ids if i not in self.seen]
        for entry_id in new:
            self.seen.add(entry_id)
            entry = self.spool.read(entry_id)
            if entry is not None:
                self.pending[entry_id] = entry
        return new

    def unseen(self) -> bool:
        """True when the spool holds a message this drainer has never looked at."""
        return (any(i not in self.seen for i in self.spool.ids())
                or bool(pending_drops(self.spool)))

    def expire(self, stats: DrainStats) -> None:
        """Drop messages older than queue_max_age, each with a log line."""
        limit = self.clock() - self.cfg.queue_max_age
        old = [e.id for e in self.pending.values() if e.created < limit]
        if not old:
            return
        with claimed(self.spool, old) as claims:
            for claim in claims:
                entry = claim.entry
                claim.remove()
                self.pending.pop(entry.id, None)
                stats.dropped += 1
                log.warning(
                    "dropped queued message %s for %s: older than queue_max_age (%s)%s",
                    entry.id, entry.recipient, _duration(self.cfg.queue_max_age),
                    f"; last reason: {entry.reason}" if entry.reason else "",
                )
        self.spool.sync()

    # -- one pass -------------------------------------------------------------------------

    async def step(
        self, *, force: bool = False, deliverable_only: bool = False,
        stats: DrainStats | None = None,
    ) -> DrainStats:
        """Deliver every ready batch whose recipient is available; withhold (count, or drop
        under `withheld = "drop"`) the others. `force` ignores the coalescing window.
        `stats` (updated as we go) keeps the progress if the caller's deadline hits."""
        assert self.session is not None
        stats = DrainStats() if stats is None else stats
        self.expire(stats)
        now = self.clock()
        todo = batches(self.pending.values(), self.cfg.coalesce_seconds, COALESCE_MAX_WAIT)
        ready = [b for b in todo if force or b.ready_at <= now]
        waiting = [b.ready_at for b in todo if not (force or b.ready_at <= now)]
        stats.next_ready = min(waiting) if waiting else None
        unknown = sorted({b.recipient for b in ready} - self._looked)
        if unknown:
            await self.session.presence_of(unknown)  # bounded by presence_grace
            self._looked.update(unknown)
        for batch in ready:
            if self.stopping():
                break
            decision = decide(self.session.view(batch.recipient), self.cfg.withhold_show)
            if decision.deliver:
                await self._send(batch, stats)
            elif not deliverable_only:
                self._withhold(batch, decision.reason, stats)
        return stats

    async def _send(self, batch: Batch, stats: DrainStats) -> None:
        assert self.session is not None
        session = self.session
        with claimed(self.spool, list(batch.ids)) as claims:
            if not claims:
                return  # another run has them
            mine = {c.entry.id: c for c in claims}
            fresh = Batch(batch.recipient, batch.subject, batch.type,
                          tuple(c.entry for c in claims), batch.ready_at)
            limit = session.max_stanza_bytes
            budget = limit - STANZA_OVERHEAD - wire_size(batch.subject) - 64
            for digest in render(fresh, budget):
                parts = split_message(digest.subject, digest.body, limit, self.cfg.max_parts)
                bounced_before = len(session.bounces)
                session.phase = f"sending queued messages to {batch.recipient}"
                for part in parts:
                    session.send(batch.recipient, part.subject, part.body, batch.type)
                try:
                    async with asyncio.timeout(self.cfg.timeout):
                        await session.confirm()
                except TimeoutError:
                    raise DeadlineError(
                        f"timed out after {self.cfg.timeout:g} s waiting for the server to "
                        "confirm"
                    ) from None
                bounce = next((b for b in session.bounces[bounced_before:]
                               if b.recipient == batch.recipient), None)
                if bounce is not None:
                    log.error(
                        "message to %s rejected by the server (%s%s): %d queued "
                        "notification(s) dropped", batch.recipient, bounce.condition,
                        f": {bounce.text}" if bounce.text else "", len(digest.ids),
                    )
                    stats.dropped += len(digest.ids)
                else:
                    stats.delivered[batch.recipient] = (
                        stats.delivered.get(batch.recipient, 0) + len(digest.ids)
                    )
                    log.info("delivered %d notification(s) to %s", len(digest.ids),
                             batch.recipient)
                for entry_id in digest.ids:
                    mine[entry_id].remove()
                    self.pending.pop(entry_id, None)
                self.spool.sync()

    def _withhold(self, batch: Batch, reason: str, stats: DrainStats) -> None:
        stats.withheld[batch.recipient] = reason
        ids = [i for i in batch.ids if i not in self._counted]
        if not ids:
            return
        drop = self.cfg.withheld == "drop"
        if not drop and not self.count_attempts:
            return
        now = self.clock()
        with claimed(self.spool, ids) as claims:
            for claim in claims:
                self._counted.add(claim.entry.id)
                if drop:
                    claim.remove()
                    self.pending.pop(claim.entry.id, None)
                    stats.dropped += 1
                    log.info("withheld from %s: %s; dropped (withheld = \"drop\")",
                             batch.recipient, reason)
                else:
                    self.pending[claim.entry.id] = claim.update(
                        attempts=claim.entry.attempts + 1, reason=reason, last_attempt=now
                    )
        if drop:
            self.spool.sync()

    def mark_failed(self, reason: str) -> int:
        """After a connection error: attempts+1 and the reason on every message we hold
        (once per session); they stay queued. Returns how many are queued."""
        now = self.clock()
        ids = [i for i in self.pending if i not in self._counted]
        with claimed(self.spool, ids) as claims:
            for claim in claims:
                self._counted.add(claim.entry.id)
                self.pending[claim.entry.id] = claim.update(
                    attempts=claim.entry.attempts + 1, reason=reason, last_attempt=now
                )
        return len(self.pending)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


async def open_session(cfg: Config) -> XmppSession:
    """A logged-in session within cfg.timeout, or the error that prevented it."""
    from cvsmsg.xmpp import XmppSession

    session = XmppSession(cfg)
    try:
        async with asyncio.timeout(cfg.timeout):
            await session.open()
    except TimeoutError:
        await end_session(session, clean=False)
        raise DeadlineError(f"timed out after {cfg.timeout:g} s while {session.phase}") from None
    except BaseException:
        await end_session(session, clean=False)
        raise
    session.phase = "connected"
    return session


async def end_session(session: XmppSession, *, clean: bool) -> None:
    """Close (or abort) the stream and stop slixmpp's send-filter task, so a long-lived
    process that reconnects does not leave one pending task per connection behind (they
    end up in the log as "Task was destroyed but it is pending")."""
    if clean:
        await session.close()
    else:
        session.abort()
    await cancel_send_filters(session.client)


class Waker:
    """The spool's wake FIFO as an asyncio event: set when a hand-off writes to it."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.event = asyncio.Event()
        self._reader, self._keeper = spool.open_wake_fifo()
        asyncio.get_running_loop().add_reader(self._reader, self._on_readable)

    def _on_readable(self) -> None:
        Spool.drain_wake_fifo(self._reader)
        self.event.set()

    async def wait(self, session: XmppSession | None, timeout: float) -> None:
        """Until woken, `timeout` passes, or (raising its error) the session fails."""
        woken = asyncio.ensure_future(self.event.wait())
        try:
            if session is None:
                await asyncio.wait({woken}, timeout=max(timeout, 0))
            else:
                await asyncio.wait_for(session.watch(woken), max(timeout, 0))
        except TimeoutError:
            pass
        finally:
            woken.cancel()  # never leave a waiter behind: serve waits millions of times
        self.event.clear()

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._reader)
        for fd in (self._reader, self._keeper):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the background deliverer ---------------------------------------------------------------


async def deliver_background(cfg: Config, spool: Spool, drainer: Drainer) -> None:
    """Drain the spool in one session, coalescing bursts, lingering for more hand-offs;
    return when there is nothing left to do. Connection errors are retried with back-off
    for RETRY_SECONDS; then the messages stay queued with the error as their reason."""
    waker = Waker(spool)
    loop = asyncio.get_running_loop()
    try:
        backoff = 0.5
        give_up_at = loop.time() + RETRY_SECONDS
        while True:
            drainer.refresh()
            if not drainer.pending:
                return
            try:
                session = await open_session(cfg)
            except (ConnectError, DeadlineError) as exc:
                if loop.time() + backoff > give_up_at:
                    queued = drainer.mark_failed(str(exc))
                    log.error("error: %s; %d message(s) stay queued", exc, queued)
                    return
                log.warning("%s; retrying in %g s", exc, backoff)
                await waker.wait(None, backoff)
                backoff = min(backoff * 2, 8.0)
                continue
            except AuthError as exc:  # retrying will not fix a password
                queued = drainer.mark_failed(str(exc))
                log.error("error: %s; %d message(s) stay queued", exc, queued)
                return
            drainer.new_session(session)
            try:
                await _drain_until_idle(drainer, waker, session, loop)
                await end_session(session, clean=True)
                return
            except (ConnectError, DeadlineError) as exc:
                await end_session(session, clean=False)
                log.warning("%s; reconnecting", exc)
                give_up_at = loop.time() + RETRY_SECONDS
    finally:
        waker.close()


async def _drain_until_idle(
    drainer: Drainer, waker: Waker, session: XmppSession, loop: asyncio.AbstractEventLoop
) -> None:
    last_work = loop.time()
    while True:
        if drainer.refresh():
            last_work = loop.time()
        stats = await drainer.step()
        if stats.delivered or stats.dropped:
            last_work = loop.time()
        now = loop.time()
        if stats.next_ready is None and now - last_work >= LINGER_SECONDS:
            return
        wait = POLL_SECONDS if stats.next_ready is None else min(
            POLL_SECONDS, max(stats.next_ready - drainer.clock(), 0.01)
        )
        await waker.wait(session, min(wait, max(LINGER_SECONDS - (now - last_work), 0.01)))


def run_deliverer(cfg: Config, spool: Spool, lock_fd: int) -> None:
    """The detached deliverer's life: drain while holding the deliver lock, then release it
    and look once more, so a hand-off that saw the lock held just before we let go is
    never left behind."""
    drainer = Drainer(cfg, spool)
    spool.remove_stale_temp()
    fd: int | None = lock_fd
    while fd is not None:
        Spool.write_pid(fd)
        try:
            asyncio.run(deliver_background(cfg, spool, drainer))
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # releases the lock
        fd = spool.try_lock(DELIVER_LOCK) if drainer.unseen() else None


# -- flush ----------------------------------------------------------------------------------


async def flush(cfg: Config, spool: Spool) -> DrainStats:
    """Try every queued message now, in one session, ignoring the coalescing window."""
    drainer = Drainer(cfg, spool)
    drainer.refresh()
    stats = DrainStats()
    if not drainer.pending:
        return stats
    try:
        session = await open_session(cfg)
    except CvsmsgError as exc:
        queued = drainer.mark_failed(str(exc))
        raise type(exc)(f"{exc}; {queued} message(s) stay queued") from None
    drainer.new_session(session)
    try:
        stats.add(await drainer.step(force=True))
        await end_session(session, clean=True)
    except CvsmsgError as exc:
        await end_session(session, clean=False)
        queued = drainer.mark_failed(str(exc))
        raise type(exc)(f"{exc}; {queued} message(s) stay queued") from None
    except BaseException:
        session.abort()
        raise
    return stats
