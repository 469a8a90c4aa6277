"""`delivery = "background"`: notify only writes the spool and returns; one detached
deliverer drains it in one session, coalescing bursts into digests."""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess

import pytest

from cvsmsg.spool import Spool
from tests.conftest import cvsmsg_command
from tests.harness.cvsrepo import notify_line
from tests.spoolhelp import (
    assert_every_watcher_got_every_commit,
    commit_hundred_watched_files,
    first_lines,
    lock_pid,
    notice,
    pid_alive,
    queue_rows,
    spool_files,
    wait_for,
)


@pytest.fixture
def bg_config(bot, prosody, tmp_path):
    return prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                       delivery="background", coalesce_seconds=0.5)


def test_hand_off_returns_and_a_detached_deliverer_delivers(bot, person, bg_config,
                                                            spool_dir):
    alice = person("")
    result = bot.run(alice.jid, config=bg_config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for {alice.jid}: background delivery\n"
    assert result.stdout == ""
    assert wait_for(lambda: lock_pid(spool_dir, "deliver"), 10)
    pid = lock_pid(spool_dir, "deliver")
    assert pid is not None
    # detached: its own session, nothing of CVS's pipes or cwd
    assert os.getsid(pid) == pid
    assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3
    assert os.readlink(f"/proc/{pid}/cwd") == "/"

    [msg] = alice.wait_messages(1, 15)
    assert (msg.sender, msg.subject, msg.body) == (bot.jid, "CVS Watch Alarm",
                                                   notice().rstrip("\n"))
    assert wait_for(lambda: not pid_alive(pid), 15), "the deliverer should linger, then exit"
    assert spool_files(spool_dir) == []
    log = (spool_dir / "deliver.log").read_text()
    assert f"cvsmsg[{pid}] INFO: delivered 1 notification(s) to {alice.jid}" in log
    assert bot.password not in log


def test_background_withheld_then_delivered_by_the_next_run(bot, person, bg_config,
                                                            spool_dir):
    alice = person("dnd")
    assert bot.run(alice.jid, config=bg_config, input=notice("a.txt")).returncode == 0
    # the deliverer decides like notify does: dnd, so it stays queued
    assert wait_for(lambda: [r[3:] for r in queue_rows(bg_config)] == [
        ["1", "dnd (resource desk)"]], 15)
    assert alice.settle() == []
    alice.online("")
    assert bot.run(alice.jid, config=bg_config, input=notice("b.txt")).returncode == 0
    assert wait_for(lambda: len(first_lines(alice.settle())) >= 2, 15)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    msgs = alice.settle()
    assert sorted(first_lines(msgs)) == ["proj a.txt", "proj b.txt"]  # each once
    late = next(m for m in msgs if "proj a.txt" in m.body)
    assert "queued " in late.body and ": dnd" in late.body and "resource" not in late.body


def test_concurrent_hand_offs_one_deliverer_every_message_once(bot, person, bg_config,
                                                               spool_dir):
    alice = person("")
    procs = [
        subprocess.Popen(
            [*cvsmsg_command(), "notify", "-q", "--config", str(bg_config), alice.jid],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(20)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(notice(f"f{i:02}.txt").encode(), timeout=30)
        assert (p.returncode, out, err) == (0, b"", b"")
    assert wait_for(lambda: len(first_lines(alice.settle())) >= 20, 20)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    msgs = alice.settle()
    assert sorted(first_lines(msgs)) == [f"proj f{i:02}.txt" for i in range(20)]
    assert len(msgs) <= 3, [m.subject for m in msgs]  # coalesced
    log = (spool_dir / "deliver.log").read_text()
    pids = set(re.findall(r"cvsmsg\[(\d+)\] INFO: delivered", log))
    assert len(pids) <= 2, log  # one deliverer (a second only if the first had left)


def test_kill_9_of_the_deliverer_mid_drain(bot, person, prosody, tmp_path, spool_dir):
    """At-least-once: after kill -9, the next run delivers the rest; only the one message
    in flight may arrive twice."""
    config = prosody.write_cvsmsg_config(tmp_path / "k.toml", bot.jid, bot.password,
                                         delivery="background", coalesce_seconds=0)
    alice = person("")
    spool = Spool(spool_dir)
    total = 300
    # queued earlier (e.g. while she was dnd): written with the library for speed
    for i in range(total):
        spool.add(alice.jid, "CVS Watch Alarm", notice(f"f{i:03}.txt").rstrip("\n"),
                  attempts=1, reason="dnd (resource desk)")
    assert bot.run(alice.jid, config=config, input=notice("last.txt")).returncode == 0
    assert wait_for(lambda: len(spool_files(spool_dir)) < total - 20, 20, step=0.002)
    pid = lock_pid(spool_dir, "deliver")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    left = len(spool_files(spool_dir))
    assert 0 < left < total, "the drain should have been cut in the middle"
    assert wait_for(lambda: not pid_alive(pid), 5)

    # the next CVS operation starts a new deliverer, which finishes the job
    assert bot.run(alice.jid, config=config, input=notice("next.txt")).returncode == 0
    assert wait_for(lambda: spool_files(spool_dir) == [], 30)
    expected = [f"proj f{i:03}.txt" for i in range(total)] + ["proj last.txt", "proj next.txt"]
    assert wait_for(lambda: set(first_lines(alice.settle())) == set(expected), 15)
    counts = collections.Counter(first_lines(alice.settle()))
    twice = {name: n for name, n in counts.items() if n > 1}
    assert sum(n - 1 for n in twice.values()) <= 1, twice  # at most the one in flight


def test_three_hundred_notifications_from_one_cvs_commit(bot, person, prosody, tmp_path,
                                                         spool_dir):
    """100 watched files × 3 watchers: CVS runs cvsmsg 300 times during `cvs commit`;
    every watcher gets every notification, in order, in a digest or two."""
    config = prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                         delivery="background")
    people = {f"w{i}": person("") for i in (1, 2, 3)}
    repo, result, elapsed = commit_hundred_watched_files(tmp_path, people, notify_line(config))

    assert result.returncode == 0, result.stderr
    handed = [line for line in result.stderr.splitlines() if line.startswith("cvsmsg:")]
    assert len(handed) == 300, result.stderr[-2000:]
    assert set(handed) == {f"cvsmsg: queued (watch) for {p.jid}: background delivery"
                           for p in people.values()}
    assert_every_watcher_got_every_commit(repo, people)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    print(f"\n300 hand-offs during cvs commit: {elapsed:.1f} s")


def test_hand_off_with_stdout_closed(bot, person, bg_config, spool_dir):
    """A closed stdout makes the lock land on fd 1: it must survive the /dev/null set-up."""
    alice = person("")
    script = " ".join([*cvsmsg_command(), "notify", "--config", str(bg_config), alice.jid])
    result = subprocess.run(["sh", "-c", f"exec {script} >&-"], input=notice().encode(),
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    [msg] = alice.wait_messages(1, 15)
    assert msg.body == notice().rstrip("\n")
