"""Group-chat rooms (XEP-0045): `notify --room` and `[[loginfo]]` rules with `rooms` post one
groupchat message per notification; a room the bot cannot join is exit 8, one line, and
the message queued until `cvsmsg flush` can deliver it.

A Prosody of this module's own with a MUC component (the session one has none); real
slixmpp people create, configure and sit in the rooms; the real `cvs` commits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cvsmsg.spool import BadMessage, Defaults, Spool, parse_message
from tests.harness.prosody import OTHER_DOMAIN, Prosody
from tests.test_loginfo_e2e import LOG, assert_clean, cvsmsg_lines, make_repo

MUC = "conference.localhost"
TEXT = "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"
_rooms = iter(range(1, 10_000))


@pytest.fixture(scope="module")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    """This module's server: the session's, plus a group-chat service on MUC."""
    server = Prosody(tmp_path_factory.mktemp("prosody-muc"), extra_domains=(OTHER_DOMAIN,),
                     muc_domain=MUC)
    server.start()
    yield server
    server.stop()


def new_room() -> str:
    return f"dev{next(_rooms)}@{MUC}"


def localpart(jid: str) -> str:
    return jid.partition("@")[0]


def test_notify_room_posts_one_groupchat_message_without_history(bot, person):
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "owner")

    result = bot.run("--room", room, "--debug")

    assert result.returncode == 0, result.stderr
    assert f"cvsmsg: delivered to room {room}" in result.stderr.splitlines()
    assert 'maxstanzas="0"' in result.stderr  # no history requested
    owner.settle()
    [msg] = seen
    assert (msg.sender, msg.type) == (localpart(bot.jid), "groupchat")
    assert msg.body == "CVS Watch Alarm\n" + TEXT.rstrip("\n")
    assert owner.messages == []  # nothing else reached the owner


def test_room_nick_from_config_and_a_taken_nick(bot, person, prosody, tmp_path):
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "cvs")  # someone already uses the configured nick
    config = prosody.write_cvsmsg_config(tmp_path / "nick.toml", bot.jid, bot.password,
                                         room_nick="cvs")

    result = bot.run("--room", room, config=config)

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: delivered to room {room}\n"
    owner.settle()
    assert [(m.sender, m.type) for m in seen] == [("cvs-2", "groupchat")]


def test_commit_routed_to_a_room(bot, person, prosody, tmp_path):
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "owner")
    config = prosody.write_cvsmsg_config(tmp_path / "c.toml", bot.jid, bot.password)
    with config.open("a") as fh:
        fh.write(f"\n[[loginfo]]\nmatch = '^proj(/|$)'\nrooms = [\"{room}\"]\n")
    repo = make_repo(tmp_path, "local", config)
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("alpha, changed\n")

    first = bob.cvs("commit", "-m", LOG)
    (bob.path / "a.txt").write_text("alpha, changed again\n")
    second = bob.cvs("commit", "-m", "second")

    for result in (first, second):
        assert_clean(result)
        assert cvsmsg_lines(result.stderr) == [f"cvsmsg: delivered (commit) to room {room}"]
    owner.settle()
    assert [m.body.splitlines()[0] for m in seen] == ["CVS commit: proj by bob"] * 2
    assert seen[0].body == (
        "CVS commit: proj by bob\n"
        f"Commit by bob in {repo.root}/proj\n"
        "\n"
        "Modified:\n"
        "  a.txt 1.1.1.1 -> 1.2\n"
        "\n"
        f"Log message:\n{LOG}"
    )
    assert seen[1].body.endswith("Log message:\nsecond")


def test_members_only_room_is_exit_8_queued_then_flushed(bot, person):
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "owner", membersonly=True)

    result = bot.run("--room", room)

    assert result.returncode == 8, result.stderr
    assert result.stderr == (
        f"cvsmsg: error: cannot join room {room}: members-only (registration-required); "
        "queued for later delivery\n"
    )
    queue = bot.run(command="queue", input=None)
    assert queue.returncode == 0, queue.stderr
    [row] = [line for line in queue.stdout.splitlines() if room in line]
    assert row.endswith(f"cannot join room {room}: members-only (registration-required)")

    owner.configure_room(room, members=(bot.jid,))
    flushed = bot.run(command="flush", input=None)

    assert flushed.returncode == 0, flushed.stderr + flushed.stdout
    assert flushed.stdout == f"delivered to {room}: 1 notification\n"
    owner.settle()
    [msg] = seen
    assert msg.sender == localpart(bot.jid)
    assert msg.body.startswith("CVS Watch Alarm\n") and TEXT.rstrip("\n") in msg.body
    assert "no messages queued" in bot.run(command="queue", input=None).stdout


def test_a_room_that_does_not_exist_is_not_created(bot, person):
    room = new_room()
    result = bot.run("--room", room, "--room", "no-service", "-q")

    assert result.returncode == 7, result.stderr  # the invalid address outranks exit 8
    assert result.stderr.splitlines() == [
        "cvsmsg: error: room no-service has no service: write room@conference.example.org",
        f"cvsmsg: error: cannot join room {room}: no such room (item-not-found: the bot "
        "would have created it); queued for later delivery",
    ]
    result = bot.run("--room", room, "-q")
    assert result.returncode == 8, result.stderr


def test_room_delivery_shows_no_presence_to_the_bots_contacts(bot, person, announced):
    friend = person("")  # a contact of the bot, online, who would see the bot come online
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "owner")
    tracked = friend.track_presence()

    result = bot.run("--room", room, friend.jid)

    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"cvsmsg: delivered to {friend.jid}: available",
        f"cvsmsg: delivered to room {room}",
    ]
    friend.settle()
    owner.settle()
    assert len(seen) == 1 and len(friend.messages) == 1
    assert [p for p in tracked if p[0] == bot.jid] == []


def test_background_delivery_to_a_room(bot, person, prosody, tmp_path):
    owner = person("", friend=False)
    room = new_room()
    seen = owner.join_room(room, "owner")
    config = prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                         delivery="background", coalesce_seconds=0)

    result = bot.run("--room", room, config=config)

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for room {room}: background delivery\n"
    import time

    deadline = time.monotonic() + 15
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    owner.settle()
    assert [m.sender for m in seen] == [localpart(bot.jid)]


# -- the spool format: a room entry remembers it is for a room ----------------------------


def test_spool_room_header(tmp_path: Path):
    spool = Spool(tmp_path / "spool")
    entry = spool.add("dev@conference.localhost", "s", "body", room=True)
    raw = spool.file_of(entry.id).read_bytes()
    assert b"\nroom: 1\n" in raw
    assert spool.read(entry.id) == entry and entry.room
    person = spool.add("alice@localhost", "s", "body")
    assert b"room:" not in spool.file_of(person.id).read_bytes()
    assert spool.read(person.id).room is False
    with pytest.raises(BadMessage, match="bad room '2'"):
        parse_message("x", raw.replace(b"room: 1", b"room: 2"), Defaults(), 0.0)


# -- the config: `rooms` beside `to`, `room_nick` -------------------------------------------


def _load(tmp_path: Path, text: str):
    from cvsmsg.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('jid = "bot@localhost"\npassword = "x"\n' + text)
    path.chmod(0o600)
    return load_config(path, {})


def test_config_rooms_and_room_nick(tmp_path: Path):
    from cvsmsg.errors import ConfigError
    from cvsmsg.loginfo import route

    cfg = _load(tmp_path, 'room_nick = "cvs"\n[[loginfo]]\nmatch = "^proj"\n'
                          'to = ["a@localhost"]\nrooms = ["Dev@Conference.Localhost", '
                          '"dev@conference.localhost"]\n')
    assert cfg.room_nick == "cvs"
    assert route("proj", cfg.loginfo) == ["a@localhost"]
    assert route("proj", cfg.loginfo, rooms=True) == ["dev@conference.localhost"]
    assert _load(tmp_path, "").room_nick is None
    with pytest.raises(ConfigError, match=r"\[\[loginfo\]\] number 1: room dev has no service"):
        _load(tmp_path, '[[loginfo]]\nmatch = "ALL"\nrooms = ["dev"]\n')
    with pytest.raises(ConfigError, match="'room_nick' must be 1-64 printable characters"):
        _load(tmp_path, 'room_nick = "a\\nb"\n')
