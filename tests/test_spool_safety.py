"""The spool trusts nothing in its directory: one format for both producers, every field
validated when read, no link ever followed, the announce stamp. Real files, the real sh
hand-off; no server needed."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from cvsmsg import paths, procs
from cvsmsg.config import DEFAULT_SUBJECT, default_config_paths
from cvsmsg.errors import SpoolError
from cvsmsg.record import replace
from cvsmsg.spool import (
    DELIVER_LOCK,
    EMPTY_REAP_SECONDS,
    SERVE_LOCK,
    STALE_TMP_SECONDS,
    Spool,
    open_log_file,
)
from tests.spoolhelp import cvsmsg_log, notice
from tests.test_drop import drop_script

NOW_NS = 1_800_000_000_123_456_789


def run_drop(spool: Path, recipient: str, body: bytes, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([str(drop_script()), "--spool", str(spool), recipient], input=body,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=30,
                          check=False)


def fixed_date(tmp_path: Path) -> dict[str, str]:
    """A PATH where `date` always says NOW_NS: the sh script's names become predictable."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    (bindir / "date").write_text(f"#!/bin/sh\necho {NOW_NS}\n")
    (bindir / "date").chmod(0o755)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def drop_with_known_pid(spool: Path, tmp_path: Path, plant) -> subprocess.CompletedProcess:
    """Run cvsmsg-drop with a fixed clock, calling `plant(pid)` before it starts writing
    (it waits for a first stdin line, then execs the script under the same pid)."""
    proc = subprocess.Popen(
        ["sh", "-c", 'read go; exec "$0" --spool "$1" alice@x', str(drop_script()),
         str(spool)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, **fixed_date(tmp_path), "LOGNAME": "bob"})
    plant(proc.pid)
    out, err = proc.communicate(b"go\n" + notice().encode(), timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def drop_id(pid: int, micros_extra: int = 0) -> str:
    return f"{NOW_NS // 1000 + micros_extra:013x}-{pid:06x}"


# -- one format ---------------------------------------------------------------------------


def test_sh_and_python_write_the_same_messages(tmp_path):
    spool = Spool(tmp_path / "spool", default_domain="example.org").ensure()
    result = run_drop(spool.path, "alice \r", notice().encode(), {"LOGNAME": "bob"})
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    [from_sh] = spool.entries()
    from_py = spool.add("alice@example.org", DEFAULT_SUBJECT, notice().rstrip("\n"),
                        cvs_user="bob")
    assert spool.ids() == [from_sh.id, from_py.id]  # sortable by time, whoever wrote it
    assert replace(from_sh, id="", created=0) == replace(from_py, id="", created=0)
    assert from_sh.recipient == "alice@example.org"  # validated (and completed) when read
    assert abs(from_sh.created - time.time()) < 30
    assert spool.read(from_py.id) == from_py
    for entry in (from_sh, from_py):
        raw = spool.file_of(entry.id).read_bytes()
        assert raw.startswith(b"cvsmsg-spool 2\nrecipient: alice")
        assert raw.endswith(b"\n\n" + notice().encode())


def test_sh_and_python_name_the_dropping_cvs_process_alike(tmp_path):
    """$CVS_PID and its start time (procs.py): the header a burst's early end reads."""
    spool = Spool(tmp_path / "spool", default_domain="example.org").ensure()
    env = {"LOGNAME": "bob", "CVS_PID": str(os.getpid())}
    result = run_drop(spool.path, "alice", notice().encode(), env)
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    [from_sh] = spool.entries()
    from_py = spool.add("alice@example.org", DEFAULT_SUBJECT, notice().rstrip("\n"),
                        cvs_user="bob", dropper=procs.dropper(env))
    assert from_sh.dropper == procs.identity(os.getpid()) != ""
    assert replace(from_sh, id="", created=0) == replace(from_py, id="", created=0)
    result = run_drop(spool.path, "alice", b"hi\n", {"CVS_PID": "1x; echo"})  # not a pid
    assert spool.entries()[-1].dropper == ""


def test_header_values_stay_one_line(tmp_path):
    spool = Spool(tmp_path)
    e = spool.add("a@x", "two\nlines", "body", cvs_user="evil\ntime: 1", reason="r\nattempts: 9")
    assert spool.read(e.id) == e
    assert (e.subject, e.cvs_user, e.reason, e.attempts) == (
        "two lines", "evil time: 1", "r attempts: 9", 0)
    run_drop(tmp_path, "a@x\nattempts: 5", b"hi\n", {"LOGNAME": "x\ntype: chat"})
    assert spool.entries() == [e]
    [bad] = tmp_path.glob("*.bad")  # a space inside the address: invalid, set aside
    assert b"recipient: a@x attempts: 5\nuser: x type: chat\n" in bad.read_bytes()


def test_an_existing_message_is_never_overwritten(tmp_path, monkeypatch):
    spool = Spool(tmp_path).ensure()
    taken = spool.file_of("0000000000001-000001")
    taken.write_bytes(b"precious")
    ids = iter(["0000000000001-000001", "0000000000001-000002"])
    monkeypatch.setattr("cvsmsg.spool.new_id", lambda _ns=None: next(ids))
    e = spool.add("a@x", "s", "b")
    assert e.id == "0000000000001-000002"
    assert taken.read_bytes() == b"precious"

    def plant(pid: int) -> None:
        spool.file_of(drop_id(pid)).write_bytes(b"also precious")
        planted.append(pid)

    planted: list[int] = []
    result = drop_with_known_pid(tmp_path, tmp_path, plant)
    assert (result.returncode, result.stderr) == (0, b"")
    [pid] = planted
    assert spool.file_of(drop_id(pid)).read_bytes() == b"also precious"
    assert spool.file_of(drop_id(pid, 1)).read_bytes().endswith(notice().encode())


# -- validation ---------------------------------------------------------------------------

GOOD_HEAD = "cvsmsg-spool 2\nrecipient: a@x\nuser: bob\ntime: 1700000000000000000\n"


@pytest.mark.parametrize(("content", "why"), [
    (GOOD_HEAD.replace("1700000000000000000", "nan") + "\nhi\n", "bad time 'nan'"),
    (GOOD_HEAD.replace("1700000000000000000", "inf") + "\nhi\n", "bad time 'inf'"),
    (GOOD_HEAD.replace("1700000000000000000", "-1") + "\nhi\n", "bad time '-1'"),
    (GOOD_HEAD.replace("1700000000000000000", "1" * 21) + "\nhi\n", f"bad time '{'1' * 21}'"),
    (GOOD_HEAD.replace("a@x", "bad<value") + "\nhi\n", "invalid recipient address 'bad<value'"),
    (GOOD_HEAD.replace("a@x", "") + "\nhi\n", "empty recipient address (check CVSROOT/users)"),
    (GOOD_HEAD + "attempts: 99999999\n\nhi\n", "bad attempts '99999999'"),
    (GOOD_HEAD + "attempts: -1\n\nhi\n", "bad attempts '-1'"),
    (GOOD_HEAD + "type: groupchat\n\nhi\n", "bad type 'groupchat'"),
    (GOOD_HEAD + "last-attempt: 1e9\n\nhi\n", "bad last-attempt '1e9'"),
    (GOOD_HEAD + "time: 1\n\nhi\n", "header 'time' given twice"),
    (GOOD_HEAD + "x-evil: 1\n\nhi\n", "bad header line 'x-evil: 1'"),
    (GOOD_HEAD + "reason: a\rb\n\nhi\n", "control character in header 'reason'"),
    ("cvsmsg-spool 2\nrecipient: a@x\n\nhi\n", "no 'time' header"),
    ("cvsmsg-spool 2\ntime: 1\n\nhi\n", "no 'recipient' header"),
    (GOOD_HEAD + "hi\n\nbody\n", "bad header line 'hi'"),
    (GOOD_HEAD + "body without a header end\n", "no header (or no empty line after it)"),
    ('{"v": 1, "recipient": "a@x"}\n', "no header (or no empty line after it)"),
    ("cvsmsg-drop 1\n" + GOOD_HEAD[15:] + "\nhi\n",
     "not a cvsmsg spool file (first line b'cvsmsg-drop 1')"),
    (GOOD_HEAD + "\n\n\n", "the message is empty; nothing was sent"),
    (GOOD_HEAD + "\na\0b\n", "input is binary (it contains NUL bytes); nothing was sent"),
])
def test_invalid_files_are_set_aside_and_the_rest_flows(tmp_path, caplog, content, why):
    spool = Spool(tmp_path)
    first = spool.add("a@x", "s", "first")
    bad = tmp_path / "0000000000002-000000.msg"
    bad.write_bytes(content.encode())
    last = spool.add("a@x", "s", "last")
    assert [e.body for e in spool.entries()] == ["first", "last"]
    assert cvsmsg_log(caplog) == [f"spool file {bad} is invalid ({why}): renamed to {bad.stem}.bad"]
    assert bad.with_suffix(".bad").read_bytes() == content.encode()
    with spool.claim(first.id) as claim:  # claims skip it too
        assert claim is not None
    assert spool.ids() == [first.id, last.id]


def test_times_ahead_are_taken_as_now(tmp_path, caplog):
    spool = Spool(tmp_path, clock=lambda: 1_700_000_000.0)
    ahead = 1_700_000_000 + 2 * 86400
    (tmp_path / "0000000000003-000000.msg").write_text(
        GOOD_HEAD.replace("1700000000000000000", f"{ahead}000000000") + "\nhi\n")
    [e] = spool.entries()
    assert e.created == 1_700_000_000.0
    assert cvsmsg_log(caplog) == ["spool file 0000000000003-000000: time is 172800 s in the "
                               "future: taken as now"]
    with spool.claim(e.id) as claim:  # a rewrite keeps the sane time
        assert claim is not None
        claim.update(attempts=1)
    assert spool.read(e.id).created == 1_700_000_000.0  # type: ignore[union-attr]


def test_missing_optional_fields_come_from_the_config(tmp_path):
    spool = Spool(tmp_path, default_domain="example.org", subject="Commit", message_type="chat")
    (tmp_path / "0000000000004-000000.msg").write_text(
        GOOD_HEAD.replace("a@x", "alice") + "\nhi\n")
    [e] = spool.entries()
    assert (e.recipient, e.subject, e.type, e.attempts, e.reason, e.last_attempt) == (
        "alice@example.org", "Commit", "chat", 0, "", None)


def test_an_emptied_message_is_a_delivered_one(tmp_path):
    """What a group member who cannot delete another's file (sticky spool) leaves."""
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b")
    spool.file_of(e.id).write_bytes(b"")
    assert spool.ids() == [] and spool.entries() == []
    # kept a while: a fresh empty file may be cvsmsg-drop's, created and not yet written
    assert spool.file_of(e.id).exists()
    old = time.time() - EMPTY_REAP_SECONDS - 1
    os.utime(spool.file_of(e.id), (old, old))
    assert spool.ids() == []
    assert not spool.file_of(e.id).exists()  # reaped by whoever may


def test_a_message_cvsmsg_drop_is_still_writing_is_skipped(tmp_path):
    """cvsmsg-drop writes ID.msg in place: `cvsmsg-spool -` until it is whole. Readers skip
    it (never set aside, never half sent), see it once whole, and remove one left
    unfinished for an hour (its writer was killed)."""
    spool = Spool(tmp_path)
    path = spool.file_of("0000000000001-000001")
    path.write_bytes(GOOD_HEAD.replace("spool 2", "spool -").encode() + b"\nhalf a mess")
    assert spool.ids() == [] and spool.entries() == []
    assert spool.read(path.stem) is None and spool.claim(path.stem) is None  # by name
    with path.open("r+b") as fh:  # what the drop does when the message is whole
        fh.write(b"cvsmsg-spool 2")
    [entry] = spool.entries()
    assert (entry.id, entry.body) == ("0000000000001-000001", "half a mess")
    assert list(tmp_path.glob("*.bad")) == []
    stale = spool.file_of("0000000000002-000001")
    stale.write_bytes(GOOD_HEAD.replace("spool 2", "spool -").encode() + b"\nkilled")
    old = time.time() - STALE_TMP_SECONDS - 1
    os.utime(stale, (old, old))
    assert spool.ids() == ["0000000000001-000001"]
    assert not stale.exists()


# -- links planted in the spool -------------------------------------------------------------


def victim(tmp_path: Path) -> tuple[Path, tuple[bytes, int, int]]:
    """Another user's precious file outside the spool, and its (content, mode, mtime)."""
    path = tmp_path / "home" / "precious"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"precious data\n")
    path.chmod(0o604)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path, state(path)


