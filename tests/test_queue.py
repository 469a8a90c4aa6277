"""Direct delivery with the spool: withheld and failed messages are queued, and delivered
once their recipient is available — by a later notify run or by `cvsmsg flush`."""

from __future__ import annotations

import re
import time

import pytest

from tests.harness.prosody import Prosody
from tests.harness.recipient import Person, befriend
from tests.spoolhelp import cvsmsg, notice, queue_rows, spool_files


def test_withheld_is_queued_then_delivered_once_by_a_later_notify(bot, person, spool_dir):
    alice = person("dnd")
    first = bot.run(alice.jid, input=notice("a.txt"))
    assert first.returncode == 10, first.stderr
    assert first.stderr == f"cvsmsg: withheld from {alice.jid}: dnd (resource desk); queued\n"
    [row] = queue_rows(bot.config)
    assert row[1:] == [alice.jid, row[2], "1", "dnd (resource desk)"]
    assert re.fullmatch(r"\d+s", row[2]), row
    assert alice.settle() == []

    alice.online("")  # back from dnd
    second = bot.run(alice.jid, input=notice("b.txt"))
    assert second.returncode == 0, second.stderr
    assert second.stderr.splitlines() == [
        f"cvsmsg: delivered to {alice.jid}: available",
        f"cvsmsg: delivered to {alice.jid}: 1 queued notification",
    ]
    msgs = alice.settle()
    assert [m.body.splitlines()[0] for m in msgs] == ["proj b.txt", "proj a.txt"]
    late = msgs[1]
    assert late.body.startswith(notice("a.txt").rstrip("\n") + "\n\n[queued ")
    assert late.body.endswith(": dnd]")  # the gate's word, not the resource
    assert late.subject == "CVS Watch Alarm"
    assert queue_rows(bot.config) == []
    assert spool_files(spool_dir) == []

    third = bot.run(alice.jid, input=notice("c.txt"))
    assert third.returncode == 0
    assert [m.body.splitlines()[0] for m in alice.settle()] == [
        "proj b.txt", "proj a.txt", "proj c.txt"]  # nothing twice


def test_flush_delivers_when_the_recipient_is_back(bot, person):
    alice = person(None)  # offline
    assert bot.run(alice.jid).returncode == 10
    still = cvsmsg("flush", "--config", str(bot.config))
    assert still.returncode == 10, still.stderr
    assert still.stdout == f"still queued for {alice.jid}: offline\n"
    assert queue_rows(bot.config)[0][3:] == ["2", "offline"]  # flush counted an attempt

    alice.online("")
    result = cvsmsg("flush", "--config", str(bot.config))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"delivered to {alice.jid}: 1 notification\n"
    [msg] = alice.settle()
    assert msg.body.startswith(notice().rstrip("\n"))
    assert "[queued " in msg.body and msg.body.endswith(": offline]")
    again = cvsmsg("flush", "--config", str(bot.config))
    assert (again.returncode, again.stdout) == (0, f"no messages queued in {bot.config.parent}"
                                                   "/spool\n")
    assert len(alice.settle()) == 1


def test_withheld_drop_queues_nothing(bot, person, prosody, tmp_path, spool_dir):
    config = prosody.write_cvsmsg_config(tmp_path / "drop.toml", bot.jid, bot.password,
                                         withheld="drop")
    alice = person("dnd")
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 10
    assert result.stderr == f"cvsmsg: withheld from {alice.jid}: dnd (resource desk)\n"
    assert spool_files(spool_dir) == []


def test_several_withheld_are_delivered_in_one_digest(bot, person):
    alice = person("dnd")
    for name in ("a.txt", "b.txt", "c.txt"):
        assert bot.run(alice.jid, input=notice(name)).returncode == 10
    alice.online("")
    result = cvsmsg("flush", "--config", str(bot.config))
    assert result.stdout == f"delivered to {alice.jid}: 3 notifications\n"
    [digest] = alice.settle()
    assert digest.subject == "CVS Watch Alarm (3 notifications)"
    blocks = digest.body.split("\n\n")
    assert [b.splitlines()[0].split(" queued ")[0] for b in blocks] == ["[1/3]", "[2/3]", "[3/3]"]
    assert [b.splitlines()[1] for b in blocks] == ["proj a.txt", "proj b.txt", "proj c.txt"]


