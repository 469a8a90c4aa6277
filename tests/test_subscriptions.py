"""The subscription handshake both ways, as the people being notified experience it."""

from __future__ import annotations

import time

import pytest


def test_request_stored_while_offline_is_accepted_and_asked_back(bot, person):
    alice = person("", friend=False)
    alice.send_presence(bot.jid, "subscribe")  # cvsmsg is not running: the server stores it
    assert alice.roster_subscription(bot.jid) == "none"
    first = bot.run("-v", alice.jid)
    assert f"accepted presence subscription from {alice.jid} and asked back" in first.stderr
    # alice's client accepts the request cvsmsg sent back: the relation is mutual now, and
    # cvsmsg waited for her answer, so this very first notification reached her
    assert alice.roster_subscription(bot.jid) == "both"
    assert first.returncode == 0, first.stderr
    assert f"delivered to {alice.jid}: available" in first.stderr
    assert len(alice.settle()) == 1
    second = bot.run(alice.jid)
    assert second.returncode == 0, second.stderr
    assert len(alice.settle()) == 2


def test_request_from_a_non_recipient_waits_for_an_announcing_run(bot, person, prosody,
                                                                   tmp_path, announced):
    alice = person("", friend=False)
    bob = person("")
    alice.send_presence(bot.jid, "subscribe")
    # a run has just announced: within announce_interval cvsmsg only probes bob and stays
    # invisible, so the server keeps alice's request (it hands stored requests over on
    # initial presence)
    assert bot.run(bob.jid).returncode == 0
    assert alice.roster_subscription(bot.jid) == "none"
    # a run that announces (presence = "announce", or the first run once the interval has
    # passed) answers it
    config = prosody.write_cvsmsg_config(
        tmp_path / "announce.toml", bot.jid, bot.password, presence="announce"
    )
    result = bot.run(bob.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert alice.roster_subscription(bot.jid) == "both"
    assert alice.settle() == []  # she was not a recipient of these notifications


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def live_session(bot, loops):
    """A cvsmsg session kept open (as `cvsmsg serve` will), on the recipients' loop."""
    from cvsmsg.config import load_config
    from cvsmsg.sessions import SERVE, open_session, plan_session

    cfg = load_config(bot.config, env={})
    session = loops.run(open_session(cfg, plan_session(cfg, None, (), SERVE)))
    yield session
    loops.run(session.close())


def test_unsubscribe_is_answered_and_reciprocated(bot, person, live_session):
    alice = person("")  # mutual contact
    assert alice.roster_subscription(bot.jid) == "both"
    alice.send_presence(bot.jid, "unsubscribe")
    # cvsmsg answers `unsubscribed` and cancels its own subscription: nothing is left
    assert _wait_for(lambda: alice.roster_subscription(bot.jid) == "none")
    assert _wait_for(lambda: not live_session.can_see(alice.jid))


def test_subscribe_while_connected_is_accepted_and_asked_back(bot, person, live_session):
    alice = person("", friend=False)
    alice.send_presence(bot.jid, "subscribe")
    assert _wait_for(lambda: alice.roster_subscription(bot.jid) == "both")
    assert _wait_for(lambda: live_session.can_see(alice.jid))


def test_recipient_without_subscription_is_asked_once(bot, person):
    alice = person("", friend=False, auto_accept=False)
    first = bot.run(alice.jid)
    assert first.returncode == 10
    assert (
        f"withheld from {alice.jid}: presence not visible (no subscription to their presence); "
        f"asked {alice.jid} to share presence" in first.stderr
    )
    assert alice.subscription_requests == [bot.jid]
    second = bot.run(alice.jid)
    assert second.returncode == 10
    assert "asked" not in second.stderr  # the request is pending: do not nag
    alice.settle()
    assert alice.subscription_requests == [bot.jid]
    assert alice.settle() == []