def state(path: Path) -> tuple[bytes, int, int]:
    st = path.stat()
    return path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_mtime_ns


NAMES = ["deliver.lock", "serve.lock", "wake", "announce", "deliver.log",
         "0000000000005-000000.msg"]


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_links_in_the_spool_are_never_followed(tmp_path, caplog, how):
    caplog.set_level(logging.DEBUG)
    spool = Spool(tmp_path / "spool").ensure()
    target, before = victim(tmp_path)
    for name in NAMES:
        if how == "symlink":
            (spool.path / name).symlink_to(target)
        else:
            os.link(target, spool.path / name)
    good = spool.add("a@x", "s", "b")

    for name in (DELIVER_LOCK, SERVE_LOCK):
        with pytest.raises(SpoolError, match=rf"{spool.path}/{name}\.lock is (a symbolic link|"
                                             "not a regular file with a single link)"):
            spool.try_lock(name)
        assert spool.holder(name) is None
    assert not spool.lock_held(DELIVER_LOCK) and not spool.serve_running()
    with pytest.raises(SpoolError, match=r"wake is (a symbolic link|not a FIFO)"):
        spool.open_wake_fifo()
    spool.wake()
    with pytest.raises(SpoolError, match=r"deliver\.log is (a symbolic link|not a regular file)"):
        spool.open_log()
    with pytest.raises(SpoolError, match=r"deliver\.log is (a symbolic link|not a regular file)"):
        open_log_file(spool.path / "deliver.log")
    assert spool.announce_due(3600) is True  # unusable stamp: announce anyway
    spool.mark_announced()
    if how == "symlink":
        assert spool.last_announce() is None
    assert [e.id for e in spool.entries()] == [good.id]
    with spool.claim(good.id) as claim:
        assert claim is not None
        claim.update(attempts=1)
    spool.remove_stale_temp(max_age=0)
    assert state(target) == before

    # the sh hand-off: the lock and the FIFO refused, the message still written
    result = run_drop(spool.path, "a@x", b"from sh\n")
    assert result.returncode == 0
    assert result.stderr == (f"cvsmsg-drop: warning: {spool.path}/deliver.lock is not a "
                             "regular file: no deliverer started (the message is queued for "
                             "the next one)\n").encode() if how == "symlink" else True
    assert [e.body for e in spool.entries()] == ["b", "from sh"]
    assert state(target) == before


