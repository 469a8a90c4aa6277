"""What the background hand-off loads: CVS waits for it once per watcher and file, so it
imports only what a hand-off uses. Timings are `make bench`'s (row 2a); these tests check
which modules a run loaded (`-X importtime`) and that it still says what it said."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.spoolhelp import notice, wait_for

# Never needed to queue a message: logging until something is logged at a level that
# shows; dataclasses (cvsmsg.record instead); the rest belong to direct delivery, the
# deliverer or click.
NOT_ON_THE_HAND_OFF = {"logging", "asyncio", "slixmpp", "click", "subprocess", "dataclasses"}


@pytest.fixture
def bg_config(bot, prosody, tmp_path):
    return prosody.write_cvsmsg_config(tmp_path / "bg.toml", bot.jid, bot.password,
                                       delivery="background", coalesce_seconds=0.2)


def hand_off(config, *args: str, text: str = notice()) -> tuple[subprocess.CompletedProcess[str],
                                                                set[str]]:
    """`cvsmsg notify` as the console script runs it, with -X importtime: the result
    (importtime's lines taken out of stderr) and the modules it imported."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "cvsmsg", "notify", "--config",
         str(config), *args],
        input=text, capture_output=True, text=True, timeout=30, check=False,
    )
    lines = result.stderr.splitlines(keepends=True)
    modules = {line.rsplit("|", 1)[-1].strip() for line in lines
               if line.startswith("import time:")}
    result.stderr = "".join(line for line in lines if not line.startswith("import time:"))
    return result, modules


@pytest.mark.parametrize("text", [notice(), "a text without CVS's By line\n"],
                         ids=["cvs-notice", "plain-text"])
