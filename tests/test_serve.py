"""`cvsmsg serve`: stays connected, takes every notify hand-off, delivers a queued message
the moment its recipient is available and not dnd; SIGTERM, kill -9 and a server restart."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cvsmsg.spool import Spool
from tests.conftest import cvsmsg_command
from tests.harness.prosody import Prosody
from tests.harness.recipient import Person, befriend
from tests.spoolhelp import (
    cvsmsg,
    lock_pid,
    notice,
    queue_rows,
    spool_files,
    wait_for,
)


class Serve:
    """One `cvsmsg serve` process and its log (its stderr, as the journal would get it)."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.fh = log.open("ab")
        self.proc = subprocess.Popen(
            [*cvsmsg_command(), "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL, stdout=self.fh, stderr=self.fh,
        )

    def text(self) -> str:
        return self.log.read_text()

    def wait_connected(self, count: int = 1, timeout: float = 20) -> None:
        assert wait_for(lambda: self.text().count("cvsmsg: connected as ") >= count, timeout), \
            self.text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self.fh.close()
        return code


@pytest.fixture
def serve(tmp_path):
    """Factory: start `cvsmsg serve` for a config and wait until it is connected."""
    started: list[Serve] = []

    def start(config: Path, *, connected: bool = True) -> Serve:
        s = Serve(config, tmp_path / f"serve-{len(started)}.log")
        started.append(s)
        if connected:
            s.wait_connected()
        return s

    yield start
    for s in started:
        with contextlib.suppress(Exception):
            if s.proc.poll() is None:
                s.proc.kill()
                s.proc.wait(5)


def test_notify_hands_off_to_serve_which_delivers(bot, person, serve, spool_dir):
    alice = person("")
    server = serve(bot.config)  # the config says delivery = "direct": serve takes over
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for {alice.jid}: handed to cvsmsg serve\n"
    [msg] = alice.wait_messages(1, 10)
    assert msg.body == notice().rstrip("\n")
    assert wait_for(lambda: spool_files(spool_dir) == [], 5)
    listing = cvsmsg("queue", "--config", str(bot.config)).stdout
    assert f"cvsmsg serve is running (pid {server.proc.pid})" in listing
    assert server.stop() == 0
    assert server.text().endswith("cvsmsg: stopped\n")


def test_serve_with_a_server_configured_loads_no_resolver(bot, serve):
    """A daemon keeps what it imports for months: with `server` set it needs no SRV
    resolver (aiodns and pycares' C library), nor pygments (about 4 MB of RSS together)."""
    server = serve(bot.config)
    maps = Path(f"/proc/{server.proc.pid}/maps").read_text()
    assert "_cares" not in maps
    assert server.stop() == 0


def test_serve_delivers_within_a_second_of_the_presence_change(bot, person, serve):
    alice = person("dnd")
    serve(bot.config)
    assert bot.run(alice.jid).returncode == 0  # handed to serve
    assert wait_for(lambda: [r[3:] for r in queue_rows(bot.config)] == [
        ["1", "dnd (resource desk)"]], 10)
    assert alice.settle() == []
    alice.online("")  # returns once the server has processed her presence
    back = time.monotonic()
    [msg] = alice.wait_messages(1, 5)
    delay = time.monotonic() - back
    assert delay < 1.0, f"delivered {delay:.2f} s after she became available"
    assert msg.body.startswith(notice().rstrip("\n") + "\n\n[queued ")
    assert queue_rows(bot.config) == []


def test_sigterm_stops_cleanly_and_notify_goes_direct_again(bot, person, serve, spool_dir):
    alice = person("")
    server = serve(bot.config)
    assert server.stop() == 0
    log = server.text()
    assert "Traceback" not in log and "error" not in log, log
    assert lock_pid(spool_dir, "serve") is None  # the pid is cleared from the lock file
    result = bot.run(alice.jid)
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"


def test_a_second_serve_refuses_to_start(bot, serve, spool_dir):
    first = serve(bot.config)
    second = cvsmsg("serve", "--config", str(bot.config), timeout=20)
    assert second.returncode == 3
    assert second.stderr == (f"cvsmsg: error: cvsmsg serve is already running for "
                             f"{spool_dir} (pid {first.proc.pid})\n")
    assert first.proc.poll() is None


def test_kill_9_of_serve_mid_drain(bot, person, prosody, tmp_path, serve, spool_dir):
    config = prosody.write_cvsmsg_config(tmp_path / "k.toml", bot.jid, bot.password,
                                         coalesce_seconds=0)
    alice = person("dnd")
    spool = Spool(spool_dir)
    total = 300
    for i in range(total):  # queued while she was dnd: written with the library for speed
        spool.add(alice.jid, "CVS Watch Alarm", notice(f"f{i:03}.txt").rstrip("\n"),
                  attempts=1, reason="dnd (resource desk)")
    first = serve(config)
    alice.online("")  # serve starts draining at once
    assert wait_for(lambda: len(spool_files(spool_dir)) < total - 20, 20, step=0.002)
    first.proc.kill()
    first.proc.wait(5)
    left = len(spool_files(spool_dir))
    assert 0 < left < total, "the drain should have been cut in the middle"

    serve(config)  # systemd restarts it
    assert wait_for(lambda: spool_files(spool_dir) == [], 30)
    expected = {f"f{i:03}.txt" for i in range(total)}

    def names() -> list[str]:
        return [m.body.splitlines()[0].split()[1] for m in alice.settle()]

    assert wait_for(lambda: set(names()) == expected, 15)
    counts = collections.Counter(names())
    assert sum(n - 1 for n in counts.values()) <= 1, {k: n for k, n in counts.items() if n > 1}


def test_serve_reconnects_after_a_server_restart(tmp_path, loops, serve, spool_dir):
    own = Prosody(tmp_path / "own-prosody")
    own.start()
    try:
        bot_jid = own.register("bot", "botpw")
        alice = Person(loops, own.register("alice", "alicepw"), "alicepw", own.port,
                       own.ca).online("")
        befriend(loops, bot_jid, "botpw", alice)
        config = own.write_cvsmsg_config(tmp_path / "own.toml", bot_jid, "botpw",
                                         coalesce_seconds=0.2)
        server = serve(config)
        own.stop()
        assert wait_for(lambda: "reconnecting" in server.text(), 15), server.text()
        result = cvsmsg("notify", "--config", str(config), alice.jid, input=notice())
        assert result.returncode == 0, result.stderr  # serve holds the spool: handed off
        assert "handed to cvsmsg serve" in result.stderr
        own.start()
        alice = Person(loops, alice.jid, "alicepw", own.port, own.ca).online("")
        server.wait_connected(2, timeout=40)  # back-off is at most a minute; here seconds
        [msg] = alice.wait_messages(1, 10)
        assert msg.body.startswith(notice().rstrip("\n"))
        assert server.stop() == 0
        alice.offline()
    finally:
        own.stop()
    assert os.path.exists(spool_dir)


def test_example_systemd_unit(tmp_path):
    """examples/cvsmsg.service runs `cvsmsg serve` on the default spool, and systemd
    accepts every line of it."""
    import shutil

    from cvsmsg.spool import SYSTEM_SPOOL_DIR
    from tests.harness.cvsrepo import cvsmsg_script

    unit = (Path(__file__).resolve().parent.parent / "examples" / "cvsmsg.service").read_text()
    [exec_start] = [ln for ln in unit.splitlines() if ln.startswith("ExecStart=")]
    argv = exec_start.removeprefix("ExecStart=").split()
    assert argv[1:] == ["serve", "--config", "/etc/cvsmsg/config.toml"]
    assert f"ReadWritePaths={SYSTEM_SPOOL_DIR}\n" in unit
    assert cvsmsg("serve", "--help").returncode == 0
    if shutil.which("systemd-analyze") is None:
        return  # the checks above still ran
    copy = tmp_path / "cvsmsg.service"
    copy.write_text(unit.replace(argv[0], str(cvsmsg_script())))
    verify = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                            text=True, timeout=60)
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")


