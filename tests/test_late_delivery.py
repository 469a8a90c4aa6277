"""A queued message delivered later says when it happened (XEP-0203 <delay>, read on the
recipient's side) and never shows the administrator's error text."""

from __future__ import annotations

import calendar
import time

from tests.spoolhelp import cvsmsg, notice, queue_rows


def stamp_seconds(stamp: str) -> float:
    return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))


def test_late_message_carries_the_original_time_and_no_error_text(bot, person, prosody,
                                                                   tmp_path):
    alice = person(None)  # offline
    made_from = time.time()
    withheld = bot.run(alice.jid, input=notice("a.txt"))
    made_until = time.time()
    assert withheld.returncode == 10, withheld.stderr
    assert withheld.stderr == f"cvsmsg: withheld from {alice.jid}: offline; queued\n"

    # A flush that cannot log in: the message's reason becomes the administrator's error.
    bad = prosody.write_cvsmsg_config(tmp_path / "bad.toml", bot.jid, "not-the-password")
    failed = cvsmsg("flush", "--config", str(bad))
    assert failed.returncode == 4, failed.stderr
    [row] = queue_rows(bot.config)
    assert row[4].startswith(f"authentication failed for {bot.jid}"), row

    # Keep the delivery visibly later than the notification, so a stamp taken at delivery
    # time could not pass for the original one.
    time.sleep(max(0.0, made_until + 1.5 - time.time()))
    alice.online("")
    flushed = cvsmsg("flush", "--config", str(bot.config))
    delivered_at = time.time()
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout == f"delivered to {alice.jid}: 1 notification\n"

    [msg] = alice.settle()
    assert msg.body.startswith(notice("a.txt").rstrip("\n") + "\n\n[queued ")
    assert msg.body.endswith("]") and msg.body.count("\n[queued ") == 1
    assert "authentication" not in msg.body and bot.jid not in msg.body, msg.body
    assert msg.delay_from == bot.jid
    stamp = stamp_seconds(msg.delay)
    assert made_from - 1 <= stamp <= made_until + 1, (msg.delay, made_from, made_until)
    assert delivered_at - stamp > 1.5


def test_late_note_off_leaves_only_the_stamp(bot, person, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(tmp_path / "nonote.toml", bot.jid, bot.password,
                                         late_note=False)
    alice = person("dnd")
    made_from = time.time()
    assert bot.run(alice.jid, config=config).returncode == 10
    made_until = time.time()
    alice.online("")
    flushed = cvsmsg("flush", "--config", str(config))
    assert flushed.returncode == 0, flushed.stderr
    [msg] = alice.settle()
    assert msg.body == notice().rstrip("\n")  # no "[queued …]" note
    assert made_from - 1 <= stamp_seconds(msg.delay) <= made_until + 1
    assert msg.delay_from == bot.jid


def test_a_fresh_message_has_no_delay(bot, person):
    alice = person("")
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    [msg] = alice.settle()
    assert (msg.delay, msg.delay_from) == ("", "")