def test_the_hand_off_loads_no_logging_asyncio_slixmpp_click_subprocess_or_dataclasses(
        bot, person, bg_config, text):
    alice = person("")
    result, modules = hand_off(bg_config, alice.jid, text=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for {alice.jid}: background delivery\n"
    assert result.stdout == ""
    assert "cvsmsg.spool" in modules  # the importtime lines were read
    assert modules & NOT_ON_THE_HAND_OFF == set()
    [msg] = alice.wait_messages(1, 15)  # and the deliverer it started delivers
    assert msg.body == text.rstrip("\n")


def test_a_cached_config_is_not_parsed_again(bot, person, bg_config):
    """The quick start's config (password_file): from the second run on, the parsed file
    comes from the per-user cache (tomlcache), so tomllib is not loaded; nor is socket
    (the recipient checks use _socket's functions), nor re: the [[loginfo]] regexes were
    checked before the parse was cached."""
    secret = bg_config.with_name("password")
    secret.write_text(bot.password + "\n")
    secret.chmod(0o600)
    bg_config.write_text(bg_config.read_text().replace(f'password = "{bot.password}"',
                                                       f'password_file = "{secret}"'))
    bg_config.write_text(bg_config.read_text()
                         + '\n[[loginfo]]\nmatch = "^proj(/|$)"\nto = ["a@localhost"]\n')
    alice = person("")
    first, modules = hand_off(bg_config, alice.jid)
    assert first.returncode == 0, first.stderr
    assert {"tomllib", "re"} <= modules  # parsed, its [[loginfo]] regexes compiled
    second, modules = hand_off(bg_config, alice.jid)
    assert (second.returncode, second.stderr) == (0, first.stderr)
    # nor re, enum, pathlib (~10 ms together: paths are strings on this path)
    assert modules & {"tomllib", "socket", "re", "enum", "pathlib"} == set()


def test_a_line_below_the_level_loads_no_logging_one_above_it_is_shown(bot, person,
                                                                        bg_config):
    alice = person("")
    text = notice().replace("By bob", "By bob\x01")  # removed, with an info line
    result, modules = hand_off(bg_config, alice.jid, text=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for {alice.jid}: background delivery\n"
    assert "logging" not in modules

    result, modules = hand_off(bg_config, "-v", alice.jid, text=text)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ("cvsmsg: removed 1 control character(s) XML cannot carry\n"
                             f"cvsmsg: queued for {alice.jid}: background delivery\n")
    assert "logging" in modules
    assert wait_for(lambda: sum(m.body.count("Triggered edit watch")  # perhaps one digest
                                for m in alice.settle()) == 2, 15)


def test_an_error_on_the_hand_off_path_is_still_one_line(bot, bg_config):
    result, _modules = hand_off(bg_config, "bad address@")
    assert result.returncode == 7
    assert result.stderr.startswith("cvsmsg: error: ")
    assert result.stderr.count("\n") == 1


def test_a_record_behaves_as_the_frozen_dataclass_it_replaces():
    from cvsmsg.config import Config
    from cvsmsg.record import replace
    from cvsmsg.report import Outcome

    one = Outcome("a@x", False, "dnd", handed_off=True)
    assert one == Outcome(recipient="a@x", delivered=False, reason="dnd", handed_off=True)
    assert (one.failed, one.room) == (False, False)  # defaults
    assert hash(one) == hash(replace(one))
    assert replace(one, reason="x") == Outcome("a@x", False, "x", handed_off=True)
    assert repr(one) == ("Outcome(recipient='a@x', delivered=False, reason='dnd', failed=False, "
                         "handed_off=True, room=False, earlier=False)")
    with pytest.raises(AttributeError):
        one.reason = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        Outcome("a@x", False)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Outcome("a@x", False, "r", bogus=1)  # type: ignore[call-arg]
    cfg = Config("bot@x", "s3cret")
    assert "s3cret" not in repr(cfg)  # as field(repr=False) did
    assert replace(cfg, delivery="background").delivery == "background"


# The console script's own call, reporting every garbage collection that starts once
# main() is running (counts reset just before), and the threshold at a normal exit.
COUNTING_COLLECTIONS = (
    "import atexit, gc, sys\n"
    "from cvsmsg.main import main\n"
    "running = []\n"
    "def report(phase, info):\n"
    "    if phase == 'start' and running:\n"
    "        sys.stderr.write(f'collection of generation {info[\"generation\"]}\\n')\n"
    "gc.callbacks.append(report)\n"
    "atexit.register(lambda: sys.stderr.write(f'threshold {gc.get_threshold()[0]}\\n'))\n"
    "sys.argv = ['cvsmsg', *sys.argv[1:]]\n"
    "gc.collect()\n"
    "running.append(True)\n"
    "sys.exit(main())\n"
)


def test_a_direct_notify_makes_no_garbage_collection_pass(bot, person):
    """A one-shot run raises the collector's threshold (cvsmsg.main.GC_THRESHOLD): the
    ~50 passes over the modules being imported cost a direct notify 10-15 ms."""
    alice = person("")
    result = subprocess.run(
        [sys.executable, "-c", COUNTING_COLLECTIONS, "notify", "--config", str(bot.config),
         alice.jid],
        input=notice(), capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    # no collection, and os._exit after the ack: no interpreter shutdown either
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert [m.body for m in alice.settle()] == [notice().rstrip("\n")]


def test_other_commands_keep_the_default_threshold(bot):
    """`cvsmsg queue` (and the long-lived serve, flush and deliverer) keep Python's
    collector as it is."""
    result = subprocess.run(
        [sys.executable, "-c", COUNTING_COLLECTIONS, "queue", "--config", str(bot.config)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "threshold 700\n" in result.stderr
    assert "collection of generation 0\n" in result.stderr


def test_a_direct_notify_with_nothing_queued_loads_no_drainer(bot, person):
    """The drainer (and the digests) are loaded only when the spool holds something to
    hand over in the same session."""
    alice = person("")
    result, modules = hand_off(bot.config, alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert "slixmpp" in modules
    assert modules & {"cvsmsg.drain", "cvsmsg.digest"} == set()
