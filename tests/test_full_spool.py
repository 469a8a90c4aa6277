"""A full spool disk in the background hand-off: what was written is queued, what was not
goes directly (within the deadline), and nobody gets it twice; no line says "queued" for a
file that was never written. A real 16 KiB tmpfs as the spool, real Prosody."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.prosody import free_port
from tests.spoolhelp import notice, small_tmpfs, spool_files, wait_for


@pytest.fixture
def small_spool(tmp_path: Path) -> Iterator[Path]:
    """A spool on a 16 KiB tmpfs (four pages), unmounted whatever happens (lazily: a
    deliverer may still hold a file there)."""
    with small_tmpfs(tmp_path / "small") as mnt:
        yield mnt / "spool"


@pytest.fixture
def bg_config(bot, prosody, tmp_path):
    return prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                       delivery="background", coalesce_seconds=0.3)


def full_line(spool: Path, *jids: str) -> str:
    return (f"cvsmsg: cannot write to spool directory {spool}: No space left on device: "
            f"delivering directly to {', '.join(jids)}")


def test_a_message_bigger_than_the_free_space_goes_directly(bot, person, bg_config,
                                                            small_spool):
    alice = person("")
    text = notice() + "x" * 100_000 + "\n"
    result = bot.run(alice.jid, config=bg_config, input=text,
                     env={"CVSMSG_SPOOL_DIR": str(small_spool)})
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [
        full_line(small_spool, alice.jid),
        f"cvsmsg: delivered to {alice.jid}: available",
    ]
    [msg] = alice.wait_messages(1, 10)
    assert msg.body == text.rstrip("\n")
    assert spool_files(small_spool) == []
    assert [n for n in small_spool.iterdir() if n.name.startswith(".tmp-")] == []


def test_the_first_recipient_queued_the_second_direct_each_once(bot, person, bg_config,
                                                                small_spool):
    """The first file fits (3 of 4 pages), the second does not: the first recipient is
    queued (the deliverer brings it), only the second goes directly."""
    alice, bob = person(""), person("")
    text = notice() + "y" * 9000 + "\n"
    result = bot.run(alice.jid, bob.jid, config=bg_config, input=text,
                     env={"CVSMSG_SPOOL_DIR": str(small_spool)})
    assert (result.returncode, result.stdout) == (0, "")
    assert result.stderr.splitlines() == [
        full_line(small_spool, bob.jid),
        f"cvsmsg: queued for {alice.jid}: background delivery",
        f"cvsmsg: delivered to {bob.jid}: available",
    ]
    assert [m.body for m in alice.wait_messages(1, 15)] == [text.rstrip("\n")]
    assert wait_for(lambda: spool_files(small_spool) == [], 10)
    time.sleep(1)  # what a second copy would need to arrive (there must be none)
    assert [m.body for m in alice.settle()] == [text.rstrip("\n")]
    assert [m.body for m in bob.settle()] == [text.rstrip("\n")]


def test_full_spool_and_no_server_is_an_honest_failure(bot, prosody, tmp_path, small_spool):
    config = prosody.write_cvsmsg_config(tmp_path / "down.toml", bot.jid, bot.password,
                                         delivery="background",
                                         server=f"127.0.0.1:{free_port()}", timeout=2)
    result = bot.run("alice@localhost", config=config, input=notice() + "z" * 100_000,
                     env={"CVSMSG_SPOOL_DIR": str(small_spool)})
    assert result.returncode == 5, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == full_line(small_spool, "alice@localhost")
    assert lines[-1].startswith("cvsmsg: error: ")
    assert lines[-1].endswith(f"; could not queue the message: cannot write to spool "
                              f"directory {small_spool}: No space left on device")
    assert "queued for" not in result.stderr
    assert spool_files(small_spool) == []
