"""Content hygiene end to end: what reaches the recipient, and what never reaches the wire."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Bot, unique
from tests.harness.prosody import Prosody
from tests.harness.recipient import Person, befriend


def test_empty_input_is_not_sent(bot, person):
    alice = person("")
    for data in (b"", b"  \n\r\n\t\n"):
        result = bot.run(alice.jid, input=data)
        assert result.returncode == 2
        assert result.stderr == "cvsmsg: error: the message is empty; nothing was sent\n"
    assert alice.settle() == []


def test_binary_input_is_refused(bot, person):
    alice = person("")
    result = bot.run(alice.jid, input=bytes(range(256)) * 4)
    assert result.returncode == 2
    assert result.stderr == (
        "cvsmsg: error: input is binary (it contains NUL bytes); nothing was sent\n"
    )
    assert alice.settle() == []


def test_latin1_lines_are_read_as_latin1_not_fatal(bot, person):
    alice = person("")
    text = "Log: café naïve “quoted”\nUTF-8: café\n".encode()
    latin = "Log: café naïve “quoted”".encode("cp1252") + b"\nUTF-8: caf\xc3\xa9\n"
    result = bot.run(alice.jid, input=latin)
    assert result.returncode == 0, result.stderr
    assert [m.body for m in alice.settle()] == [text.decode().rstrip("\n")]


def test_xml_illegal_characters_are_removed(bot, person):
    alice = person("")
    result = bot.run(alice.jid, input="bell\x07 esc\x1b[1m <tag> & \"q\" ünï\x0b\n".encode())
    assert result.returncode == 0, result.stderr
    assert [m.body for m in alice.settle()] == ['bell esc[1m <tag> & "q" ünï']


def test_crlf_input_is_normalised(bot, person):
    alice = person("")
    result = bot.run(alice.jid, input=b"proj a.txt\r\n---\r\nBy bob\r\n")
    assert result.returncode == 0, result.stderr
    assert [m.body for m in alice.settle()] == ["proj a.txt\n---\nBy bob"]


def test_control_characters_in_subject_are_removed(bot, person):
    alice = person("")
    result = bot.run("--subject", "CVS\x07 alarm", alice.jid)
    assert result.returncode == 0, result.stderr
    assert [m.subject for m in alice.settle()] == ["CVS alarm"]


def test_huge_input_is_split_into_numbered_parts(bot, person):
    alice = person("")
    lines = [f"{i:06d} " + "<&\"" * 40 + " ü ]]>" for i in range(1500)]
    text = "\n".join(lines)  # ≈ 0.9 MB once escaped; parts go as CDATA, "]]>" split
    result = bot.run(alice.jid, input=text.encode())
    assert result.returncode == 0, result.stderr
    msgs = alice.settle()
    total = len(msgs)
    assert total >= 4
    assert [m.subject for m in msgs] == [
        f"CVS Watch Alarm (part {i}/{total})" for i in range(1, total + 1)
    ]
    assert "".join(m.body for m in msgs) == text


def test_too_many_parts_are_cut_with_a_note(bot, person, prosody, tmp_path):
    alice = person("")
    config = prosody.write_cvsmsg_config(
        tmp_path / "cut.toml", bot.jid, bot.password, max_stanza_bytes=16384, max_parts=2
    )
    text = "\n".join(f"line {i} " + "x" * 100 for i in range(1000))
    result = bot.run(alice.jid, input=text.encode(), config=config)
    assert result.returncode == 0, result.stderr
    assert "cvsmsg: message too long: sent 2 parts" in result.stderr
    msgs = alice.settle()
    assert [m.subject for m in msgs] == ["CVS Watch Alarm (part 1/2)", "CVS Watch Alarm (part 2/2)"]
    assert "more bytes not sent; the message exceeded 2 parts]" in msgs[-1].body


# -- a server with a small stanza limit ------------------------------------------------


@pytest.fixture(scope="module")
def small_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    server = Prosody(
        tmp_path_factory.mktemp("small-prosody"), extra_config="c2s_stanza_size_limit = 20000\n"
    )
    server.start()
    yield server
    server.stop()


@pytest.fixture
def small_pair(small_server: Prosody, loops, tmp_path: Path) -> Iterator[tuple[Bot, Person]]:
    name, user = unique("bot"), unique("user")
    bot_jid = small_server.register(name, "pw-" + name)
    config = small_server.write_cvsmsg_config(tmp_path / "c.toml", bot_jid, "pw-" + name)
    jid = small_server.register(user, "pw-" + user)
    alice = Person(loops, jid, "pw-" + user, small_server.port, small_server.ca).online("")
    befriend(loops, bot_jid, "pw-" + name, alice)
    yield Bot(bot_jid, "pw-" + name, config, small_server), alice
    alice.offline()


def test_stanza_over_server_limit_is_reported(small_pair):
    bot, alice = small_pair
    result = bot.run(alice.jid, input=("x" * 60 + "\n") * 1000)
    assert result.returncode == 7
    assert result.stderr.startswith(
        "cvsmsg: error: the server rejected the message and closed the stream (policy-violation"
    )
    assert "lower max_stanza_bytes" in result.stderr


def test_max_stanza_bytes_splits_to_fit_the_server(small_pair, tmp_path):
    bot, alice = small_pair
    config = bot.prosody.write_cvsmsg_config(
        tmp_path / "fit.toml", bot.jid, bot.password, max_stanza_bytes=20000
    )
    text = ("x" * 60 + "\n") * 999 + "end"
    result = bot.run(alice.jid, input=text, config=config)
    assert result.returncode == 0, result.stderr
    msgs = alice.settle()
    assert len(msgs) >= 4
    assert "".join(m.body for m in msgs) == text


# -- a server without stream management or ping: the round trip still confirms -----------


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    server = Prosody(
        tmp_path_factory.mktemp("plain-prosody"),
        modules=("roster", "saslauth", "tls", "disco", "posix"),
    )
    server.start()
    yield server
    server.stop()


def test_without_stream_management_a_round_trip_confirms(plain_server, loops, tmp_path):
    name, user = unique("bot"), unique("user")
    bot_jid = plain_server.register(name, "pw-" + name)
    config = plain_server.write_cvsmsg_config(tmp_path / "c.toml", bot_jid, "pw-" + name)
    jid = plain_server.register(user, "pw-" + user)
    alice = Person(loops, jid, "pw-" + user, plain_server.port, plain_server.ca).online("")
    befriend(loops, bot_jid, "pw-" + name, alice)
    bot = Bot(bot_jid, "pw-" + name, config, plain_server)
    result = bot.run("--debug", alice.jid)
    assert result.returncode == 0, result.stderr
    assert "urn:xmpp:sm:3" not in result.stderr  # the server offered no XEP-0198
    sent = [line for line in result.stderr.splitlines() if "SEND: <" in line]
    message_at = next(i for i, line in enumerate(sent) if "SEND: <message" in line)
    assert any("urn:xmpp:ping" in line for line in sent[message_at + 1:])
    [msg] = alice.settle()
    assert msg.body == "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob"
    alice.offline()
