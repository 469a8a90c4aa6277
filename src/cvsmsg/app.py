"""Orchestration of one `notify` run: recipients → session → decide → send → confirm."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cvsmsg.config import Config
from cvsmsg.cvs import normalize_recipient
from cvsmsg.errors import DeadlineError, RecipientError
from cvsmsg.message import split_message
from cvsmsg.policy import decide, subscription_verdict
from cvsmsg.status import ExitStatus

if TYPE_CHECKING:
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """What happened for one recipient, as the CLI reports it."""

    recipient: str
    delivered: bool
    reason: str
    failed: bool = False  # invalid address or rejected by the server
    handed_off: bool = False  # written to the spool for the deliverer or `cvsmsg serve`


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]

    @property
    def status(self) -> ExitStatus:
        """Failures outrank withholding; 0 only when everyone got it."""
        if any(o.failed for o in self.outcomes):
            return ExitStatus.RECIPIENT
        if any(not o.delivered and not o.handed_off for o in self.outcomes):
            return ExitStatus.WITHHELD
        return ExitStatus.OK


def resolve_recipients(
    values: list[str], default_domain: str | None
) -> tuple[list[str], list[Outcome]]:
    """Valid bare JIDs (deduplicated, in order) and an Outcome for each invalid value."""
    valid: list[str] = []
    invalid: list[Outcome] = []
    for value in values:
        try:
            jid = normalize_recipient(value, default_domain)
        except RecipientError as exc:
            invalid.append(Outcome(value.strip(), False, str(exc), failed=True))
            continue
        if jid not in valid:
            valid.append(jid)
    return valid, invalid


def subscription_gate(
    cfg: Config, session: XmppSession, recipients: Iterable[str]
) -> Callable[[str], bool]:
    """The session's answer to presence subscription requests: `subscribers`, the roster
    cap, and the recipients of this run and of the `[[loginfo]]` rules."""
    known = set(recipients) | {jid for rule in cfg.loginfo for jid in rule.to}
    accepted: set[str] = set()  # the server's roster pushes may lag behind our answers

    def accept(jid: str) -> bool:
        contacts = {entry.jid for entry in session.roster()}
        verdict = subscription_verdict(
            jid, cfg.allowed_subscribers, recipient=jid.lower() in known,
            in_roster=jid in contacts or jid in accepted,
            roster_size=len(contacts | accepted), max_roster=cfg.max_roster,
        )
        if verdict.accept:
            accepted.add(jid)
        else:
            level = logging.WARNING if verdict.roster_full else logging.INFO
            log.log(level, "not accepting %s: %s", jid, verdict.reason)
        return verdict.accept

    return accept


# Runs once the message is confirmed, before the stream is closed: the spool delivers
# queued messages in the same session.
AfterSend = Callable[["XmppSession", list[Outcome]], Awaitable[None]]


async def _deliver(
    cfg: Config, recipients: list[str], subject: str, text: str,
    session_box: list[XmppSession], after: AfterSend | None = None,
) -> list[Outcome]:
    from cvsmsg.xmpp import XmppSession  # slixmpp is heavy: only once we really connect

    parts = split_message(subject, text, cfg.max_stanza_bytes, cfg.max_parts)
    session = XmppSession(cfg)
    session.accept_subscription = subscription_gate(cfg, session, recipients)
    session_box.append(session)
    outcomes: list[Outcome] = []
    try:
        # Probe only the recipients (no presence broadcast to the whole roster) unless the
        # configuration asks for the book's behaviour.
        await session.open(probe=recipients if cfg.presence == "probe" else None)
        # Ask anyone whose presence we cannot see before waiting: if their client approves
        # at once, this very notification can still be gated and delivered.
        asked = {j for j in recipients if not session.can_see(j) and session.ask_presence(j)}
        views = await session.presence_of(recipients)
        decisions = {jid: decide(views[jid], cfg.withhold_show) for jid in recipients}
        to_send = [jid for jid in recipients if decisions[jid].deliver]
        for jid in recipients:
            if decisions[jid].deliver:
                continue
            reason = decisions[jid].reason
            if jid in asked and not views[jid].visible:
                reason += f"; asked {jid} to share presence"
            outcomes.append(Outcome(jid, False, reason))
        if session.max_stanza_bytes < cfg.max_stanza_bytes:
            parts = split_message(subject, text, session.max_stanza_bytes, cfg.max_parts)
        session.phase = "sending"
        for jid in to_send:
            for part in parts:
                session.send(jid, part.subject, part.body, cfg.message_type)
        await session.confirm()
        bounced = {b.recipient: b for b in session.bounces}
        for jid in to_send:
            if jid in bounced:
                b = bounced[jid]
                detail = f": {b.text}" if b.text else ""
                outcomes.append(Outcome(
                    jid, False, f"message to {jid} rejected by the server ({b.condition}{detail})",
                    failed=True,
                ))
            else:
                outcomes.append(Outcome(jid, True, decisions[jid].reason))
        if after is not None:
            await after(session, outcomes)
    except BaseException:
        session.abort()
        raise
    order = {jid: i for i, jid in enumerate(recipients)}
    return sorted(outcomes, key=lambda o: order.get(o.recipient, 0))


async def notify_async(
    cfg: Config, recipient_values: list[str], subject: str, text: str,
    after: AfterSend | None = None,
) -> Report:
    """Deliver `text` to each available, not-withheld recipient, within cfg.timeout."""
    recipients, invalid = resolve_recipients(recipient_values, cfg.default_domain)
    if not recipients:
        if not invalid:
            raise RecipientError("no recipient given")
        return Report(invalid)  # nothing to connect for
    box: list[XmppSession] = []
    try:
        async with asyncio.timeout(cfg.timeout):
            delivered = await _deliver(cfg, recipients, subject, text, box, after)
    except TimeoutError:
        phase = box[0].phase if box else "starting"
        raise DeadlineError(f"timed out after {cfg.timeout:g} s while {phase}") from None
    # The outcome is settled (the server acknowledged): a slow goodbye must not turn it
    # into a timeout, so closing has its own short bound.
    await box[0].close(wait=1.0)
    return Report(invalid + delivered)

