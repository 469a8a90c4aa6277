"""`cvsmsg notify` against a real Prosody: who gets the message, with what, and exit codes."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import cvsmsg_command

NOTICE = "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"


@pytest.mark.parametrize("show", ["", "chat", "away", "xa"])
def test_delivers_to_available_recipient(bot, person, show):
    alice = person(show)
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    msgs = alice.settle()
    assert [(m.sender, m.subject, m.body, m.type) for m in msgs] == [
        (bot.jid, "CVS Watch Alarm", NOTICE.rstrip("\n"), "normal")
    ]
    assert f"cvsmsg: delivered to {alice.jid}: {show or 'available'}" in result.stderr


def test_withholds_from_dnd_recipient(bot, person):
    alice = person("dnd")
    result = bot.run(alice.jid)
    assert result.returncode == 10, result.stderr
    assert alice.settle() == []
    assert f"cvsmsg: withheld from {alice.jid}: dnd (resource desk)" in result.stderr
    assert result.stdout == ""


def test_withholds_from_offline_recipient(bot, person):
    alice = person(None)  # a mutual contact who is logged out
    result = bot.run(alice.jid)
    assert result.returncode == 10, result.stderr
    assert f"cvsmsg: withheld from {alice.jid}: offline" in result.stderr
    alice.online("")
    assert alice.settle() == []  # and nothing was stored offline for later either


def test_dnd_on_one_resource_wins_over_available_elsewhere(bot, person):
    alice = person("")
    alice.online("dnd", resource="phone")
    result = bot.run(alice.jid)
    assert result.returncode == 10, result.stderr
    assert "dnd (resource phone)" in result.stderr
    assert alice.settle() == []


def test_two_resources_away_and_available_delivers(bot, person):
    alice = person("away")
    alice.online("", resource="phone")
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    # one message to the bare JID; the server hands a copy to each device
    assert sorted(m.resource for m in alice.settle()) == ["desk", "phone"]


def test_negative_priority_resource_cannot_take_messages(bot, person):
    alice = person("")
    alice.online("", priority=-1)  # e.g. a bot or an "invisible" client of hers
    result = bot.run(alice.jid)
    assert result.returncode == 10, result.stderr
    assert "online only with negative priority" in result.stderr
    alice.online("", resource="laptop")
    assert bot.run(alice.jid).returncode == 0
    # the new notification, then (same session) the one queued while she could not take it
    msgs = alice.settle()
    assert [m.resource for m in msgs] == ["laptop", "laptop"]
    assert "queued " in msgs[1].body and "negative priority" in msgs[1].body


def test_second_resource_gone_dnd_after_it_leaves(bot, person):
    alice = person("")
    alice.online("dnd", resource="phone")
    alice.offline("phone")
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 1


def test_withhold_show_is_configurable(bot, person, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(
        tmp_path / "xa.toml", bot.jid, bot.password, withhold_show=["dnd", "xa"]
    )
    away = person("away")
    xa = person("xa")
    result = bot.run(away.jid, xa.jid, config=config)
    assert result.returncode == 10, result.stderr
    assert f"delivered to {away.jid}: away" in result.stderr
    assert f"withheld from {xa.jid}: xa" in result.stderr
    assert len(away.settle()) == 1
    assert xa.settle() == []


def test_several_recipients_mixed_presence(bot, person):
    on, dnd, off = person(""), person("dnd"), person(None)
    result = bot.run(on.jid, dnd.jid, off.jid)
    assert result.returncode == 10, result.stderr
    assert len(on.settle()) == 1
    assert dnd.settle() == []
    lines = [line for line in result.stderr.splitlines() if line.startswith("cvsmsg: ")]
    assert lines == [
        f"cvsmsg: delivered to {on.jid}: available",
        f"cvsmsg: withheld from {dnd.jid}: dnd (resource desk); queued",
        f"cvsmsg: withheld from {off.jid}: offline; queued",
    ]


def test_duplicate_recipient_gets_one_message(bot, person):
    alice = person("")
    result = bot.run(alice.jid, f" {alice.jid}\r", alice.jid.upper())
    assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 1  # JIDs are case-insensitive (RFC 7622)
    assert result.stderr.count("delivered to") == 1


def test_recipient_value_from_cvs_users_is_stripped(bot, person):
    alice = person("")
    result = bot.run(f"{alice.jid} \r")  # CVS passes users-file values verbatim
    assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 1


def test_bare_cvs_name_completed_with_default_domain(bot, person, prosody, tmp_path):
    alice = person("")
    config = prosody.write_cvsmsg_config(
        tmp_path / "dd.toml", bot.jid, bot.password, default_domain=prosody.domain
    )
    result = bot.run(alice.jid.split("@")[0], config=config)
    assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 1


def test_bare_cvs_name_without_default_domain_is_error(bot):
    result = bot.run("dave")
    assert result.returncode == 7
    assert result.stderr.strip() == (
        "cvsmsg: error: recipient 'dave' has no domain: add 'dave:dave@your.domain' to "
        "CVSROOT/users or set default_domain in the config"
    )


def test_invalid_recipient_exit_7_others_still_delivered(bot, person):
    alice = person("")
    result = bot.run("not a jid", alice.jid)
    assert result.returncode == 7, result.stderr
    assert "cvsmsg: error: invalid recipient address 'not a jid'" in result.stderr
    assert len(alice.settle()) == 1


def test_subject_and_type_options(bot, person):
    alice = person("")
    result = bot.run("--subject", "Watch: proj/a.txt", "--type", "chat", alice.jid)
    assert result.returncode == 0, result.stderr
    [msg] = alice.settle()
    assert (msg.subject, msg.type) == ("Watch: proj/a.txt", "chat")


def test_subject_from_config(bot, person, prosody, tmp_path):
    alice = person("")
    config = prosody.write_cvsmsg_config(
        tmp_path / "s.toml", bot.jid, bot.password, subject="CVS on build-host", type="headline"
    )
    assert bot.run(alice.jid, config=config).returncode == 0
    [msg] = alice.settle()
    assert (msg.subject, msg.type) == ("CVS on build-host", "headline")


def test_message_from_file(bot, person, tmp_path):
    alice = person("")
    path = tmp_path / "message.txt"
    path.write_text("by hand\nsecond line\n")
    result = bot.run("--file", str(path), alice.jid, input=None)
    assert result.returncode == 0, result.stderr
    assert [m.body for m in alice.settle()] == ["by hand\nsecond line"]


def test_unreadable_file_is_usage_error(bot, tmp_path):
    result = bot.run("--file", str(tmp_path / "missing.txt"), "x@localhost")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"cvsmsg: error: cannot read --file {tmp_path / 'missing.txt'}: No such file or directory"
    )


def test_quiet_prints_nothing_on_success(bot, person):
    alice = person("")
    result = bot.run("-q", alice.jid)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_debug_shows_stream_but_never_the_password(bot, person):
    alice = person("")
    result = bot.run("--debug", alice.jid)
    assert result.returncode == 0
    assert "<message" in result.stderr and "<auth" in result.stderr
    assert "[redacted]" in result.stderr
    assert bot.password not in result.stderr
    assert result.stdout == ""


def test_twenty_concurrent_runs_all_delivered(bot, person):
    alice = person("")
    procs = [
        subprocess.Popen(
            [*cvsmsg_command(), "notify", "--config", str(bot.config), alice.jid],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for _ in range(20)
    ]
    outputs = [p.communicate(f"notice {i}\n".encode(), timeout=60) for i, p in enumerate(procs)]
    codes = [p.returncode for p in procs]
    assert codes == [0] * 20, [err.decode() for _, err in outputs]
    assert all(out == b"" for out, _ in outputs)
    bodies = sorted(m.body for m in alice.wait_messages(20, timeout=10))
    assert bodies == sorted(f"notice {i}" for i in range(20))


def test_version_and_help():
    out = subprocess.run([*cvsmsg_command(), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("cvsmsg, version ")
    out = subprocess.run([*cvsmsg_command(), "notify", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    assert "ALL cvsmsg notify %s" in out.stdout
    assert "10  withheld from at least one recipient" in out.stdout