def test_sh_message_name_planted_as_a_link(tmp_path):
    """cvsmsg-drop creates ID.msg itself (noclobber: O_EXCL): a link planted at the name is
    never followed, the message goes to the next free name; all taken is an honest
    failure."""
    spool = tmp_path / "spool"
    spool.mkdir()
    target, before = victim(tmp_path)

    def plant(pid: int) -> None:
        (spool / f"{drop_id(pid)}.msg").symlink_to(target)
        (spool / f"{drop_id(pid, 1)}.msg").symlink_to(tmp_path / "nowhere")
        planted.append(pid)

    planted: list[int] = []
    result = drop_with_known_pid(spool, tmp_path, plant)
    assert (result.returncode, result.stderr) == (0, b"")
    [pid] = planted
    assert state(target) == before and not (tmp_path / "nowhere").exists()
    assert (spool / f"{drop_id(pid, 2)}.msg").read_bytes().endswith(notice().encode())

    def plant_all(pid: int) -> None:
        for extra in range(5):
            (spool / f"{drop_id(pid, extra)}.msg").symlink_to(target)

    result = drop_with_known_pid(spool, tmp_path, plant_all)
    assert result.returncode == 3
    assert result.stderr == f"cvsmsg-drop: error: cannot write to spool {spool}: File exists\n" \
        .encode()  # an honest failure, nothing claimed queued
    assert state(target) == before


