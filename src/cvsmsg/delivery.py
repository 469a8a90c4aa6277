"""One `notify` run with the spool: hand the message off (background mode, or while
`cvsmsg serve` runs), or deliver it directly, queue what could not be delivered (withheld,
or an error), and deliver queued messages whose recipient is back in the same session."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from cvsmsg.app import Outcome, Report, notify_async, resolve_recipients
from cvsmsg.config import Config
from cvsmsg.drain import Drainer, DrainStats
from cvsmsg.errors import AuthError, ConnectError, CvsmsgError, DeadlineError, SpoolError
from cvsmsg.handoff import cvs_user, hand_off, open_spool, wants_handoff
from cvsmsg.spool import Spool

if TYPE_CHECKING:
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

# Kept free at the end of the run for closing the stream cleanly.
CLOSE_MARGIN = 3.0
QUEUED = "queued for later delivery"


def notify(
    cfg: Config, recipient_values: list[str], subject: str, text: str,
    env: Mapping[str, str] | None = None,
) -> Report:
    """The spool-aware `notify`: what the CLI runs."""
    env = os.environ if env is None else env
    spool = open_spool(cfg, env)
    if wants_handoff(cfg, spool):
        try:
            spool.ensure()
            handed = hand_off(cfg, spool, recipient_values, subject, text, env)
        except SpoolError as exc:
            log.warning("%s: delivering directly", exc)
        else:
            return Report([
                Outcome(h.recipient, False, h.reason, failed=h.failed, handed_off=not h.failed)
                for h in handed
            ])
    return asyncio.run(_direct(cfg, spool, recipient_values, subject, text, env))


async def _direct(
    cfg: Config, spool: Spool, values: list[str], subject: str, text: str,
    env: Mapping[str, str],
) -> Report:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + cfg.timeout - CLOSE_MARGIN
    confirmed: list[Outcome] = []
    late: list[Outcome] = []

    async def after(session: XmppSession, outcomes: list[Outcome]) -> None:
        confirmed.extend(outcomes)
        late.extend(await _deliver_queued(cfg, spool, session, deadline))

    try:
        report = await notify_async(cfg, values, subject, text, after=after)
    except (AuthError, ConnectError, DeadlineError) as exc:
        raise _queue_after_error(cfg, spool, values, subject, text, env, exc, confirmed) \
            from None
    user = cvs_user(text, env)
    outcomes = [_queue_withheld(cfg, spool, o, subject, text, user) for o in report.outcomes]
    return Report(outcomes + late)


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
    cfg: Config, spool: Spool, values: list[str], subject: str, text: str,
    env: Mapping[str, str], exc: CvsmsgError, confirmed: list[Outcome],
) -> CvsmsgError:
    """Queue the message for every recipient the server has not confirmed; the same
    error (same exit code) saying so."""
    recipients, _invalid = resolve_recipients(values, cfg.default_domain)
    known = {o.recipient: o for o in confirmed}
    user = cvs_user(text, env)
    queued = 0
    try:
        for jid in recipients:
            outcome = known.get(jid)
            if outcome is not None and (outcome.delivered or outcome.failed):
                continue  # the server has it (or refused it for good)
            if outcome is not None and cfg.withheld != "queue":
                continue  # withheld, and withheld messages are dropped
            reason = outcome.reason if outcome is not None else str(exc)
            spool.add(jid, subject, text, mtype=cfg.message_type, cvs_user=user,
                      attempts=1, reason=reason)
            queued += 1
    except SpoolError as spool_exc:
        return type(exc)(f"{exc}; could not queue the message: {spool_exc}")
    return type(exc)(f"{exc}; {QUEUED}") if queued else exc


async def _deliver_queued(
    cfg: Config, spool: Spool, session: XmppSession, deadline: float
) -> list[Outcome]:
    """Queued messages whose recipient is available now, in the session we already have;
    bounded so the run still ends within its timeout. Never fails the run."""
    if not spool.exists():
        return []
    drainer = Drainer(cfg, spool, session, count_attempts=False)
    if not drainer.refresh():
        return []
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0:
        log.info("no time left to deliver queued messages; they stay queued")
        return []
    stats = DrainStats()
    try:
        async with asyncio.timeout(remaining):
            await drainer.step(deliverable_only=True, stats=stats)
    except TimeoutError:
        log.info("no time left to deliver all queued messages; the rest stay queued")
    except CvsmsgError as exc:
        log.warning("queued messages not delivered: %s", exc)
    return [
        Outcome(jid, True, f"{n} queued notification{'s' if n != 1 else ''}")
        for jid, n in stats.delivered.items()
    ]
