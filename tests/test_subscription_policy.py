"""Who may subscribe to the bot's presence: `subscribers`, recipients, the roster cap.

Live tests use the test server's second virtual host as "another domain".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cvsmsg.config import load_config
from cvsmsg.errors import ConfigError
from cvsmsg.policy import subscriber_allowed, subscription_verdict
from tests.harness.prosody import OTHER_DOMAIN

# -- pure ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jid", "subscribers", "allowed"),
    [
        ("alice@example.org", ["example.org"], True),
        ("Alice@Example.ORG", ["example.org"], True),
        ("alice@evil.example", ["example.org"], False),
        ("alice@sub.example.org", ["example.org"], False),  # a domain is exact
        ("alice@example.org", ["bob@example.org"], False),
        ("bob@example.org", ["bob@example.org", "other.net"], True),
        ("anyone@anywhere.net", ["*"], True),
        ("example.org", ["example.org"], False),  # the server itself is not a user
        ("alice@example.org", [], False),
    ],
)
def test_subscriber_allowed(jid, subscribers, allowed):
    assert subscriber_allowed(jid, subscribers) is allowed


@pytest.mark.parametrize(
    ("kwargs", "accept", "reason"),
    [
        ({}, True, "allowed by subscribers"),
        ({"jid": "x@evil.example"}, False, "not in subscribers (example.org)"),
        ({"jid": "x@evil.example", "recipient": True}, True, "a recipient"),
        ({"jid": "x@evil.example", "in_roster": True}, True, "already a contact"),
        ({"roster_size": 500}, False,
         "the roster is full (max_roster = 500); raise max_roster or remove contacts"),
        ({"roster_size": 3, "max_roster": 3, "recipient": True}, False,
         "the roster is full (max_roster = 3); raise max_roster or remove contacts"),
        ({"roster_size": 3, "max_roster": 3, "in_roster": True}, True, "already a contact"),
        ({"subscribers": []}, False, "not in subscribers (nobody)"),
    ],
)
def test_subscription_verdict(kwargs, accept, reason):
    jid = kwargs.pop("jid", "x@example.org")
    subscribers = kwargs.pop("subscribers", ["example.org"])
    verdict = subscription_verdict(jid, subscribers, **kwargs)
    assert (verdict.accept, verdict.reason) == (accept, reason)
    assert verdict.roster_full == reason.startswith("the roster is full")


def config_with(tmp_path: Path, text: str):
    path = tmp_path / "c.toml"
    path.write_text('jid = "cvsmsg@Example.org"\npassword = "p"\n' + text)
    path.chmod(0o600)
    return load_config(path, env={})


def test_subscribers_default_is_the_bots_domain(tmp_path):
    cfg = config_with(tmp_path, "")
    assert (cfg.subscribers, cfg.allowed_subscribers, cfg.max_roster) == (
        None, ("example.org",), 500
    )


def test_subscribers_config(tmp_path):
    cfg = config_with(tmp_path, 'subscribers = [" Dj@Example.NET ", "example.org.", "*"]\n'
                                "max_roster = 20\n")
    assert cfg.allowed_subscribers == ("dj@example.net", "example.org", "*")
    assert cfg.max_roster == 20
    assert config_with(tmp_path, "subscribers = []\n").allowed_subscribers == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('subscribers = "example.org"\n', "'subscribers' must be a list of JIDs and domains"),
        ('subscribers = ["a b"]\n', "subscribers entry 'a b' is not a JID"),
        ('subscribers = ["@example.org"]\n', "subscribers entry '@example.org' is not a JID"),
        ('subscribers = ["*.example.org"]\n', "subscribers entry '*.example.org' is not"),
        ("max_roster = -1\n", "'max_roster' must be at least 0"),
    ],
)
def test_subscribers_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
        config_with(tmp_path, text)


# -- live ---------------------------------------------------------------------------------


def lines(stderr: str) -> list[str]:
    return stderr.splitlines()


def announcing(prosody, bot, tmp_path, **extra):
    """A config whose runs announce themselves: only then does the server hand over the
    subscription requests stored while cvsmsg was offline (with the default presence =
    "probe", a run whose recipients are all visible stays invisible and leaves them)."""
    return prosody.write_cvsmsg_config(tmp_path / "announce.toml", bot.jid, bot.password,
                                       presence="announce", **extra)


def test_request_from_another_domain_is_refused(bot, person, prosody, tmp_path):
    alice = person("")
    stranger = person("", friend=False, domain=OTHER_DOMAIN)
    stranger.send_presence(bot.jid, "subscribe")  # stored while cvsmsg is not running
    config = announcing(prosody, bot, tmp_path)

    result = bot.run("-v", alice.jid, config=config)

    assert result.returncode == 0, result.stderr
    assert f"cvsmsg: not accepting {stranger.jid}: not in subscribers (localhost)" in lines(
        result.stderr)
    assert f"cvsmsg: refused presence subscription from {stranger.jid}" in lines(result.stderr)
    assert stranger.roster_subscription(bot.jid) == "none"
    assert stranger.subscription_requests == []  # not asked back
    again = bot.run("-v", alice.jid, config=config)  # the request was answered: it is gone
    assert stranger.jid not in again.stderr


def test_refusal_is_quiet_at_default_verbosity(bot, person, prosody, tmp_path):
    alice = person("")
    stranger = person("", friend=False, domain=OTHER_DOMAIN)
    stranger.send_presence(bot.jid, "subscribe")
    result = bot.run(alice.jid, config=announcing(prosody, bot, tmp_path))
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert stranger.roster_subscription(bot.jid) == "none"
    again = bot.run("-v", alice.jid, config=announcing(prosody, bot, tmp_path)).stderr
    assert "not accepting" not in again and "refused" not in again  # nothing left to refuse
    assert again.endswith(f"cvsmsg: delivered to {alice.jid}: available\n")


def test_domain_listed_in_subscribers_is_accepted(bot, person, prosody, tmp_path):
    alice = person("")
    stranger = person("", friend=False, domain=OTHER_DOMAIN)
    config = announcing(prosody, bot, tmp_path, subscribers=[prosody.domain, OTHER_DOMAIN])
    stranger.send_presence(bot.jid, "subscribe")
    result = bot.run("-v", alice.jid, config=config)
    assert f"accepted presence subscription from {stranger.jid} and asked back" in result.stderr
    assert stranger.roster_subscription(bot.jid) == "both"


def test_jid_allow_list_refuses_others_of_the_same_domain(bot, person, prosody, tmp_path):
    alice = person("")
    bob = person("", friend=False)
    config = announcing(prosody, bot, tmp_path, subscribers=[f"someone@{prosody.domain}"])
    bob.send_presence(bot.jid, "subscribe")
    result = bot.run("-v", alice.jid, config=config)
    assert f"cvsmsg: not accepting {bob.jid}: not in subscribers (someone@localhost)" in lines(
        result.stderr)
    assert bob.roster_subscription(bot.jid) == "none"


def test_recipients_are_accepted_from_any_domain(bot, person, prosody, tmp_path):
    """A [[loginfo]] recipient and a recipient of this very run need the subscription for
    the gate: `subscribers` does not apply to them."""
    alice = person("")
    dj = person("", friend=False, domain=OTHER_DOMAIN)
    piers = person("", friend=False, domain=OTHER_DOMAIN)
    config = prosody.write_cvsmsg_config(tmp_path / "s.toml", bot.jid, bot.password)
    with config.open("a") as fh:
        fh.write(f'[[loginfo]]\nmatch = "^proj"\nto = ["{dj.jid}"]\n')
    dj.send_presence(bot.jid, "subscribe")
    piers.send_presence(bot.jid, "subscribe")

    result = bot.run(alice.jid, piers.jid, config=config)

    assert result.returncode == 0, result.stderr
    assert dj.roster_subscription(bot.jid) == "both"
    assert piers.roster_subscription(bot.jid) == "both"
    assert f"cvsmsg: delivered to {piers.jid}: available" in result.stderr


def test_roster_cap(bot, person, prosody, tmp_path):
    alice = person("")  # the bot's one contact
    bob, carol = person("", friend=False), person("", friend=False)
    config = announcing(prosody, bot, tmp_path, max_roster=2)
    bob.send_presence(bot.jid, "subscribe")
    carol.send_presence(bot.jid, "subscribe")

    result = bot.run(alice.jid, config=config)

    assert result.returncode == 0, result.stderr
    # both requests arrive at once: the second must see the first even before the
    # server's roster push for it
    states = sorted([bob.roster_subscription(bot.jid), carol.roster_subscription(bot.jid)])
    assert states == ["both", "none"]
    refused = bob if bob.roster_subscription(bot.jid) == "none" else carol
    # the administrator's problem: said at default verbosity
    assert lines(result.stderr) == [
        f"cvsmsg: not accepting {refused.jid}: the roster is full (max_roster = 2); "
        "raise max_roster or remove contacts",
        f"cvsmsg: delivered to {alice.jid}: available",
    ]