def test_a_spool_that_is_a_link_is_refused(tmp_path):
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "spool").symlink_to(real)
    with pytest.raises(SpoolError, match=r"is not a directory \(a symbolic link or a file\)"):
        Spool(tmp_path / "spool").add("a@x", "s", "b")
    result = run_drop(tmp_path / "spool", "a@x", b"hi\n")
    assert (result.returncode, result.stderr) == (
        3, f"cvsmsg-drop: error: spool {tmp_path}/spool is a symbolic link: refusing to use "
           "it\n".encode())
    assert list(real.iterdir()) == []


def test_pid_through_a_read_only_lock_fd(tmp_path):
    """cvsmsg-drop hands the deliverer a read-only fd 9: the pid is still recorded."""
    spool = Spool(tmp_path).ensure()
    fd = spool.try_lock(DELIVER_LOCK)
    assert fd is not None
    ro = os.open(tmp_path / "deliver.lock", os.O_RDONLY)
    try:
        Spool.write_pid(ro, 4242)
        assert (tmp_path / "deliver.lock").read_text() == "4242\n"
        Spool.clear_pid(ro)
        assert (tmp_path / "deliver.lock").read_text() == ""
    finally:
        os.close(ro)
        os.close(fd)


# -- the announce stamp ---------------------------------------------------------------------


