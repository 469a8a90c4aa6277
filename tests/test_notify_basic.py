"""`cvsmsg notify` against a real Prosody: delivered or withheld, as a user would check."""

from __future__ import annotations

NOTICE = "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"


def test_delivers_to_available_recipient(bot, person):
    alice = person("")
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    msgs = alice.settle()
    assert len(msgs) == 1
    assert msgs[0].sender == bot.jid
    assert msgs[0].subject == "CVS Watch Alarm"
    assert msgs[0].body == NOTICE.rstrip("\n")
    assert msgs[0].type == "normal"
    assert f"delivered to {alice.jid}" in result.stderr


def test_withholds_from_dnd_recipient(bot, person):
    alice = person("dnd")
    result = bot.run(alice.jid)
    assert result.returncode == 10, result.stderr
    assert alice.settle() == []
    assert f"withheld from {alice.jid}: dnd" in result.stderr
