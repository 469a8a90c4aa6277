"""The pieces that let a burst end with the CVS command that dropped it: process identity
from /proc (procs.py), the `cvs-process` header, and the pure readiness rule. No server."""

from __future__ import annotations

import os
import select
import subprocess
import sys

from cvsmsg import procs
from cvsmsg.digest import batches
from cvsmsg.record import replace
from cvsmsg.spool import Spool
from tests.test_spool_units import entry


def test_a_burst_is_ready_once_every_cvs_that_dropped_it_has_exited():
    a = replace(entry(created=1000.0, n=1), dropper="10:5")
    b = replace(entry(created=1000.5, n=2), dropper="11:6")
    [waiting] = batches([a, b], 2.0, 60.0)
    assert waiting.ready_at == 1002.5  # the quiet window
    [still] = batches([a, b], 2.0, 60.0, over={"10:5"})  # one of them still runs
    assert still.ready_at == 1002.5
    [done] = batches([a, b], 2.0, 60.0, over={"10:5", "11:6"})
    assert (done.ready_at, len(done.entries)) == (1000.5, 2)  # at once, still one digest
    unknown = entry(created=1001.0, n=3)  # no cvs-process (an old file, not run by CVS)
    [mixed] = batches([a, b, unknown], 2.0, 60.0, over={"10:5", "11:6"})
    assert mixed.ready_at == 1003.0


def test_process_identity_and_its_end():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        key = procs.identity(child.pid)
        assert key.startswith(f"{child.pid}:") and key.split(":")[1].isdigit()
        assert procs.dropper({"CVS_PID": str(child.pid)}) == key
        assert procs.dropper({"CVS_PID": "nope"}) == procs.dropper({}) == ""
        assert not procs.ended(key)
        assert procs.ended(f"{child.pid}:{int(key.split(':')[1]) + 1}")  # a reused pid
        fd = procs.exit_fd(key)
        assert fd is not None
        try:
            assert select.select([fd], [], [], 0)[0] == []  # runs
            child.stdin.close()  # type: ignore[union-attr]
            assert select.select([fd], [], [], 10)[0] == [fd]  # readable once it exited
        finally:
            os.close(fd)
    finally:
        child.wait(10)
    assert procs.ended(key)
    assert procs.exit_fd(key) is None
    assert not procs.ended("garbage") and procs.exit_fd("garbage") is None


def test_nothing_has_ended_where_proc_says_nothing(tmp_path):
    assert not procs.ended("123:456", tmp_path)  # no /proc here: never "ended"
    assert procs.identity(os.getpid(), tmp_path) == ""


def test_the_cvs_process_header_is_kept_and_validated(tmp_path):
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b", dropper="4242:77")
    assert spool.read(e.id) == e and e.dropper == "4242:77"
    assert b"\ncvs-process: 4242:77\n" in spool.file_of(e.id).read_bytes()
    old = spool.add("a@x", "s", "b")  # files without it (older ones) read as before
    assert spool.read(old.id).dropper == ""  # type: ignore[union-attr]
    bad = spool.file_of("0000000000001-000001")
    bad.write_bytes(b"cvsmsg-spool 2\nrecipient: a@x\ntime: 1\ncvs-process: 1:x\n\nhi\n")
    assert spool.read("0000000000001-000001") is None
    assert list(tmp_path.glob("*.bad"))