def test_announce_stamp(tmp_path):
    spool = Spool(tmp_path).ensure()
    t = time.time()
    assert spool.last_announce() is None
    assert spool.announce_due(600, now=t) is True  # never announced
    assert spool.announce_due(600, now=t) is True  # deciding is not announcing
    spool.mark_announced()  # a session really announced
    assert spool.last_announce() == pytest.approx(t, abs=5)
    assert spool.announce_due(600, now=t + 10) is False  # within the interval
    assert spool.announce_due(600, now=t + 601) is True  # after it
    os.utime(tmp_path / "announce", (t + 86400, t + 86400))  # a stamp from the future
    assert spool.announce_due(600, now=t + 10) is True  # not trusted
    spool.mark_announced()
    assert spool.last_announce() == pytest.approx(time.time(), abs=5)
    assert stat.S_IMODE((tmp_path / "announce").stat().st_mode) == 0o660


# -- where things live -----------------------------------------------------------------------


def test_paths_honour_absolute_xdg_variables_only(tmp_path):
    env = {"HOME": "/home/u", "XDG_CONFIG_HOME": "/cfg", "XDG_STATE_HOME": "/st",
           "XDG_CACHE_HOME": "/cache"}
    assert paths.config_search_path(env) == ["/cfg/cvsmsg/config.toml",
                                             "/etc/cvsmsg/config.toml"]
    assert default_config_paths(env) == paths.config_search_path(env)
    assert paths.user_spool_dir(env) == "/st/cvsmsg/spool"
    assert paths.config_cache_dir(env) == "/cache/cvsmsg"
    relative = {"HOME": "/home/u", "XDG_CONFIG_HOME": "cfg", "XDG_STATE_HOME": "st",
                "XDG_CACHE_HOME": "cache"}
    assert paths.config_search_path(relative)[0] == "/home/u/.config/cvsmsg/config.toml"
    assert paths.user_spool_dir(relative) == "/home/u/.local/state/cvsmsg/spool"
    assert paths.config_cache_dir(relative) == "/home/u/.cache/cvsmsg"
    assert paths.config_cache_dir({}) is None
    assert paths.deliver_log("/s") == "/s/deliver.log"
