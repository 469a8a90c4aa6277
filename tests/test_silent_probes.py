"""A server that says nothing about offline contacts (ejabberd; RFC 6121 §4.3.2 allows it).

Prosody answers a probe for a contact with no available resource with `unavailable`;
ejabberd stays silent. Silence from a local contact must then mean offline at once, not a
`presence_grace` wait on every run, and once the server is known to answer probes for
available contacts, a run must not announce itself to find out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_MODULES, own_server
from tests.harness.prosody import OTHER_DOMAIN, Prosody
from tests.test_presence_noise import bot_presence

SLOW_DOMAIN = "slow.localhost"  # a host that never answers other domains' pings


@pytest.fixture(scope="module")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    """This file's server (the `bot` and `person` fixtures use it): Prosody with the
    answers to probes for offline contacts left out, as ejabberd does."""
    server = Prosody(
        tmp_path_factory.mktemp("silent-prosody"),
        extra_domains=(OTHER_DOMAIN, SLOW_DOMAIN),
        modules=(*Prosody.modules, "silent_offline_probes", "unanswered_pings"),
        extra_config=(f'plugin_paths = {{ "{TEST_MODULES}" }}\n'
                      f'unanswered_pings_host = "{SLOW_DOMAIN}"\n'),
    )
    server.start()
    yield server
    server.stop()


def slow_grace(prosody: Prosody, bot, tmp_path: Path, grace: float = 60) -> Path:
    """A config whose grace outlasts the run's budget: waiting it shows as "no time left"."""
    return prosody.write_cvsmsg_config(tmp_path / "grace.toml", bot.jid, bot.password,
                                       presence_grace=grace, timeout=5)


def test_offline_contact_is_decided_at_once_and_quietly_once_known(
        prosody, bot, person, tmp_path, announced):
    config = slow_grace(prosody, bot, tmp_path)
    alice = person(None)
    watcher = person("")
    # This user has never seen the server answer a probe: the run announces to find out
    # (every server answers initial presence with probes of its own), then decides.
    first = bot.run("-v", alice.jid, config=config)
    assert first.returncode == 10, first.stderr
    assert f"withheld from {alice.jid}: offline; queued" in first.stderr
    assert "no time left" not in first.stderr
    assert "presence probes unanswered: announcing instead" in first.stderr
    # Online, she answers the probe: the message and the queued one reach her.
    alice.online("")
    second = bot.run("-v", alice.jid, config=config)
    assert second.returncode == 0, second.stderr
    assert "announcing instead" not in second.stderr
    assert len(alice.settle()) == 2
    # Offline again: now known to answer probes, this server's silence is her absence.
    alice.offline()
    before = len(bot_presence(watcher, bot.jid))
    third = bot.run("-v", alice.jid, config=config)
    assert third.returncode == 10, third.stderr
    assert f"withheld from {alice.jid}: offline; queued" in third.stderr
    assert "no time left" not in third.stderr
    assert "announcing instead" not in third.stderr
    assert bot_presence(watcher, bot.jid)[before:] == []  # nobody saw the bot


def test_dnd_contact_is_still_withheld(prosody, bot, person, tmp_path, announced):
    dave = person("dnd")
    result = bot.run(dave.jid, config=slow_grace(prosody, bot, tmp_path))
    assert result.returncode == 10, result.stderr
    assert f"withheld from {dave.jid}: dnd" in result.stderr
    assert dave.settle() == []


def test_silent_contact_on_another_server_is_decided_by_round_trips(
        prosody, bot, person, tmp_path, announced):
    """Their server handles our probe before our ping (in order): once it has answered
    two pings, silence is offline, with no need to wait out presence_grace."""
    config = slow_grace(prosody, bot, tmp_path)
    carol = person(None, domain=OTHER_DOMAIN)
    gone = bot.run("-v", carol.jid, config=config)
    assert gone.returncode == 10, gone.stderr
    assert f"withheld from {carol.jid}: offline; queued" in gone.stderr
    assert "no time left" not in gone.stderr
    assert f"no presence from {carol.jid}: offline (their server answered" in gone.stderr
    # online, her answer comes first: the queued message and this one reach her
    carol.online("")
    back = bot.run(carol.jid, config=config)
    assert back.returncode == 0, back.stderr
    assert len(carol.settle()) == 2


def test_a_contact_is_waited_for_once_per_run(prosody, bot, person, tmp_path, announced,
                                              spool_dir):
    """A contact whose server does not answer in time gets presence_grace, but once: the
    run's queued message for them does not wait for them again."""
    from cvsmsg.spool import Spool

    config = slow_grace(prosody, bot, tmp_path, grace=1)
    with config.open("a") as fh:
        fh.write("coalesce_seconds = 0\n")  # the queued message is ready at once
    dave = person(None, domain=SLOW_DOMAIN)
    Spool(spool_dir).add(dave.jid, "CVS Watch Alarm", "proj queued.txt\n---\nBy bob")
    result = bot.run("-v", dave.jid, config=config)
    assert result.returncode == 10, result.stderr
    assert result.stderr.count(f"no presence from {dave.jid} within 1 s") == 1
    # waiting again for the queued message's recipient ran into the run's deadline
    assert "no time left" not in result.stderr, result.stderr
    assert f"withheld from {dave.jid}: offline; queued" in result.stderr


def test_the_server_notes_are_never_read_through_a_link_or_when_others_can_read_it(tmp_path):
    from cvsmsg import servernotes

    path = str(tmp_path / "cvsmsg" / "server-x.marshal")
    assert not servernotes.answers_probes(path, "bot@example.org", "h:5222")  # none yet
    servernotes.note_answers_probes(path, "bot@example.org", "h:5222")
    assert servernotes.answers_probes(path, "bot@example.org", "h:5222")
    assert not servernotes.answers_probes(path, "bot@example.org", "other:5222")
    assert not servernotes.answers_probes(path, "other@example.org", "h:5222")
    link = tmp_path / "cvsmsg" / "server-link.marshal"
    link.symlink_to(path)
    assert not servernotes.answers_probes(str(link), "bot@example.org", "h:5222")
    Path(path).chmod(0o640)
    assert not servernotes.answers_probes(path, "bot@example.org", "h:5222")


def test_a_server_slow_to_close_its_stream_is_not_waited_for(loops, tmp_path_factory):
    """Once what we sent is confirmed, the closing tag is waited for a few round trips
    (RFC 6120 §4.4: "a reasonable amount of time"), not the close's whole bound: ejabberd
    answers </stream:stream> only after ~0.1 s, every run."""
    with own_server(tmp_path_factory, loops, ("close_linger",), "close_linger = 1\n") as (
            server, bot, alice):
        result = bot.run(alice.jid)
        assert result.returncode == 0, result.stderr
        assert len(alice.settle()) == 1

        def ours() -> list[str]:
            return [x for x in server.log.read_text().splitlines()
                    if "close_linger:" in x and f"{bot.jid}/cvsmsg-" in x]

        deadline = time.monotonic() + 5
        while not ours():  # the server's timer fires after 1 s
            assert time.monotonic() < deadline, "the server never saw the connection end"
            time.sleep(0.1)
        [line] = ours()
        assert line.endswith(" ended the connection first"), line
