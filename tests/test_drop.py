"""`cvsmsg-drop`, the POSIX-sh hand-off: a raw drop in SPOOL/incoming that the deliverer
validates and queues. Real script, real deliverer, real Prosody, real cvs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvsmsg.drops import parse_drop
from cvsmsg.spool import Spool
from tests.conftest import cvsmsg_command
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


def drop_script() -> Path:
    """cvsmsg-drop as installed next to cvsmsg (pip install puts it there)."""
    script = Path(sys.executable).with_name("cvsmsg-drop")
    assert script.exists(), "pip install -e . should install bin/cvsmsg-drop"
    return script


def drop(*args: str, input: str | bytes = notice(), env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[bytes]:
    data = input.encode() if isinstance(input, str) else input
    return subprocess.run([str(drop_script()), *args], input=data, capture_output=True,
                          env={**os.environ, **(env or {})}, timeout=30, check=False)


@pytest.fixture
def bg_config(bot, prosody, tmp_path):
    return prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                       delivery="background", coalesce_seconds=0.5)


def test_drop_reaches_an_online_recipient(bot, person, bg_config, spool_dir):
    alice = person("")
    result = drop("--config", str(bg_config), alice.jid)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert wait_for(lambda: lock_pid(spool_dir, "deliver"), 10)
    pid = lock_pid(spool_dir, "deliver")
    assert pid is not None
    assert os.getsid(pid) == pid  # detached, like the Python hand-off's deliverer
    assert [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in (0, 1, 2)] == ["/dev/null"] * 3
    [msg] = alice.wait_messages(1, 15)
    assert (msg.sender, msg.subject, msg.body) == (bot.jid, "CVS Watch Alarm",
                                                   notice().rstrip("\n"))
    assert wait_for(lambda: not pid_alive(pid), 15)
    assert spool_files(spool_dir) == []
    assert os.listdir(spool_dir / "incoming") == []
    log = (spool_dir / "deliver.log").read_text()
    assert f"delivered 1 notification(s) to {alice.jid}" in log


def test_drop_withheld_is_queued_and_delivered_later(bot, person, bg_config, spool_dir):
    alice = person("dnd")
    assert drop("--config", str(bg_config), alice.jid, input=notice("a.txt")).returncode == 0
    assert wait_for(lambda: [r[3:] for r in queue_rows(bg_config)] == [
        ["1", "dnd (resource desk)"]], 15)
    assert alice.settle() == []
    alice.online("")
    assert drop("--config", str(bg_config), alice.jid, input=notice("b.txt")).returncode == 0
    assert wait_for(lambda: len(first_lines(alice.settle())) >= 2, 15)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    assert sorted(first_lines(alice.settle())) == ["proj a.txt", "proj b.txt"]


def test_invalid_recipient_ends_as_bad_with_a_log_line(bot, person, bg_config, spool_dir):
    alice = person("")
    result = drop("--config", str(bg_config), "bad<value")
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert drop("--config", str(bg_config), alice.jid).returncode == 0
    alice.wait_messages(1, 15)  # the valid one still goes out
    incoming = spool_dir / "incoming"
    assert wait_for(lambda: [p.name for p in incoming.iterdir()
                             if p.name.endswith(".drop.bad")], 10)
    [bad] = [p for p in incoming.iterdir() if p.name.endswith(".bad")]
    log = (spool_dir / "deliver.log").read_text()
    assert f"cvsmsg-drop {bad.name.removesuffix('.bad')}: invalid recipient address " \
           f"'bad<value': renamed to {bad.name}" in log
    assert spool_files(spool_dir) == []


def test_reads_all_of_stdin_and_never_writes_stdout(tmp_path):
    """No deliverer here (we hold the lock): just the drop file, byte for byte."""
    spool = tmp_path / "spool"
    (spool / "incoming").mkdir(parents=True)
    big = b"proj a.txt\n---\n" + b"x" * (2 << 20) + b"\n"
    with open(spool / "deliver.lock", "w") as lock:
        subprocess.run(["flock", "-n", str(lock.fileno())], pass_fds=[lock.fileno()],
                       check=True)
        proc = subprocess.Popen([str(drop_script()), "--spool", str(spool), "alice"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "LOGNAME": "bob"})
        out, err = proc.communicate(big, timeout=30)  # a broken pipe would raise here
    assert (proc.returncode, out, err) == (0, b"", b"")
    [name] = os.listdir(spool / "incoming")
    assert name.endswith(".drop")
    recipient, user, when, body = parse_drop((spool / "incoming" / name).read_bytes())
    assert (recipient, user, body) == ("alice", "bob", big)
    assert abs(when - time.time()) < 30
    assert (spool / "incoming" / name).stat().st_mode & 0o777 == 0o660


def test_usage_and_spool_errors_are_reported_after_reading_stdin(tmp_path):
    result = drop("--spool", str(tmp_path / "s"), input=b"y" * (1 << 20))
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.startswith(b"cvsmsg-drop: error: usage: cvsmsg-drop")
    (tmp_path / "file").write_text("")
    result = drop("--spool", str(tmp_path / "file" / "spool"), "alice",
                  input=b"y" * (1 << 20))
    assert result.returncode == 3
    assert result.stdout == b""
    assert b"cvsmsg-drop: error: cannot create" in result.stderr


def test_three_hundred_notifications_from_one_cvs_commit_through_drop(
        bot, person, prosody, tmp_path, spool_dir):
    config = prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                         delivery="background")
    people = {f"w{i}": person("") for i in (1, 2, 3)}
    # CVS runs it with a clean environment: the spool comes from --spool, as the config's
    # spool_dir is not the default (the sh script never reads the config)
    line = f"ALL {drop_script()} --spool {spool_dir} --config {config} %s"
    repo, result, elapsed = commit_hundred_watched_files(tmp_path, people, line)

    assert result.returncode == 0, result.stderr
    assert "cvsmsg" not in result.stderr  # the drop says nothing when all is well
    assert_every_watcher_got_every_commit(repo, people)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    assert os.listdir(spool_dir / "incoming") == []
    print(f"\n300 drops during cvs commit: {elapsed:.1f} s")


def test_ingest_validates_each_drop(bg_config, spool_dir):
    """Without a server: good drops become messages (their time kept), the rest `.bad`."""
    from cvsmsg.config import load_config
    from cvsmsg.drops import ingest

    cfg = load_config(bg_config, os.environ)
    spool = Spool(spool_dir).ensure()
    incoming = spool_dir / "incoming"
    incoming.mkdir()
    head = "cvsmsg-drop 1\nrecipient: {r}\nuser: carol\ntime: 1700000000000000000\n\n"
    (incoming / "1-1.drop").write_text(head.format(r="alice@localhost") + "hello\n")
    (incoming / "2-1.drop").write_text(head.format(r="alice@localhost") + "")  # empty text
    (incoming / "3-1.drop").write_text("garbage\n")
    (incoming / "4-1.drop").write_bytes(head.format(r="bob@localhost").encode() + b"a\0b")
    (incoming / ".tmp-5-1").write_text("being written")
    assert ingest(cfg, spool) == 1
    [entry] = spool.entries()
    assert (entry.recipient, entry.body, entry.cvs_user, entry.created) == (
        "alice@localhost", "hello", "carol", 1700000000.0)
    assert sorted(os.listdir(incoming)) == [".tmp-5-1", "2-1.drop.bad", "3-1.drop.bad",
                                            "4-1.drop.bad"]


def test_serve_takes_drops_at_once(bot, person, spool_dir, tmp_path):
    """While `cvsmsg serve` holds the deliver lock, a drop wakes it through the FIFO."""
    alice = person("")
    log = tmp_path / "serve.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen([*cvsmsg_command(), "serve", "--config", str(bot.config)],
                                stdin=subprocess.DEVNULL, stdout=fh, stderr=fh)
    try:
        assert wait_for(lambda: "cvsmsg: connected as " in log.read_text(), 20), \
            log.read_text()
        assert wait_for(lambda: lock_pid(spool_dir, "deliver") == proc.pid, 10)
        started = time.monotonic()
        result = drop("--config", str(bot.config), alice.jid)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        [msg] = alice.wait_messages(1, 10)
        assert time.monotonic() - started < 3
        assert msg.body == notice().rstrip("\n")
        assert lock_pid(spool_dir, "deliver") == proc.pid  # no second deliverer
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
