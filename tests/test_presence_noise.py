"""A run must not flash the bot online/offline to its whole roster (probe, don't announce)."""

from __future__ import annotations


def bot_presence(person, bot_jid):
    person.settle()
    return [ptype for sender, ptype in person.presences if sender == bot_jid]


def test_probe_run_sends_no_presence_to_other_contacts(bot, person, announced):
    alice = person("")  # the recipient
    watcher = person("")  # another contact, subscribed to the bot's presence
    before = len(bot_presence(watcher, bot.jid))
    before_alice = len(bot_presence(alice, bot.jid))
    for _ in range(3):
        result = bot.run(alice.jid)
        assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 3
    assert bot_presence(watcher, bot.jid)[before:] == []
    assert bot_presence(alice, bot.jid)[before_alice:] == []


def test_offline_recipient_is_still_known_offline_by_probe(bot, person, announced):
    gone = person(None)
    watcher = person("")
    before = len(bot_presence(watcher, bot.jid))
    result = bot.run(gone.jid)
    assert result.returncode == 10
    assert f"withheld from {gone.jid}: offline" in result.stderr
    assert bot_presence(watcher, bot.jid)[before:] == []


def test_announce_mode_is_the_books_behaviour(bot, person, prosody, tmp_path):
    alice = person("")
    watcher = person("")
    config = prosody.write_cvsmsg_config(
        tmp_path / "announce.toml", bot.jid, bot.password, presence="announce"
    )
    before = len(bot_presence(watcher, bot.jid))
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert bot_presence(watcher, bot.jid)[before:] == ["available", "unavailable"]


def test_invisible_recipient_is_asked_without_announcing(bot, person, announced):
    stranger = person("", friend=False, auto_accept=False)
    watcher = person("")
    before = len(bot_presence(watcher, bot.jid))
    result = bot.run(stranger.jid)
    assert result.returncode == 10
    assert f"asked {stranger.jid} to share presence" in result.stderr
    # the directed request is all it takes: nobody else sees the bot
    assert bot_presence(watcher, bot.jid)[before:] == []


def test_fresh_spool_announces_once_then_stays_quiet(bot, person):
    alice = person("")
    watcher = person("")
    before = len(bot_presence(watcher, bot.jid))
    for _ in range(3):
        assert bot.run(alice.jid).returncode == 0
    # never announced: the first run does (stored subscription requests get answered),
    # the next ones within announce_interval do not
    assert bot_presence(watcher, bot.jid)[before:] == ["available", "unavailable"]


def test_server_ignoring_client_probes_falls_back_to_announcing(loops, tmp_path_factory,
                                                                announced):
    from tests.conftest import own_server

    with own_server(tmp_path_factory, loops, ("drop_client_probes",)) as (_server, bot, alice):
        result = bot.run("-v", alice.jid)
        assert result.returncode == 0, result.stderr
        assert "presence probes unanswered: announcing instead" in result.stderr
        assert len(alice.settle()) == 1


def test_queued_recipients_are_probed_not_waited_for(bot, person, prosody, tmp_path,
                                                     announced):
    """A later run also looks at queued messages; their (offline) recipient must be probed
    like the run's own, not waited for until presence_grace runs out."""
    config = prosody.write_cvsmsg_config(
        tmp_path / "grace.toml", bot.jid, bot.password, presence_grace=60, timeout=5
    )
    gone = person(None)
    alice = person("")
    watcher = person("")
    first = bot.run(gone.jid, config=config)
    assert first.returncode == 10
    assert "; queued" in first.stderr
    before = len(bot_presence(watcher, bot.jid))
    second = bot.run("-v", alice.jid, config=config)
    assert second.returncode == 0, second.stderr
    # waiting for the queued recipient's presence would have eaten the run's whole budget
    assert "no time left" not in second.stderr
    assert len(alice.settle()) == 1
    assert bot_presence(watcher, bot.jid)[before:] == []  # and still nobody saw the bot
