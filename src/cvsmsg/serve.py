"""`cvsmsg serve`: stay connected, deliver each queued message the moment its recipient
is available and not dnd, and take over every `notify` hand-off while running."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import TYPE_CHECKING

from cvsmsg.config import Config
from cvsmsg.drain import POLL_SECONDS, Drainer, Waker
from cvsmsg.errors import (
    SESSION_LOST,
    AuthError,
    ConnectError,
    CvsmsgError,
    DeadlineError,
    SpoolError,
)
from cvsmsg.sessions import SERVE, Backoff, end_session, open_session, plan_session
from cvsmsg.spool import DELIVER_LOCK, SERVE_LOCK, Spool

if TYPE_CHECKING:
    from cvsmsg.xmpp import XmppSession

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
STABLE_SECONDS = 60.0  # a session that lived this long resets the back-off
KEEPALIVE_SECONDS = 60.0  # a ping this often notices a dead connection
LOCK_WAIT_SECONDS = 2.0  # a `notify` probing serve.lock holds it for microseconds


class AlreadyRunning(CvsmsgError):
    """Another `cvsmsg serve` holds the spool."""


async def _acquire(spool: Spool, name: str, stop: asyncio.Event, patience: float | None
                   ) -> int | None:
    """Poll for the lock: None if `stop` is set or `patience` runs out first."""
    loop = asyncio.get_running_loop()
    deadline = None if patience is None else loop.time() + patience
    while not stop.is_set():
        fd = spool.try_lock(name)
        if fd is not None:
            Spool.write_pid(fd)
            return fd
        if deadline is not None and loop.time() > deadline:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return None


async def serve(cfg: Config, spool: Spool, stop: asyncio.Event) -> None:
    """Run until `stop` is set: connect (reconnecting with back-off), keep the roster's
    presence, and drain the spool whenever a hand-off or a presence change wakes us."""
    spool.ensure()
    serve_fd = await _acquire(spool, SERVE_LOCK, stop, LOCK_WAIT_SECONDS)
    if serve_fd is None:
        if stop.is_set():
            return
        pid = spool.holder(SERVE_LOCK)
        raise AlreadyRunning(
            f"cvsmsg serve is already running for {spool.path}"
            + (f" (pid {pid})" if pid else "")
        )
    deliver_fd: int | None = None
    try:
        if spool.lock_held(DELIVER_LOCK):
            log.info("waiting for the background deliverer to finish")
        deliver_fd = await _acquire(spool, DELIVER_LOCK, stop, None)
        if deliver_fd is None:
            return
        spool.remove_stale_temp()
        await _serve_locked(cfg, spool, stop)
    finally:
        for fd in (deliver_fd, serve_fd):
            if fd is not None:
                with contextlib.suppress(OSError, SpoolError):
                    Spool.clear_pid(fd)
                os.close(fd)
        log.info("stopped")


async def _serve_locked(cfg: Config, spool: Spool, stop: asyncio.Event) -> None:
    waker = Waker(spool)
    stopper = asyncio.ensure_future(_relay(stop, waker))
    drainer = Drainer(cfg, spool)
    drainer.stopping = stop.is_set
    backoff = Backoff(BACKOFF_FIRST, BACKOFF_MAX)
    try:
        while not stop.is_set():
            drainer.refresh()
            delivered_before = drainer.delivered_total
            try:
                plan = plan_session(cfg, spool, drainer.recipients(), SERVE)
                session = await open_session(cfg, plan, drainer.recipients(),
                                             timeout=cfg.step_timeout)
            except (ConnectError, DeadlineError, AuthError) as exc:
                if drainer.pending:
                    drainer.mark_failed(str(exc))
                failure = f"{exc}"
            else:
                log.info("connected as %s; watching %s", session.client.boundjid, spool.path)
                drainer.new_session(session)

                def on_presence(jid: str) -> None:
                    if any(e.recipient == jid for e in drainer.pending.values()):
                        waker.event.set()

                session.presence_listener = on_presence
                try:
                    await _serve_session(cfg, drainer, waker, session, stop)
                    await end_session(session, clean=True)
                    continue
                except SESSION_LOST as exc:
                    # a message's fault never stops serve: the drainer has counted it
                    await end_session(session, clean=False)
                    failure = f"connection lost: {exc}"
                except BaseException:
                    session.abort()
                    raise
                if drainer.delivered_total > delivered_before or _lived(session):
                    backoff.reset()
            delay = backoff.next()
            log.warning("%s; reconnecting in %g s", failure, delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        stopper.cancel()
        waker.close()


def _lived(session: XmppSession) -> bool:
    """A session that stayed up a while was not killed by what it did at once."""
    return asyncio.get_running_loop().time() - session.opened_at >= STABLE_SECONDS


async def _relay(stop: asyncio.Event, waker: Waker) -> None:
    await stop.wait()
    waker.event.set()


async def _serve_session(
    cfg: Config, drainer: Drainer, waker: Waker, session: XmppSession, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    last_ping = loop.time()
    while not stop.is_set():
        drainer.refresh()
        stats = await drainer.step()
        waker.watch_exits(drainer.running)
        if stop.is_set():
            return
        if loop.time() - last_ping >= KEEPALIVE_SECONDS:
            try:
                async with asyncio.timeout(cfg.step_timeout):
                    await session.ping()
            except TimeoutError:
                raise DeadlineError(
                    f"no answer to a ping within {cfg.step_timeout:g} s"
                ) from None
            last_ping = loop.time()
        session.phase = "waiting for work"
        wait = 2 * POLL_SECONDS
        if stats.next_ready is not None:
            wait = min(wait, max(stats.next_ready - drainer.clock(), 0.01))
        await waker.wait(session, wait)


def run_serve(cfg: Config, spool: Spool) -> None:
    """Blocking entry point for the CLI: SIGTERM and SIGINT stop it cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(cfg, spool, stop)

    asyncio.run(main())
