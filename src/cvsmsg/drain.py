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

from cvsmsg.config import MIN_STANZA_BYTES, Config, format_duration
from cvsmsg.digest import Batch, Digest, batches, local_time, refused_level, render
from cvsmsg.errors import (
    SESSION_LOST,
    AuthError,
    ConnectError,
    CvsmsgError,
    DeadlineError,
    MessageRefused,
    RoomError,
    SpoolError,
)
from cvsmsg.message import STANZA_OVERHEAD, Part, split_message, subject_room, wire_size
from cvsmsg.policy import decide
from cvsmsg.procs import ended, exit_fd
from cvsmsg.sessions import (
    DELIVERER,
    Backoff,
    OneShot,
    end_session,
    open_session,
    plan_session,
)
from cvsmsg.spool import DELIVER_LOCK, Claim, Entry, Spool, claimed

if TYPE_CHECKING:
    from cvsmsg.rooms import Room
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

# A burst that keeps going is still sent after this long (a digest per minute at most).
COALESCE_MAX_WAIT = 60.0
# The background deliverer stays this long after its last work, for more hand-offs.
LINGER_SECONDS = 2.0
# How often a waiting drainer looks at the spool even without a wake-up.
POLL_SECONDS = 0.5
# A message the server refused this many times, the last one alone, is set aside (ID.bad).
MAX_REFUSALS = 6
# The background deliverer retries connecting this long before it leaves the messages
# for the next run (each run is cheap to start again; a stuck one is not).
RETRY_SECONDS = 30.0
BACKOFF_CAP = 8.0  # the deliverer's longest wait between two logins


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
        self.first_seen: dict[str, float] = {}  # clock() when refresh first read each id
        self._counted: set[str] = set()  # attempts counted in this session
        self._looked: set[str] = set()  # recipients whose presence we waited for
        self.learned_limit: int | None = None  # below the stanza the server last refused
        self.delivered_total = 0  # progress, for the reconnect back-off
        self.stopping: Callable[[], bool] = lambda: False  # checked between batches
        # CVS processes that dropped fresh messages and still run (their bursts wait)
        self.running: set[str] = set()

    def new_session(self, session: XmppSession) -> None:
        """After a reconnect: presence and attempt counting start afresh."""
        self.session = session
        self._counted.clear()
        self._looked.clear()

    # -- reading the spool ----------------------------------------------------------------

    def refresh(self) -> list[str]:
        """Pick up messages added since the last look, forget removed ones; the new ids."""
        ids = self.spool.ids()
        current = set(ids)
        for gone in set(self.pending) - current:
            del self.pending[gone]
        # An id never comes back once its file is gone: forget it (serve runs for months).
        self._counted &= current
        for gone in set(self.first_seen) - current:
            del self.first_seen[gone]
        new = [i for i in ids if i not in self.first_seen]
        now = self.clock()
        for entry_id in new:
            self.first_seen[entry_id] = now
            entry = self.spool.read(entry_id)
            if entry is not None:
                self.pending[entry_id] = entry
        return new

    @property
    def seen(self) -> set[str]:
        """The ids this drainer has looked at (and not seen go)."""
        return set(self.first_seen)

    def recipients(self) -> list[str]:
        """Whom the messages we hold are for (they may subscribe to the bot); rooms are
        joined, never probed nor asked to subscribe."""
        return sorted({e.recipient for e in self.pending.values() if not e.room})

    def unseen(self) -> bool:
        """True when the spool holds a message this drainer has never looked at."""
        return any(i not in self.first_seen for i in self.spool.ids())

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
                    entry.id, entry.recipient, format_duration(self.cfg.queue_max_age),
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
        droppers = {e.dropper for e in self.pending.values() if e.dropper and not e.queued}
        over = {d for d in droppers if ended(d)}
        self.running = droppers - over
        now = self.clock()
        todo = batches(self.pending.values(), self.cfg.coalesce_seconds, COALESCE_MAX_WAIT,
                       self.first_seen, over)
        ready = [b for b in todo if force or b.ready_at <= now]
        waiting = [b.ready_at for b in todo if not (force or b.ready_at <= now)]
        stats.next_ready = min(waiting) if waiting else None
        unknown = sorted({b.recipient for b in ready if not b.entries[0].room} - self._looked)
        if unknown:
            await self.session.presence_of(unknown)  # bounded by presence_grace
            self._looked.update(unknown)
        for batch in ready:
            if self.stopping():
                break
            if batch.entries[0].room:  # not presence-gated: joined (a direct run leaves it)
                if not deliverable_only:
                    await self._send_room(batch, stats)
                continue
            decision = decide(self.session.view(batch.recipient), self.cfg.withhold_show)
            if decision.deliver:
                await self._send(batch, stats)
            elif not deliverable_only:
                self._withhold(batch, decision.reason, stats)
        return stats

    def stanza_limit(self, refused: int = 0) -> int:
        """Bytes a stanza may have: the session's limit, halved for each time the server
        refused the message, and never above what a refusal in this process taught us."""
        assert self.session is not None
        limit = self.session.max_stanza_bytes >> min(refused, 8)
        if self.learned_limit is not None:
            limit = min(limit, self.learned_limit)
        return max(limit, MIN_STANZA_BYTES)

    async def _send(self, batch: Batch, stats: DrainStats, room: Room | None = None) -> None:
        assert self.session is not None
        with claimed(self.spool, list(batch.ids)) as claims:
            if not claims:
                return  # another run has them
            mine = {c.entry.id: c for c in claims}
            fresh = Batch(batch.recipient, batch.subject, batch.type,
                          tuple(c.entry for c in claims), batch.ready_at)
            limit = self.stanza_limit(max(c.entry.refused for c in claims))
            subject = min(wire_size(batch.subject), subject_room(limit))
            budget = limit - STANZA_OVERHEAD - subject - 64
            for digest in render(fresh, budget, local_time if self.cfg.late_note else None):
                owned = [mine[i] for i in digest.ids]
                await self._send_digest(batch, digest, owned, limit, room)
                self._record_delivery(batch.recipient, digest, owned, stats)

    async def _send_room(self, batch: Batch, stats: DrainStats) -> None:
        """A room's batch: join, send each digest (the room's echo confirms it), leave. A
        room that will not have us keeps its messages queued, with the reason."""
        assert self.session is not None
        from cvsmsg.rooms import joined

        try:
            async with joined(self.session, self.cfg, batch.recipient,
                              self.session.plan.step_timeout) as visit:
                await self._send(batch, stats, visit)
        except RoomError as exc:
            self._withhold(batch, str(exc), stats, count=True)
            log.warning("%s; %d message(s) stay queued", exc, len(batch.ids))
        finally:  # the room's refusals were ours to handle, not a recipient's bounce
            bounces = self.session.bounces
            bounces[:] = [b for b in bounces if b.recipient != batch.recipient]

    async def _send_digest(
        self, batch: Batch, digest: Digest, owned: list[Claim], limit: int,
        room: Room | None = None,
    ) -> None:
        """Send one digest part by part, each confirmed; a failure records how much the
        server has (a retry sends only the rest) and, if the server refused it, that too."""
        assert self.session is not None
        session = self.session
        parts = split_message(digest.subject, digest.body, limit, self.cfg.max_parts)
        session.phase = f"sending queued messages to {batch.recipient}"
        done = 0  # characters of the digest's body the server has confirmed
        confirmed = 0  # parts
        step = session.plan.step_timeout
        try:
            for part in parts:
                if room is not None:
                    await room.send(part)  # the room's echo is its confirmation
                    done += len(part.body)
                    confirmed += 1
                    continue
                session.send(batch.recipient, part.subject, part.body, batch.type,
                             delay=digest.made)
                try:
                    async with asyncio.timeout(step):
                        await session.confirm()
                except TimeoutError:
                    raise DeadlineError(
                        f"timed out after {step:g} s waiting for the server to confirm"
                    ) from None
                done += len(part.body)
                confirmed += 1
        except MessageRefused as exc:
            self._refused(owned, str(exc), parts[confirmed:], done)
            raise
        except CvsmsgError:
            if done and len(owned) == 1:  # a long message: never resend what went
                self._progress(owned[0], done)
            raise

    def _record_delivery(
        self, recipient: str, digest: Digest, owned: list[Claim], stats: DrainStats
    ) -> None:
        assert self.session is not None
        bounce = next((b for b in self.session.bounces if b.recipient == recipient), None)
        if bounce is not None:
            self.session.bounces.remove(bounce)
            log.error(
                "message to %s rejected by the server (%s%s): %d queued notification(s) "
                "dropped", recipient, bounce.condition,
                f": {bounce.text}" if bounce.text else "", len(owned),
            )
            stats.dropped += len(owned)
        else:
            stats.delivered[recipient] = stats.delivered.get(recipient, 0) + len(owned)
            self.delivered_total += len(owned)
            log.info("delivered %d notification(s) to %s", len(owned), recipient)
        for claim in owned:
            claim.remove()
            self.pending.pop(claim.entry.id, None)
        self.spool.sync()

    def _progress(self, claim: Claim, done: int) -> None:
        """The server has `done` more characters of this message: remember it."""
        entry = claim.entry
        self._replace(entry.id, claim.update(sent=min(entry.sent + done, len(entry.body))))

    def _refused(self, owned: list[Claim], reason: str, unsent: list[Part], done: int) -> None:
        """The server closed the stream over this digest: learn a smaller limit, count the
        refusal on each message, and set aside one that keeps being refused alone."""
        if unsent:
            size = wire_size(unsent[0].body) + wire_size(unsent[0].subject) + STANZA_OVERHEAD
            learned = size // 2
            # a small stanza refused says nothing about size (its content, rather)
            if learned >= MIN_STANZA_BYTES and (
                self.learned_limit is None or learned < self.learned_limit
            ):
                self.learned_limit = learned
                log.warning("the server refused a %d-byte message: sending at most %d bytes "
                            "per stanza from now on", size, learned)
        for claim in owned:
            entry = claim.entry
            refused = refused_level(entry.refused, len(owned))
            if refused >= MAX_REFUSALS and len(owned) == 1:
                log.error("message %s for %s refused by the server %d times: set aside as "
                          "%s.bad (%s)", entry.id, entry.recipient, refused, entry.id, reason)
                self.spool.set_aside(entry.id)
                self.pending.pop(entry.id, None)
                continue
            # not `attempts`/`reason`: retried at once, it is not late (no note for the reader)
            sent = entry.sent + done if len(owned) == 1 else entry.sent
            self._replace(entry.id, claim.update(refused=refused,
                                                 sent=min(sent, len(entry.body))))

    def _replace(self, old_id: str, entry: Entry) -> None:
        """A rewritten message (in a sticky spool it may have a new id)."""
        self.pending.pop(old_id, None)
        self.pending[entry.id] = entry
        self.first_seen[entry.id] = self.first_seen.pop(old_id, self.clock())
        self._counted.add(entry.id)

    def _withhold(
        self, batch: Batch, reason: str, stats: DrainStats, *, count: bool = False
    ) -> None:
        """Keep `batch` queued with `reason` (attempts+1 once per session); `count`: a
        failure (a room that would not have us), never dropped as a withheld one is."""
        stats.withheld[batch.recipient] = reason
        ids = [i for i in batch.ids if i not in self._counted]
        if not ids:
            return
        drop = self.cfg.withheld == "drop" and not count
        if not drop and not (self.count_attempts or count):
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
                    self._replace(claim.entry.id, claim.update(
                        attempts=claim.entry.attempts + 1, reason=reason, last_attempt=now
                    ))
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
                self._replace(claim.entry.id, claim.update(
                    attempts=claim.entry.attempts + 1, reason=reason, last_attempt=now
                ))
        return len(self.pending)



