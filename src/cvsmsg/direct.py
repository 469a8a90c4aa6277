"""Direct delivery: one session, within the run's `timeout`. Decide each recipient with the
gate, send to those who may be disturbed, wait for the server's confirmation, queue what
could not go (withheld, or an error), and hand over queued messages whose recipient is
back while the session is open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from cvsmsg.config import Config
from cvsmsg.errors import (
    SESSION_LOST,
    AuthError,
    CvsmsgError,
    MessageRefused,
    RoomError,
    SpoolError,
)
from cvsmsg.message import split_message
from cvsmsg.policy import decide
from cvsmsg.record import replace
from cvsmsg.report import Outcome
from cvsmsg.sessions import OneShot
from cvsmsg.spool import Spool
from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

# Kept free at the end of the run for closing the stream cleanly.
CLOSE_MARGIN = 3.0
QUEUED = "queued for later delivery"


async def deliver(
    cfg: Config, spool: Spool, recipients: list[str], subject: str, text: str, user: str,
    rooms: Sequence[str] = (),
) -> list[Outcome]:
    """Deliver `text` to each available, not-withheld recipient, in order, then to each
    room (joined, not gated); queue the rest. A login or connection failure queues the
    message for everyone the server has not confirmed, and is raised again saying so."""
    confirmed: dict[str, Outcome] = {}
    posted: dict[str, Outcome] = {}  # rooms: delivered, or refused us (and queued)
    progress: dict[str, int] = {}  # characters of `text` each recipient's server has
    late: list[Outcome] = []
    clock = asyncio.get_running_loop().time
    started = clock()
    try:
        async with OneShot(cfg, spool, recipients) as run:
            session = await run.open()
            opened, tls = clock(), session.tls_version  # (gone once the stream is closed)
            if recipients:
                confirmed = await _send_gated(cfg, session, recipients, subject, text,
                                              progress)
            await _post_rooms(cfg, spool, session, rooms, subject, text, user, posted)
            sent = clock()
            late = await _deliver_queued(cfg, spool, session, run.remaining() - CLOSE_MARGIN)
    except (AuthError, *SESSION_LOST) as exc:
        error = _queue_after_error(
            cfg, spool, recipients, subject, text, user, exc, confirmed, progress
        )
        raise _queue_rooms_after_error(cfg, spool, rooms, subject, text, user, error,
                                       posted) from None
    await run.close()
    # -v: where the run's time went, and how it reached the server (one line).
    log.info(
        "%s as %s (%s, %s): login and presence %.0f ms, send and confirm %.0f ms, "
        "%d queued message(s) delivered, closed after %.0f ms",
        "announced" if session.announced else "probed", session.client.boundjid,
        "direct TLS" if cfg.tls == "direct" else "STARTTLS", tls,
        (opened - started) * 1000, (sent - opened) * 1000, len(late),
        (clock() - started) * 1000,
    )
    outcomes = [confirmed[jid] for jid in recipients]
    return ([_queue_withheld(cfg, spool, o, subject, text, user) for o in outcomes]
            + [posted[room] for room in rooms] + late)


async def _post_rooms(
    cfg: Config, spool: Spool, session: XmppSession, rooms: Sequence[str], subject: str,
    text: str, user: str, posted: dict[str, Outcome],
) -> None:
    """Each room: join, send, leave. A room that will not have us is a failed Outcome
    (exit 8) and the message is queued for it; the other rooms still get it."""
    if not rooms:
        return
    from cvsmsg.rooms import post

    parts = split_message(subject, text, session.max_stanza_bytes, cfg.max_parts)
    for room in rooms:
        try:
            await post(session, cfg, room, parts, cfg.timeout)
        except RoomError as exc:
            reason = f"{exc}; {QUEUED}"
            try:
                spool.add(room, subject, text, mtype=cfg.message_type, cvs_user=user,
                          attempts=1, reason=str(exc), room=True)
            except SpoolError as spool_exc:
                reason = f"{exc}; could not queue the message: {spool_exc}"
            posted[room] = Outcome(room, False, reason, failed=True, room=True)
        else:
            posted[room] = Outcome(room, True, "", room=True)
        finally:  # the room's refusals were handled here, not a recipient's bounce
            session.bounces[:] = [b for b in session.bounces if b.recipient != room]


def _queue_rooms_after_error(
    cfg: Config, spool: Spool, rooms: Sequence[str], subject: str, text: str, user: str,
    exc: CvsmsgError, posted: dict[str, Outcome],
) -> CvsmsgError:
    """After a session failure: queue the message for each room not done yet."""
    todo = [room for room in rooms if room not in posted]
    if not todo:
        return exc
    try:
        for room in todo:
            spool.add(room, subject, text, mtype=cfg.message_type, cvs_user=user,
                      attempts=1, reason=str(exc).removesuffix(f"; {QUEUED}"), room=True)
    except SpoolError as spool_exc:
        return type(exc)(f"{exc}; could not queue the message: {spool_exc}")
    return exc if str(exc).endswith(QUEUED) else type(exc)(f"{exc}; {QUEUED}")


async def _send_gated(
    cfg: Config, session: XmppSession, recipients: list[str], subject: str, text: str,
    progress: dict[str, int],
) -> dict[str, Outcome]:
    """Each recipient's outcome once the server has confirmed what we sent. Parts go one
    at a time, each confirmed, and `progress` says how much of `text` each recipient's
    server has: if the run fails half-way, the queued rest never repeats a part."""
    views = await session.presence_of(recipients)
    decisions = {jid: decide(views[jid], cfg.withhold_show) for jid in recipients}
    outcomes: dict[str, Outcome] = {}
    for jid, decision in decisions.items():
        if not decision.deliver:
            reason = decision.reason
            if jid in session.asked and not views[jid].visible:
                reason += f"; asked {jid} to share presence"
            outcomes[jid] = Outcome(jid, False, reason)
    to_send = [jid for jid in recipients if decisions[jid].deliver]
    parts = split_message(subject, text, session.max_stanza_bytes, cfg.max_parts)
    for jid in to_send:
        progress[jid] = 0
    for part in parts:
        session.phase = "sending"
        for jid in to_send:
            session.send(jid, part.subject, part.body, cfg.message_type)
        await session.confirm()
        for jid in to_send:
            progress[jid] = min(progress[jid] + len(part.body), len(text))
    bounced = {b.recipient: b for b in session.bounces}
    for jid in to_send:
        bounce = bounced.get(jid)
        if bounce is None:
            outcomes[jid] = Outcome(jid, True, decisions[jid].reason)
            continue
        detail = f": {bounce.text}" if bounce.text else ""
        outcomes[jid] = Outcome(
            jid, False, f"message to {jid} rejected by the server ({bounce.condition}{detail})",
            failed=True,
        )
    return outcomes


def _queue_withheld(
    cfg: Config, spool: Spool, outcome: Outcome, subject: str, text: str, user: str
) -> Outcome:
    if outcome.delivered or outcome.failed or cfg.withheld != "queue":
        return outcome
    try:
        spool.add(outcome.recipient, subject, text, mtype=cfg.message_type, cvs_user=user,
                  attempts=1, reason=outcome.reason)
    except SpoolError as exc:
        return replace(outcome, reason=f"{outcome.reason}; not queued: {exc}")
    return replace(outcome, reason=f"{outcome.reason}; queued")


def _queue_after_error(
    cfg: Config, spool: Spool, recipients: list[str], subject: str, text: str, user: str,
    exc: CvsmsgError, confirmed: dict[str, Outcome], progress: dict[str, int],
) -> CvsmsgError:
    """Queue the message for every recipient the server has not confirmed (only the part
    it does not have yet; a refused message is retried smaller); the same error (same exit
    code) saying so."""
    refused = 1 if isinstance(exc, MessageRefused) else 0
    queued = 0
    try:
        for jid in recipients:
            outcome = confirmed.get(jid)
            if outcome is not None and (outcome.delivered or outcome.failed):
                continue  # the server has it (or refused it for good)
            if outcome is not None and cfg.withheld != "queue":
                continue  # withheld, and withheld messages are dropped
            reason = outcome.reason if outcome is not None else str(exc)
            spool.add(jid, subject, text, mtype=cfg.message_type, cvs_user=user,
                      attempts=1, reason=reason, refused=refused, sent=progress.get(jid, 0))
            queued += 1
    except SpoolError as spool_exc:
        return type(exc)(f"{exc}; could not queue the message: {spool_exc}")
    return type(exc)(f"{exc}; {QUEUED}") if queued else exc


async def _deliver_queued(
    cfg: Config, spool: Spool, session: XmppSession, budget: float
) -> list[Outcome]:
    """Queued messages whose recipient is available now, in the session we already have;
    within `budget` seconds so the run still ends within its timeout. Never fails the run."""
    if not spool.exists() or not spool.ids():
        return []  # nothing queued, the usual case: the drainer is not even loaded
    from cvsmsg.drain import Drainer, DrainStats

    drainer = Drainer(cfg, spool, session, count_attempts=False)
    if not drainer.refresh():
        return []
    if budget <= 0:
        log.info("no time left to deliver queued messages; they stay queued")
        return []
    stats = DrainStats()
    try:
        async with asyncio.timeout(budget):
            await drainer.step(deliverable_only=True, stats=stats)
    except TimeoutError:
        log.info("no time left to deliver all queued messages; the rest stay queued")
    except CvsmsgError as exc:
        log.warning("queued messages not delivered: %s", exc)
    return [
        Outcome(jid, True, f"{n} queued notification{'s' if n != 1 else ''}", earlier=True)
        for jid, n in stats.delivered.items()
    ]
