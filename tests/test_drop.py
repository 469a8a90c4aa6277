"""`cvsmsg-drop`, the POSIX-sh hand-off: a message written straight into the spool, in the
format cvsmsg writes, validated when the deliverer reads it. Real script, real deliverer,
real Prosody, real cvs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cvsmsg import paths, procs, spool
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
    small_tmpfs,
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
    assert [n for n in os.listdir(spool_dir) if n.startswith(".tmp-")] == []
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
    assert wait_for(lambda: list(spool_dir.glob("*.bad")), 10)
    [bad] = spool_dir.glob("*.bad")
    log = (spool_dir / "deliver.log").read_text()
    assert f"spool file {bad.with_suffix('.msg')} is invalid (invalid recipient address " \
           f"'bad<value'): renamed to {bad.name}" in log
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)


def test_reads_all_of_stdin_and_never_writes_stdout(tmp_path):
    """No deliverer here (we hold the lock): just the drop file, byte for byte."""
    spool = tmp_path / "spool"
    spool.mkdir()
    big = b"proj a.txt\n---\n" + b"x" * (2 << 20) + b"\n"
    with open(spool / "deliver.lock", "w") as lock:
        subprocess.run(["flock", "-n", str(lock.fileno())], pass_fds=[lock.fileno()],
                       check=True)
        proc = subprocess.Popen([str(drop_script()), "--spool", str(spool), "alice"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env={**os.environ, "LOGNAME": "bob"})
        out, err = proc.communicate(big, timeout=30)  # a broken pipe would raise here
    assert (proc.returncode, out, err) == (0, b"", b"")
    [name] = [n for n in os.listdir(spool) if n.endswith(".msg")]
    assert sorted(os.listdir(spool)) == sorted(["deliver.lock", name])  # no temp file left
    raw = (spool / name).read_bytes()
    head, _, body = raw.partition(b"\n\n")
    assert head.split(b"\n")[:3] == [b"cvsmsg-spool 2", b"recipient: alice", b"user: bob"]
    assert body == big  # byte for byte
    [entry] = Spool(spool, default_domain="example.org").entries()
    assert (entry.recipient, entry.cvs_user, entry.body) == (
        "alice@example.org", "bob", big.decode().rstrip("\n"))
    assert abs(entry.created - time.time()) < 30
    assert entry.id == name.removesuffix(".msg")
    assert (spool / name).stat().st_mode & 0o777 == 0o660


def test_usage_and_spool_errors_are_reported_after_reading_stdin(tmp_path):
    result = drop("--spool", str(tmp_path / "s"), input=b"y" * (1 << 20))
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.startswith(b"cvsmsg-drop: error: usage: cvsmsg-drop")
    (tmp_path / "file").write_text("")
    result = drop("--spool", str(tmp_path / "file" / "spool"), "alice",
                  input=b"y" * (1 << 20))
    assert (result.returncode, result.stdout, result.stderr) == (
        3, b"", f"cvsmsg-drop: error: cannot create directory {tmp_path}/file: File exists\n"
        .encode())


def test_three_hundred_notifications_from_one_cvs_commit_through_drop(
        bot, person, prosody, tmp_path, spool_dir):
    config = prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                         delivery="background")
    people = {f"w{i}": person("") for i in (1, 2, 3)}
    # as the README tells the admin (a root cvs run creates no spool: its group is root's)
    subprocess.run(["install", "-d", "-m", "3770", str(spool_dir)], check=True)
    # CVS runs it with a clean environment: the spool comes from --spool, as the config's
    # spool_dir is not the default (the sh script never reads the config)
    line = f"ALL {drop_script()} --spool {spool_dir} --config {config} %s"
    repo, result, elapsed = commit_hundred_watched_files(tmp_path, people, line)

    assert result.returncode == 0, result.stderr
    assert "cvsmsg" not in result.stderr  # the drop says nothing when all is well
    assert_every_watcher_got_every_commit(repo, people)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    print(f"\n300 drops during cvs commit: {elapsed:.1f} s")


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


def test_the_script_default_spool_is_the_system_spool():
    """The sh script hard-codes the system spool: it must not drift from paths.py."""
    text = drop_script().read_text()
    assert f"spool=${{CVSMSG_SPOOL_DIR:-{paths.SYSTEM_SPOOL_DIR}}}\n" in text
    for name in (paths.lock_name(paths.DELIVER_LOCK), paths.WAKE_FIFO, paths.MESSAGE_SUFFIX):
        assert name in text
    # the first line while writing, and the format's own: the last byte alone differs
    assert f"printf '{spool.WRITING.decode()}\\n" in text
    assert f"printf '{spool.MAGIC.decode()}' " in text
    assert spool.WRITING[:-1] == spool.MAGIC[:-1]


def test_a_full_spool_disk_says_so(tmp_path):
    """`cvsmsg-drop` names what failed (not a permissions guess) and leaves nothing."""
    with small_tmpfs(tmp_path / "small") as mnt:
        result = drop("--spool", str(mnt / "s"), "alice", input=b"x" * 100_000)
        assert (result.returncode, result.stdout, result.stderr) == (
            3, b"", f"cvsmsg-drop: error: cannot write to spool {mnt}/s: No space left on "
            "device\n".encode())
        assert os.listdir(mnt / "s") == []


def test_a_burst_goes_out_as_soon_as_the_dropping_cvs_has_exited(bot, person, prosody,
                                                                   tmp_path, spool_dir):
    """The drop records $CVS_PID (and its start time); the deliverer coalesces the burst
    while that process runs, however long, and sends it at once when it exits: not after
    the quiet window (30 s here)."""
    config = prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                         delivery="background", coalesce_seconds=30)
    alice = person("")
    cvs = subprocess.Popen(["sleep", "60"])  # stands in for the CVS process of a commit
    try:
        for name in ("a.txt", "b.txt", "c.txt"):
            result = drop("--config", str(config), alice.jid, input=notice(name),
                          env={"CVS_PID": str(cvs.pid)})
            assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        assert wait_for(lambda: lock_pid(spool_dir, "deliver"), 10)
        assert not wait_for(lambda: alice.settle(), 2)  # it runs: still coalescing
    finally:
        cvs.kill()
        cvs.wait()
    ended = time.monotonic()
    [msg] = alice.wait_messages(1, 15)
    assert time.monotonic() - ended < 5  # not the 30 s window
    assert first_lines([msg]) == ["proj a.txt", "proj b.txt", "proj c.txt"]  # one digest
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)


def test_a_live_recorded_holder_is_left_the_message_a_stale_one_is_not(tmp_path):
    """The deliverer writes `PID START` into deliver.lock; the drop starts nothing while
    that very process runs (it sees new messages by itself), and starts a deliverer when
    the record is stale: the process is gone, or its pid now is another process's, or it
    is some other live process (a group member wrote its pid there)."""
    spool = Spool(tmp_path / "spool").ensure()
    lock = spool.path / "deliver.lock"
    gone = subprocess.Popen(["sleep", "60"])
    stale = procs.identity(gone.pid).replace(":", " ")
    gone.kill()
    gone.wait()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                               "cvsmsg", "deliver", "--lock-fd", "9"])
    me = procs.identity(os.getpid())  # alive, but not a deliverer
    live = procs.identity(holder.pid)
    reused = f"{holder.pid} {int(live.split(':')[1]) + 1}"
    cases = ((live.replace(":", " "), False), (stale, True), (reused, True),
             (me.replace(":", " "), True))
    try:
        _drop_per_record(tmp_path, spool, lock, cases)
    finally:
        holder.kill()
        holder.wait()
    assert len(spool.entries()) == len(cases)


def _drop_per_record(tmp_path, spool, lock, cases):
    for record, starts in cases:
        lock.write_text(record + "\n")
        fake = tmp_path / "bin"  # a `cvsmsg` that only says it was started
        fake.mkdir(exist_ok=True)
        (fake / "cvsmsg-drop").write_bytes(drop_script().read_bytes())
        (fake / "cvsmsg-drop").chmod(0o755)
        (fake / "cvsmsg").write_text(f"#!/bin/sh\necho started >>{tmp_path}/started\n")
        (fake / "cvsmsg").chmod(0o755)
        (tmp_path / "started").unlink(missing_ok=True)
        result = subprocess.run([str(fake / "cvsmsg-drop"), "--spool", str(spool.path),
                                 "a@x"], input=b"hi\n", capture_output=True, timeout=30,
                                check=False)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
        assert wait_for(lambda: (tmp_path / "started").exists(), 5 if starts else 1) == starts
