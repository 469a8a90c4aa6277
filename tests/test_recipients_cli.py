"""Recipient addresses end to end: each invalid one is exit 7 with its one line and nothing
queued (in direct and background mode; as a drop, set aside as ID.bad with a log line),
each equivalent spelling of a subscribed, online person reaches that person once, the
bot's own address is refused, and `cvsmsg queue` never prints a control character it read
from the spool. Real Prosody, the real sh hand-off."""

from __future__ import annotations

import re

import pytest

from tests.spoolhelp import cvsmsg, first_lines, notice, spool_files, wait_for
from tests.test_drop import drop

BAD = {  # value given → the reason `cvsmsg: error:` names
    "x@-bad.org": "invalid recipient address 'x@-bad.org': label '-bad' is not a host name",
    "😀@localhost": "invalid recipient address '😀@localhost': character '😀' is not "
                   "allowed in a localpart",
    "a\x7f@localhost": "invalid recipient address 'a\\x7f@localhost': character '\\x7f' "
                       "is not allowed in a localpart",
    "\x1b]0;pwn\x07@localhost": "invalid recipient address '\\x1b]0;pwn\\x07@localhost': "
                                "character '\\x1b' is not allowed in a localpart",
    "a\x1b[31m@localhost": "invalid recipient address 'a\\x1b[31m@localhost': character "
                           "'\\x1b' is not allowed in a localpart",
}
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")  # anything but a newline


@pytest.fixture
def bg_config(bot, prosody, tmp_path):
    return prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                       delivery="background", coalesce_seconds=0.3)


def assert_nothing_queued(config, spool_dir) -> None:
    listing = cvsmsg("queue", "--config", str(config))
    assert (listing.returncode, listing.stdout.splitlines()[0]) == (
        0, f"no messages queued in {spool_dir}")  # (a deliverer may still linger)
    assert list(spool_dir.glob("*.bad")) == []


@pytest.mark.parametrize("mode", ["direct", "background"])
@pytest.mark.parametrize("value", list(BAD))
def test_a_bad_address_is_exit_7_and_nothing_queued(bot, person, bg_config, spool_dir,
                                                    mode, value):
    config = bot.config if mode == "direct" else bg_config
    alone = bot.run(value, config=config)
    assert (alone.returncode, alone.stdout, alone.stderr) == (
        7, "", f"cvsmsg: error: {BAD[value]}\n")
    assert spool_files(spool_dir) == []
    alice = person("")
    both = bot.run(value, alice.jid, config=config)
    verb = "delivered to" if mode == "direct" else "queued for"
    how = "available" if mode == "direct" else "background delivery"
    assert (both.returncode, both.stderr.splitlines()) == (7, [
        f"cvsmsg: error: {BAD[value]}", f"cvsmsg: {verb} {alice.jid}: {how}"])
    assert first_lines(alice.wait_messages(1, 15)) == ["proj a.txt"]  # the valid one goes
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    assert_nothing_queued(config, spool_dir)
    assert len(alice.settle()) == 1


def test_bad_addresses_as_drops_are_set_aside_and_logged(bot, person, bg_config, spool_dir):
    alice = person("")
    for value in [*BAD, bot.jid]:
        result = drop("--config", str(bg_config), value)
        assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    assert drop("--config", str(bg_config), alice.jid).returncode == 0
    assert first_lines(alice.wait_messages(1, 15)) == ["proj a.txt"]
    assert wait_for(lambda: len(list(spool_dir.glob("*.bad"))) == len(BAD) + 1, 15)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    log = (spool_dir / "deliver.log").read_text()
    assert not CONTROL.search(log)  # the sh hand-off made control characters spaces
    set_aside = re.findall(r"spool file (\S+)\.msg is invalid \((.*)\): renamed to (\S+)\.bad",
                           log)
    assert sorted(f"{s}.bad" for s, _, _ in set_aside) == sorted(
        str(p) for p in spool_dir.glob("*.bad"))
    reasons = sorted(why for _, why, _ in set_aside)
    assert reasons == sorted([
        "invalid recipient address 'x@-bad.org': label '-bad' is not a host name",
        "invalid recipient address '😀@localhost': character '😀' is not allowed in a "
        "localpart",
        "invalid recipient address 'a @localhost'",
        "invalid recipient address ']0;pwn @localhost'",
        "invalid recipient address 'a [31m@localhost'",
        f"recipient {bot.jid} is cvsmsg's own account",
    ])
    assert len(alice.settle()) == 1


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def test_equivalent_forms_reach_the_person_once_each_run(bot, person, announced):
    alice = person("")
    local, domain = alice.jid.split("@")
    forms = [alice.jid + "\u200b", f"{fullwidth(local)}@{domain}", alice.jid.upper(),
             f"xmpp:{alice.jid}", f"xmpp:{local}\u200b@{domain.upper()} \r"]
    for i, form in enumerate(forms):
        result = bot.run(form, input=notice(f"f{i}.txt"))
        assert (result.returncode, result.stderr) == (
            0, f"cvsmsg: delivered to {alice.jid}: available\n"), form
    result = bot.run(forms[1], forms[2], alice.jid, input=notice("once.txt"))
    assert (result.returncode, result.stderr) == (
        0, f"cvsmsg: delivered to {alice.jid}: available\n")
    expected = [f"proj f{i}.txt" for i in range(len(forms))] + ["proj once.txt"]
    assert wait_for(lambda: len(alice.settle()) >= len(expected), 10)
    assert first_lines(alice.settle()) == expected  # each once, in order


def test_the_bots_own_address_is_refused(bot, person, bg_config, spool_dir):
    for config in (bot.config, bg_config):
        for value in (bot.jid, bot.jid.upper(), f"xmpp:{bot.jid}"):
            result = bot.run(value, config=config)
            assert (result.returncode, result.stdout, result.stderr) == (
                7, "", f"cvsmsg: error: recipient {bot.jid} is cvsmsg's own account: it "
                       "cannot notify itself\n")
        assert_nothing_queued(config, spool_dir)


def test_queue_never_prints_a_control_character_from_the_spool(bot, spool_dir):
    spool_dir.mkdir()
    head = "cvsmsg-spool 2\nrecipient: a@localhost\nuser: bob\ntime: 1700000000000000000\n"
    (spool_dir / "0000000000007-\x1b]0;pwn\x07.msg").write_text(head + "\nhi\n")
    (spool_dir / "0000000000008-000000.msg").write_text(head + "reason: \x1b[2J\n\nhi\n")
    (spool_dir / "0000000000009-\x1b[31m.bad").write_text("junk")
    result = cvsmsg("queue", "--config", str(bot.config))
    assert result.returncode == 0, result.stderr
    assert not CONTROL.search(result.stdout) and not CONTROL.search(result.stderr)
    lines = result.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[1]) == [
        "0000000000007-\\x1b]0;pwn\\x07", "a@localhost", lines[1].split()[2], "0",
        "waiting for delivery"]
    assert lines[2:] == [
        f"1 message queued in {spool_dir}",
        "2 file(s) set aside, never sent: 0000000000008-000000.bad, 0000000000009-\\x1b[31m.bad",
    ]
    dropped = cvsmsg("queue", "--config", str(bot.config), "--drop", "0000000000007")
    assert (dropped.returncode, dropped.stdout) == (
        0, "dropped 0000000000007-\\x1b]0;pwn\\x07 for a@localhost\n")
