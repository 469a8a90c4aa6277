"""Fixtures: a real Prosody for the session, real accounts and recipients per test."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.prosody import OTHER_DOMAIN, Prosody
from tests.harness.recipient import LoopThread, Person, befriend

_ids = itertools.count(1)


def cvsmsg_command() -> list[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("cvsmsg")
    if script.exists():
        return [str(script)]
    found = shutil.which("cvsmsg")
    if found is None:
        raise RuntimeError("cvsmsg is not installed in this environment (pip install -e .)")
    return [found]


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    server = Prosody(tmp_path_factory.mktemp("prosody"), extra_domains=(OTHER_DOMAIN,))
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own spool: every cvsmsg it runs queues there (the environment beats
    the config file), never into the machine's /var/spool/cvsmsg; likewise its cache."""
    path = tmp_path / "spool"
    monkeypatch.setenv("CVSMSG_SPOOL_DIR", str(path))
    # The tests run as root: a root run creates a shared spool only with a group given.
    monkeypatch.setenv("CVSMSG_SPOOL_GROUP", "root")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # nothing in ~/.cache
    return path


@pytest.fixture
def announced(spool_dir: Path) -> Path:
    """As if a run had just announced: runs within announce_interval (default 10 minutes)
    stay quiet, only probing their recipients. A fresh spool announces on its first run."""
    from cvsmsg.spool import Spool

    Spool(spool_dir).mark_announced()
    return spool_dir


@pytest.fixture(scope="session")
def loops() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.stop()


def unique(prefix: str) -> str:
    return f"{prefix}{os.getpid()}x{next(_ids)}"


@dataclass
class Bot:
    """The cvsmsg account of one test, with a config file and a way to run the CLI."""

    jid: str
    password: str
    config: Path
    prosody: Prosody

    def run(
        self,
        *args: str,
        input: bytes | str | None = "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n",
        env: dict[str, str] | None = None,
        timeout: float = 30,
        config: Path | None = None,
        command: str = "notify",
    ) -> subprocess.CompletedProcess[str]:
        """`cvsmsg COMMAND --config … ARGS`, stdin from `input`; text stdout/stderr."""
        data = input.encode() if isinstance(input, str) else input
        full_env = {**os.environ, **(env or {})}
        proc = subprocess.run(
            [*cvsmsg_command(), command, "--config", str(config or self.config), *args],
            input=data if data is not None else b"",
            capture_output=True,
            env=full_env,
            timeout=timeout,
            check=False,
        )
        return subprocess.CompletedProcess(
            proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )


# Test-only Prosody modules (plugin_paths) that make it behave like other servers.
TEST_MODULES = Path(__file__).parent / "harness" / "prosody_modules"


@contextlib.contextmanager
def own_server(
    tmp_path_factory: pytest.TempPathFactory, loops: LoopThread, modules: tuple[str, ...],
    extra_config: str = "",
) -> Iterator[tuple[Prosody, Bot, Person]]:
    """A test's own Prosody with `modules` (from TEST_MODULES) added, its bot, and alice:
    online, and a mutual contact of the bot."""
    server = Prosody(
        tmp_path_factory.mktemp("own-prosody"),
        modules=(*Prosody.modules, *modules),
        extra_config=f'plugin_paths = {{ "{TEST_MODULES}" }}\n{extra_config}',
    )
    server.start()
    try:
        name, user = unique("bot"), unique("user")
        password = "pw-" + name
        jid = server.register(name, password)
        config = server.write_cvsmsg_config(tmp_path_factory.mktemp("c") / "c.toml", jid,
                                            password)
        alice = Person(loops, server.register(user, "pw"), "pw", server.port, server.ca)
        alice.online("")
        befriend(loops, jid, password, alice)
        yield server, Bot(jid, password, config, server), alice
        alice.offline()
    finally:
        server.stop()


@pytest.fixture
def bot(prosody: Prosody, tmp_path: Path) -> Bot:
    name = unique("bot")
    password = "bot-secret-" + name
    jid = prosody.register(name, password)
    config = prosody.write_cvsmsg_config(tmp_path / "cvsmsg.toml", jid, password)
    return Bot(jid, password, config, prosody)


@pytest.fixture
def person(
    prosody: Prosody, loops: LoopThread, bot: Bot
) -> Iterator[Callable[..., Person]]:
    """Factory: a registered person, online with `show`, mutual contact of the bot by default."""
    people: list[Person] = []

    def make(
        show: str | None = "", *, friend: bool = True, name: str = "user",
        auto_accept: bool = True, domain: str | None = None,
    ) -> Person:
        user = unique(name)
        password = "pw-" + user
        jid = prosody.register(user, password, domain)
        p = Person(loops, jid, password, prosody.port, prosody.ca)
        people.append(p)
        p.online(show or "", auto_accept=auto_accept)
        if friend:
            befriend(loops, bot.jid, bot.password, p)
        if show is None:
            p.offline()
        return p

    yield make
    for p in people:
        # a test may have left it half-closed; the server is torn down anyway
        with contextlib.suppress(Exception):
            p.offline()
