"""The one way to an XMPP session. Every path (notify, loginfo, flush, the background
deliverer, serve, check) gets its session here, so the subscription policy, the presence
mode and the time bounds are decided in one place and cannot be left out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

from cvsmsg.config import Config
from cvsmsg.errors import DeadlineError
from cvsmsg.policy import SessionPlan, SubscriptionPolicy
from cvsmsg.slixmpp_compat import cancel_send_filters

if TYPE_CHECKING:
    from types import TracebackType

    from cvsmsg.spool import Spool
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

# Who is asking for a session: it sets the time bounds and whether it always announces.
ONE_SHOT = "one-shot"  # notify, loginfo, flush, check: `timeout` bounds the whole run
DELIVERER = "deliverer"  # the background deliverer: `step_timeout` bounds each step
SERVE = "serve"  # online for as long as it runs: it announces, and answers at once
ROLES = (ONE_SHOT, DELIVERER, SERVE)
CLOSE_WAIT = 1.0  # once the outcome is settled, a slow goodbye must not change it
# Called as the stream gets somewhere: "tls", "authenticated", "session", "roster".
Progress = Callable[["XmppSession", str], None]


def plan_session(
    cfg: Config, spool: Spool | None, recipients: Iterable[str], role: str
) -> SessionPlan:
    """The policy and presence mode of one session.

    Recipients (of this run, of the queued messages, of the `[[loginfo]]` rules) may
    always subscribe; anyone else must match `subscribers`. In the quiet `probe` mode a
    run announces only when no run has within `announce_interval` (the spool keeps the
    stamp; one run wins the turn), so stored subscription requests wait at most that long.
    """
    if role not in ROLES:
        raise ValueError(f"unknown session role {role!r}")
    known = {jid.lower() for jid in recipients}
    known |= {jid for rule in cfg.loginfo for jid in rule.to}
    policy = SubscriptionPolicy(cfg.allowed_subscribers, cfg.max_roster, frozenset(known))
    if role == SERVE or cfg.presence == "announce" or spool is None:
        announce = True  # no stamp to keep without a spool: every run answers
    else:
        announce = spool.announce_due(cfg.announce_interval)
    if announce and cfg.presence != "announce":
        log.info("announcing presence: subscription requests stored by the server are answered")
    step = cfg.timeout if role == ONE_SHOT else cfg.step_timeout
    stamp = spool.mark_announced if spool is not None else _nothing
    return SessionPlan(policy, announce, step, stamp)


def _nothing() -> None:
    pass


def new_session(cfg: Config, plan: SessionPlan, progress: Progress | None = None
                ) -> XmppSession:
    """A session not connected yet (it must be built inside the running loop)."""
    from cvsmsg.xmpp import XmppSession  # slixmpp is heavy: only once we really connect

    session = XmppSession(cfg, plan)
    if progress is not None:
        session.on_progress(lambda event: progress(session, event))
    return session


async def login(
    session: XmppSession, recipients: Collection[str] = (), timeout: float | None = None
) -> XmppSession:
    """Log `session` in and learn the recipients' presence. On any failure the socket is
    closed before the error is raised. `timeout` bounds the login (long-lived paths; a
    one-shot run's whole deadline is `OneShot`)."""
    try:
        if timeout is None:
            await session.open(recipients)
        else:
            async with asyncio.timeout(timeout):
                await session.open(recipients)
    except TimeoutError:
        await end_session(session, clean=False)
        raise DeadlineError(f"timed out after {timeout:g} s while {session.phase}") from None
    except BaseException:
        await end_session(session, clean=False)  # never awaits: safe while cancelled
        raise
    session.phase = "connected"
    session.opened_at = asyncio.get_running_loop().time()
    if session.announced:
        session.plan.announced()
    return session


async def open_session(
    cfg: Config, plan: SessionPlan, recipients: Collection[str] = (), *,
    timeout: float | None = None,
) -> XmppSession:
    """A new session, logged in (see `login`)."""
    return await login(new_session(cfg, plan), recipients, timeout)


async def end_session(session: XmppSession, *, clean: bool, wait: float = 2.0) -> None:
    """Close (or abort) the stream and stop slixmpp's send-filter task, so a long-lived
    process that reconnects does not leave one pending task per connection behind."""
    if clean:
        await session.close(wait=wait)
    else:
        session.abort()
    await cancel_send_filters(session.client, wait=1.0 if clean else 0.0)


class OneShot:
    """A one-shot command's session under one deadline: `timeout` bounds the whole run,
    and running out says which phase it was in.

        async with OneShot(cfg, spool, recipients) as run:
            session = await run.open()
            ...
        await run.close()
    """

    def __init__(
        self, cfg: Config, spool: Spool | None, recipients: Collection[str],
        progress: Progress | None = None, deadline: float | None = None,
    ) -> None:
        """`deadline` (loop time): a run that needs a second session keeps its first one's."""
        self.cfg = cfg
        self.recipients = recipients
        self.plan = plan_session(cfg, spool, recipients, ONE_SHOT)
        self.progress = progress
        self.session: XmppSession | None = None
        self._loop = asyncio.get_running_loop()
        self.deadline = self._loop.time() + cfg.timeout if deadline is None else deadline
        self._timeout = asyncio.timeout_at(self.deadline)

    def remaining(self) -> float:
        """Seconds left before the run's deadline."""
        return self.deadline - self._loop.time()

    async def open(self) -> XmppSession:
        """Log in; from now on a deadline names the session's phase."""
        self.session = new_session(self.cfg, self.plan, self.progress)
        return await login(self.session, self.recipients)

    async def __aenter__(self) -> OneShot:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            phase = self.session.phase if self.session is not None else "starting"
            self._abort()
            raise DeadlineError(f"timed out after {self.cfg.timeout:g} s while {phase}") from None
        if exc_type is not None:
            self._abort()

    def _abort(self) -> None:
        if self.session is not None:
            self.session.abort()

    async def close(self) -> None:
        """Close the stream after the outcome is settled, with its own short bound."""
        if self.session is not None:
            await end_session(self.session, clean=True, wait=CLOSE_WAIT)


class Backoff:
    """The wait before the next login of a long-lived path: doubling from `first` up to
    `cap`, and back to `first` only after a session made progress. A session that logs in
    and dies at once (a message the server keeps refusing, a flapping server) must not turn
    into a reconnect storm."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def next(self) -> float:
        """The wait to use now; the following one is longer."""
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return delay

    def reset(self) -> None:
        """A session got work done: the next failure starts from `first` again."""
        self._next = self.first
