"""Every path keeps the same promises (issue 8 items 1–2): one subscription policy, and
quiet presence except a bounded announce.

The paths: `notify` (direct), `loginfo`, `flush`, the background deliverer, `check` (one-shot
runs) and `serve` (the daemon). A one-shot run announces (initial presence, which makes the
server hand over subscription requests stored while the bot was offline) only when no run
has announced within `announce_interval`; each test's own spool starts "never announced".
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import Bot
from tests.harness.prosody import OTHER_DOMAIN, Prosody
from tests.harness.recipient import Person
from tests.spoolhelp import cvsmsg, lock_pid, pid_alive, wait_for
from tests.test_check import check
from tests.test_loginfo_cli import ARGS, loginfo
from tests.test_presence_noise import bot_presence
from tests.test_serve import Serve


@dataclass
class Scene:
    """One test's bot and spool, and alice: a mutual contact, online, whom runs notify."""

    bot: Bot
    prosody: Prosody
    dir: Path
    spool: Path
    alice: Person
    settings: dict[str, object] = field(default_factory=dict)
    rules: str = ""  # [[loginfo]] tables, appended to every config

    def config(self, name: str = "one-way.toml", password: str | None = None,
               **extra: object) -> Path:
        """A config on this test's spool with the scene's settings and rules."""
        path = self.prosody.write_cvsmsg_config(
            self.dir / name, self.bot.jid, password or self.bot.password,
            **{**self.settings, **extra},
        )
        with path.open("a") as fh:
            fh.write(self.rules)
        return path

    def expect_message(self, before: int) -> None:
        """alice got one more notification than `before`."""
        assert wait_for(lambda: len(self.alice.settle()) > before, 15), "alice got nothing"


@pytest.fixture
def scene(bot, person, prosody, tmp_path, spool_dir) -> Scene:
    return Scene(bot, prosody, tmp_path, spool_dir, person(""))


# -- the one-shot paths, each run to its end -------------------------------------------------


def run_notify(scene: Scene) -> None:
    before = len(scene.alice.settle())
    result = scene.bot.run(scene.alice.jid, config=scene.config())
    assert result.returncode == 0, result.stderr
    scene.expect_message(before)


def run_loginfo(scene: Scene) -> None:
    before = len(scene.alice.settle())
    result = loginfo(scene.bot, "--to", scene.alice.jid, *ARGS, config=scene.config())
    assert result.returncode == 0, result.stderr
    scene.expect_message(before)


def queue_one(scene: Scene) -> None:
    """Something for flush to deliver, queued by a notify that never logs in (its password
    is wrong), so that queueing it announces nothing and answers nothing."""
    bad = scene.config("bad.toml", password="not-the-password")
    result = scene.bot.run(scene.alice.jid, config=bad)
    assert result.returncode == 4, result.stderr
    assert result.stderr.endswith("; queued for later delivery\n"), result.stderr


def run_flush(scene: Scene) -> None:
    queue_one(scene)
    before = len(scene.alice.settle())
    result = cvsmsg("flush", "--config", str(scene.config()))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"delivered to {scene.alice.jid}: 1 notification\n"
    scene.expect_message(before)


