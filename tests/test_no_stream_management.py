"""A server without XEP-0198 (stream management is optional, and many servers lack it):
a round trip confirms what was sent instead of an ack, on every path."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness.prosody import OTHER_DOMAIN, Prosody


@pytest.fixture(scope="module")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    """This file's server (the `bot` and `person` fixtures use it): no mod_smacks."""
    server = Prosody(
        tmp_path_factory.mktemp("no-sm-prosody"),
        extra_domains=(OTHER_DOMAIN,),
        modules=tuple(m for m in Prosody.modules if m != "smacks"),
    )
    server.write_config()
    assert '"smacks"' not in server.config.read_text()
    server.start()
    yield server
    server.stop()


def test_notify_is_confirmed_by_a_round_trip(bot, person):
    alice = person("")
    result = bot.run("-v", alice.jid)
    assert result.returncode == 0, result.stderr
    assert f"delivered to {alice.jid}: available" in result.stderr
    [msg] = alice.settle()
    assert msg.body == "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob"


def test_a_large_message_goes_in_confirmed_parts(bot, person):
    alice = person("")
    text = "".join(f"line {i:06} <&> of a long diff\n" for i in range(20_000))  # ~600 KB
    result = bot.run(alice.jid, input=text)
    assert result.returncode == 0, result.stderr
    parts = alice.settle()
    assert len(parts) > 1
    assert "".join(m.body for m in parts) == text.rstrip("\n")


def test_withheld_then_flushed(bot, person, spool_dir):
    alice = person("dnd")
    first = bot.run(alice.jid)
    assert first.returncode == 10, first.stderr
    assert alice.settle() == []
    alice.online("")
    flushed = bot.run(command="flush", input=None)
    assert flushed.returncode == 0, flushed.stderr
    assert [m.body.splitlines()[0] for m in alice.settle()] == ["proj a.txt"]