def test_what_serve_holds_does_not_grow_with_deliveries(bot, person, tmp_path):
    """serve runs for months: after 200 more deliveries through one session, slixmpp's
    handlers, waiters and scheduled events, the XEP-0198 queue, the loop's tasks and the
    drainer's bookkeeping hold exactly what they held after the first 20."""
    import asyncio

    from cvsmsg.config import load_config
    from cvsmsg.drain import Drainer, Waker
    from cvsmsg.sessions import SERVE, end_session, open_session, plan_session

    alice = person("")
    cfg = load_config(bot.prosody.write_cvsmsg_config(
        tmp_path / "serve.toml", bot.jid, bot.password, coalesce_seconds=0), env={})
    spool = Spool(tmp_path / "serve-spool", shared=False).ensure()

    def held(session, drainer) -> dict[str, int]:
        client = session.client
        return {
            "stream handlers": len(client._XMLStream__handlers),
            "event handlers": sum(map(len, client._XMLStream__event_handlers.values())),
            "scheduled events": len(client.scheduled_events),
            "unacked stanzas": len(client.plugin["xep_0198"].unacked_queue),
            "tasks": len(asyncio.all_tasks()),
            "bounces": len(session.bounces),
            "drainer ids": len(drainer.pending) + len(drainer.first_seen)
            + len(drainer._counted),
        }

    async def body() -> tuple[dict[str, int], dict[str, int]]:
        waker = Waker(spool)
        drainer = Drainer(cfg, spool)
        drainer.refresh()
        session = await open_session(cfg, plan_session(cfg, spool, [alice.jid], SERVE),
                                     [alice.jid], timeout=cfg.step_timeout)
        drainer.new_session(session)
        try:
            snapshots = []
            for rounds in (20, 200):
                for i in range(rounds):
                    spool.add(alice.jid, "cvs", notice(f"m{i}.txt"), cvs_user="bob")
                    spool.wake()
                    await waker.wait(session, 5)  # serve's loop: woken, refresh, step
                    drainer.refresh()
                    stats = await drainer.step()
                    assert stats.delivered == {alice.jid: 1}
                drainer.refresh()  # serve's next pass forgets the delivered ids
                snapshots.append(held(session, drainer))
            return snapshots[0], snapshots[1]
        finally:
            await end_session(session, clean=True)
            waker.close()

    first, later = asyncio.run(asyncio.wait_for(body(), 60))
    assert later == first
    assert first["unacked stanzas"] == 0 and first["drainer ids"] == 0
    assert wait_for(lambda: len(alice.messages) == 220)