def run_deliverer(scene: Scene) -> None:
    """`notify` in background mode only writes the spool; the detached deliverer connects."""
    config = scene.config("bg.toml", delivery="background", coalesce_seconds=0)
    before = len(scene.alice.settle())
    result = scene.bot.run(scene.alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: queued for {scene.alice.jid}: background delivery\n"
    scene.expect_message(before)
    pid = lock_pid(scene.spool, "deliver")
    if pid is not None:  # it lingers for more hand-offs, then leaves
        assert wait_for(lambda: not pid_alive(pid), 15), "the deliverer did not exit"


def run_check(scene: Scene) -> None:
    result = check(scene.bot, scene.alice.jid, config=scene.config())
    assert result.returncode == 0, result.stdout + result.stderr


ONE_SHOT: dict[str, Callable[[Scene], None]] = {
    "notify": run_notify,
    "loginfo": run_loginfo,
    "flush": run_flush,
    "deliverer": run_deliverer,
    "check": run_check,
}


@contextlib.contextmanager
def serving(config: Path, log: Path) -> Iterator[Serve]:
    """`cvsmsg serve`, connected, for the block; stopped with SIGTERM after it."""
    server = Serve(config, log)
    try:
        server.wait_connected()
        yield server
        assert server.stop() == 0, server.text()
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait(5)


# -- 1. one subscription policy on every path ------------------------------------------------


def assert_refused(p: Person, heard: list[tuple[str, str]], bot_jid: str) -> None:
    assert wait_for(lambda: (bot_jid, "unsubscribed") in heard, 5), (p.jid, heard)
    assert p.roster_item(bot_jid) == ("none", False)  # no subscription, nothing pending
    assert (bot_jid, "subscribed") not in heard
    assert p.subscription_requests == []  # not asked back


def assert_accepted(p: Person, heard: list[tuple[str, str]], bot_jid: str) -> None:
    assert wait_for(lambda: p.roster_subscription(bot_jid) == "both", 5, step=0.1), p.jid
    assert (bot_jid, "subscribed") in heard
    assert p.subscription_requests == [bot_jid]  # asked back, once


@pytest.mark.parametrize("path", [*ONE_SHOT, "serve"])
def test_stranger_is_refused_and_listed_people_accepted(path, scene, person, tmp_path):
    """A stranger from another domain is refused; someone in `subscribers` and a
    `[[loginfo]]` recipient (both from another domain too) are accepted and asked back."""
    bot_jid = scene.bot.jid
    stranger, fan, follower = (person("", friend=False, domain=OTHER_DOMAIN, name=n)
                               for n in ("stranger", "fan", "follower"))
    heard = {p.jid: p.track_presence() for p in (stranger, fan, follower)}
    scene.settings["subscribers"] = [fan.jid]
    scene.rules = f'[[loginfo]]\nmatch = "^elsewhere(/|$)"\nto = ["{follower.jid}"]\n'

    def ask() -> None:
        for p in (stranger, fan, follower):
            p.send_presence(bot_jid, "subscribe")

    def answered() -> None:
        assert_refused(stranger, heard[stranger.jid], bot_jid)
        assert_accepted(fan, heard[fan.jid], bot_jid)
        assert_accepted(follower, heard[follower.jid], bot_jid)

    if path == "serve":
        with serving(scene.config(), tmp_path / "serve.log"):
            ask()  # serve is online: it answers at once
            answered()
        return
    ask()  # no cvsmsg runs: the server stores the requests
    for p in (stranger, fan, follower):
        assert p.roster_item(bot_jid) == ("none", True)
    ONE_SHOT[path](scene)  # a fresh spool: this run announces, so it gets them
    answered()


# -- 2. quiet presence: nobody sees the bot come online, except the bounded announce ---------


def shown_online(observer: Person, bot_jid: str, since: int) -> list[str]:
    """The bot's presences the observer received after the first `since`, minus the
    `unavailable` ones: what would show the bot online in a contact list."""
    return [t for t in bot_presence(observer, bot_jid)[since:] if t != "unavailable"]


@pytest.mark.parametrize("path", list(ONE_SHOT))
def test_no_path_shows_the_bot_online_once_announced(path, scene, person):
    observer = person("", name="observer")  # a mutual contact of the bot, online
    scene.settings["announce_interval"] = "1h"
    start = len(bot_presence(observer, scene.bot.jid))
    run_notify(scene)
    # a fresh spool has never announced: this run does, and contacts see it
    assert wait_for(lambda: bot_presence(observer, scene.bot.jid)[start:] == [
        "available", "unavailable"], 5), bot_presence(observer, scene.bot.jid)[start:]
    seen = len(bot_presence(observer, scene.bot.jid))
    ONE_SHOT[path](scene)  # within the interval: quiet
    assert shown_online(observer, scene.bot.jid, seen) == [], f"{path} showed the bot online"


def test_serve_is_seen_once_at_start(scene, person, tmp_path):
    observer = person("", name="observer")
    scene.settings["announce_interval"] = "1h"
    run_notify(scene)  # the stamp is fresh: serve announces all the same, it is online
    seen = len(bot_presence(observer, scene.bot.jid))
    with serving(scene.config(), tmp_path / "serve.log"):
        assert wait_for(lambda: bot_presence(observer, scene.bot.jid)[seen:] == ["available"],
                        10), bot_presence(observer, scene.bot.jid)[seen:]
        run_notify(scene)  # handed to serve, which delivers it: nothing more to see
        assert bot_presence(observer, scene.bot.jid)[seen:] == ["available"]
    assert wait_for(lambda: bot_presence(observer, scene.bot.jid)[seen:] == [
        "available", "unavailable"], 10)


def test_announce_mode_is_seen_on_every_run(scene, person):
    """The control: the observer does notice a run that announces."""
    observer = person("", name="observer")
    scene.settings.update(presence="announce", announce_interval="1h")
    seen = len(bot_presence(observer, scene.bot.jid))
    run_notify(scene)
    run_notify(scene)
    assert wait_for(lambda: bot_presence(observer, scene.bot.jid)[seen:] == [
        "available", "unavailable"] * 2, 5), bot_presence(observer, scene.bot.jid)[seen:]


# -- 3. a stored request is answered within the interval's bound -----------------------------

INTERVAL = 3.0


def test_stored_requests_are_answered_within_the_interval(scene, person):
    bot_jid = scene.bot.jid
    carol = person("", friend=False, name="carol")
    dave = person("", friend=False, name="dave")
    scene.settings["announce_interval"] = f"{INTERVAL:g}s"
    carol.send_presence(bot_jid, "subscribe")  # no cvsmsg runs: the server stores it
    assert carol.roster_item(bot_jid) == ("none", True)

    first = time.monotonic()
    run_notify(scene)  # to alice, someone else, on a fresh spool
    announced_by = time.monotonic()
    assert wait_for(lambda: carol.roster_subscription(bot_jid) == "both", 5, step=0.1)
    assert carol.subscription_requests == [bot_jid]  # asked back
    assert carol.settle() == []  # she is no recipient

    dave.send_presence(bot_jid, "subscribe")
    assert time.monotonic() - first < INTERVAL, "too slow to run within the interval"
    run_notify(scene)  # within the interval: no announce, dave's request waits
    assert dave.roster_item(bot_jid) == ("none", True)
    assert dave.subscription_requests == []

    time.sleep(max(0.0, announced_by + INTERVAL + 0.3 - time.monotonic()))
    run_notify(scene)  # the interval has passed: this run announces and answers
    assert wait_for(lambda: dave.roster_subscription(bot_jid) == "both", 5, step=0.1)
    assert dave.subscription_requests == [bot_jid]