class Waker:
    """An asyncio event, set when a hand-off writes to the spool's wake FIFO, or when a CVS
    process we watch exits (its burst is complete). cvsmsg-drop leaves a live deliverer
    unpoked: a new message waits for the next look (POLL_SECONDS) at most."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.event = asyncio.Event()
        self._reader, self._keeper = spool.open_wake_fifo()
        asyncio.get_running_loop().add_reader(self._reader, self._on_readable)
        self._exits: dict[str, int] = {}  # dropper → pidfd

    def _on_readable(self) -> None:
        Spool.drain_wake_fifo(self._reader)
        self.event.set()

    def watch_exits(self, keys: set[str]) -> None:
        """Be woken when one of these processes (`PID:START`, see procs.py) exits; stop
        watching the others."""
        loop = asyncio.get_running_loop()
        for key in set(self._exits) - keys:
            self._unwatch(key)
        for key in keys - set(self._exits):
            fd = exit_fd(key)
            if fd is None:
                continue  # gone already (the next step sees it), or no pidfd: polled
            self._exits[key] = fd
            loop.add_reader(fd, self._on_exit, key)

    def _on_exit(self, key: str) -> None:
        self._unwatch(key)
        self.event.set()

    def _unwatch(self, key: str) -> None:
        fd = self._exits.pop(key)
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)

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
        for key in list(self._exits):
            self._unwatch(key)
        asyncio.get_running_loop().remove_reader(self._reader)
        for fd in (self._reader, self._keeper):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the background deliverer ---------------------------------------------------------------


async def deliver_background(cfg: Config, spool: Spool, drainer: Drainer) -> None:
    """Drain the spool in one session, coalescing bursts, lingering for more hand-offs;
    return when there is nothing left to do. Failures (cannot connect, connection lost, a
    message the server refused) are retried with a capped back-off until RETRY_SECONDS pass
    without progress; then the messages stay queued with the error as their reason."""
    waker = Waker(spool)
    loop = asyncio.get_running_loop()
    backoff = Backoff(0.5, BACKOFF_CAP)
    give_up_at = loop.time() + RETRY_SECONDS
    try:
        while True:
            drainer.refresh()
            if not drainer.pending:
                return
            delivered_before = drainer.delivered_total
            try:
                plan = plan_session(cfg, spool, drainer.recipients(), DELIVERER)
                session = await open_session(cfg, plan, drainer.recipients(),
                                             timeout=cfg.step_timeout)
            except AuthError as exc:  # retrying will not fix a password
                queued = drainer.mark_failed(str(exc))
                log.error("error: %s; %d message(s) stay queued", exc, queued)
                return
            except (ConnectError, DeadlineError) as exc:
                failure: CvsmsgError = exc
            else:
                drainer.new_session(session)
                try:
                    await _drain_until_idle(drainer, waker, session, loop)
                    await end_session(session, clean=True)
                    return
                except SESSION_LOST as exc:
                    await end_session(session, clean=False)
                    failure = exc
            if drainer.delivered_total > delivered_before:
                backoff.reset()
                give_up_at = loop.time() + RETRY_SECONDS
            delay = backoff.next()
            if loop.time() + delay > give_up_at:
                queued = drainer.mark_failed(str(failure))
                log.error("error: %s; %d message(s) stay queued", failure, queued)
                return
            log.warning("%s; retrying in %g s", failure, delay)
            await waker.wait(None, delay)
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
        waker.watch_exits(drainer.running)
        if stats.delivered or stats.dropped:
            last_work = loop.time()
        now = loop.time()
        if stats.next_ready is None and now - last_work >= LINGER_SECONDS:
            return
        if stats.next_ready is None:  # lingering for more hand-offs
            wait = max(LINGER_SECONDS - (now - last_work), 0.01)
        else:  # a burst coalescing (not a 10 ms spin once it outlasts the linger)
            wait = max(stats.next_ready - drainer.clock(), 0.01)
        await waker.wait(session, min(POLL_SECONDS, wait))


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
            with contextlib.suppress(OSError, SpoolError):
                Spool.clear_pid(fd)
            os.close(fd)  # releases the lock
        fd = spool.try_lock(DELIVER_LOCK) if drainer.unseen() else None


# -- flush ----------------------------------------------------------------------------------


async def flush(cfg: Config, spool: Spool) -> DrainStats:
    """Try every queued message now, ignoring the coalescing window; `timeout` bounds the
    whole run. A message the server refuses costs its session: the rest go in a new one
    (it is retried smaller, and set aside after MAX_REFUSALS). What is not delivered stays
    queued."""
    drainer = Drainer(cfg, spool)
    drainer.refresh()
    stats = DrainStats()
    deadline: float | None = None
    for _ in range(MAX_REFUSALS + 1):
        if not drainer.pending:
            break
        try:
            async with OneShot(cfg, spool, drainer.recipients(), deadline=deadline) as run:
                deadline = run.deadline
                drainer.new_session(await run.open())
                await drainer.step(force=True, stats=stats)
        except MessageRefused as exc:
            log.warning("%s; trying the rest in a new session", exc)
            drainer.refresh()
            continue
        except CvsmsgError as exc:
            queued = drainer.mark_failed(str(exc))
            raise type(exc)(f"{exc}; {queued} message(s) stay queued") from None
        await run.close()
        break
    return stats