def test_queue_drop(bot, person):
    alice = person("dnd")
    bot.run(alice.jid, input=notice("a.txt"))
    bot.run(alice.jid, input=notice("b.txt"))
    first, second = queue_rows(bot.config)
    dropped = cvsmsg("queue", "--config", str(bot.config), "--drop", first[0][:15])
    assert (dropped.returncode, dropped.stdout) == (0, f"dropped {first[0]} for {alice.jid}\n")
    assert [r[0] for r in queue_rows(bot.config)] == [second[0]]
    missing = cvsmsg("queue", "--config", str(bot.config), "--drop", first[0])
    assert missing.returncode == 2
    assert missing.stderr == (f"cvsmsg: error: no queued message {first[0]!r} in "
                              f"{bot.config.parent}/spool\n")
    alice.online("")
    assert cvsmsg("flush", "--config", str(bot.config)).returncode == 0
    assert [m.body.splitlines()[0] for m in alice.settle()] == ["proj b.txt"]


def test_old_messages_expire_with_a_log_line(bot, person, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(tmp_path / "age.toml", bot.jid, bot.password,
                                         queue_max_age="1s")
    alice = person("dnd")
    assert bot.run(alice.jid, config=config).returncode == 10
    time.sleep(1.1)  # the message must be older than queue_max_age: nothing to wait for
    alice.online("")
    result = cvsmsg("flush", "--config", str(config))
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert re.fullmatch(
        rf"cvsmsg: dropped queued message [0-9a-f-]+ for {re.escape(alice.jid)}: older than "
        r"queue_max_age \(1s\); last reason: dnd \(resource desk\)", line), line
    assert alice.settle() == []
    assert queue_rows(config) == []


def test_wrong_password_queues_and_flush_reports_it(bot, person, prosody, tmp_path):
    alice = person("")
    bad = prosody.write_cvsmsg_config(tmp_path / "bad.toml", bot.jid, "not-the-password")
    result = bot.run(alice.jid, config=bad)
    assert result.returncode == 4
    assert result.stderr == (f"cvsmsg: error: authentication failed for {bot.jid}: wrong JID "
                             "or password; queued for later delivery\n")
    [row] = queue_rows(bad)
    assert row[3:] == ["1", f"authentication failed for {bot.jid}: wrong JID or password"]
    flush = cvsmsg("flush", "--config", str(bad))
    assert flush.returncode == 4
    assert flush.stderr == (f"cvsmsg: error: authentication failed for {bot.jid}: wrong JID "
                            "or password; 1 message(s) stay queued\n")
    # the admin fixes the password: the same spool, now delivered
    assert cvsmsg("flush", "--config", str(bot.config)).returncode == 0
    assert len(alice.settle()) == 1


@pytest.fixture
def own_prosody(tmp_path_factory):
    """A Prosody of this test alone, so it can be stopped without disturbing others."""
    server = Prosody(tmp_path_factory.mktemp("own-prosody"))
    server.start()
    yield server
    server.stop()


def test_server_down_then_back_delivered_by_flush(own_prosody, loops, tmp_path, spool_dir):
    bot_jid = own_prosody.register("bot", "botpw")
    alice = Person(loops, own_prosody.register("alice", "alicepw"), "alicepw",
                   own_prosody.port, own_prosody.ca).online("")
    befriend(loops, bot_jid, "botpw", alice)
    config = own_prosody.write_cvsmsg_config(tmp_path / "own.toml", bot_jid, "botpw")
    own_prosody.stop()

    result = cvsmsg("notify", "--config", str(config), alice.jid, input=notice())
    assert result.returncode == 5
    assert result.stderr == (
        f"cvsmsg: error: cannot connect to 127.0.0.1:{own_prosody.port}: Connection refused; "
        "queued for later delivery\n")
    [row] = queue_rows(config)
    assert row[1] == alice.jid
    assert row[3:] == ["1", f"cannot connect to 127.0.0.1:{own_prosody.port}: "
                            "Connection refused"]
    flush = cvsmsg("flush", "--config", str(config))
    assert flush.returncode == 5
    assert flush.stderr.endswith("Connection refused; 1 message(s) stay queued\n")
    assert queue_rows(config)[0][3] == "2"

    own_prosody.start()
    alice = Person(loops, alice.jid, "alicepw", own_prosody.port, own_prosody.ca).online("")
    flush = cvsmsg("flush", "--config", str(config))
    assert flush.returncode == 0, flush.stderr
    assert flush.stdout == f"delivered to {alice.jid}: 1 notification\n"
    [msg] = alice.settle()
    assert msg.body.startswith(notice().rstrip("\n"))
    assert msg.body.endswith("]") and "Connection refused" not in msg.body  # not the reader's
    assert queue_rows(config) == []
    alice.offline()
