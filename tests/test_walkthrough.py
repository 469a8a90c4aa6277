"""A new administrator follows the README quick start word for word.

Every shell block of the quick start marked `<!-- walkthrough: WHO -->` is run, in
order, as WHO: `root`, or a real throwaway Unix user (`useradd`, `runuser`) standing in
for `alice` or `bob`. Nothing else of the set-up is done by the test, except what the
README leaves to the reader:

- names and paths are swapped for throwaway ones (SUBSTITUTIONS below): the directories
  live under one temporary directory, the `cvs` group and the users get unique names,
  `example.org` is the test Prosody's domain, and the commented `server`/`ca_file` lines
  of the config are filled in (the test server has no DNS SRV records and a private CA);
- the repository exists before the quick start begins (it says "a repository
  `/srv/cvsroot` with a module `proj`");
- because the system-wide paths are compiled into cvsmsg, every block runs with
  $CVSMSG_CONFIG and $CVSMSG_SPOOL_DIR naming the substituted ones, and PATH starting with
  the substituted /usr/local/bin;
- step 7 (each recipient, in their XMPP client) is done by two XMPP clients: each adds the
  bot and accepts its request.

It installs cvsmsg with `pip install` into the substituted /opt/cvsmsg and uses that copy
and the real `cvs` throughout; it ends with `cvsmsg check` exiting 0 and a person
receiving the edit notification, then the commit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.harness.cvsrepo import cvs_binary
from tests.harness.recipient import Person

ROOT = Path(__file__).resolve().parent.parent
MARK = re.compile(r"<!-- walkthrough: (\w+) -->\n```sh\n(.*?)```", re.S)
SYSTEM_PATHS = ("/usr/src/cvsmsg", "/opt/cvsmsg", "/usr/local/bin", "/usr/local/share/man",
                "/etc/cvsmsg", "/var/spool/cvsmsg", "/srv/cvsroot")


def quick_start_blocks(readme: str) -> list[tuple[str, str]]:
    """(who, shell text) of each marked block of the README's quick start, in order."""
    start = readme.index("\n## Quick start")
    end = readme.index("\n## ", start + 1)
    return MARK.findall(readme[start:end])


@dataclass
class Walk:
    """The throwaway machine state: a directory standing for /, a group, two users."""

    base: Path
    group: str
    users: dict[str, str]  # README name -> Unix name
    substitutions: list[tuple[str, str]] = field(default_factory=list)

    def path(self, system_path: str) -> Path:
        return self.base / system_path.lstrip("/")

    def home(self, who: str) -> Path:
        return self.base / "home" / who

    def substitute(self, text: str) -> str:
        for pattern, replacement in self.substitutions:
            text = re.sub(pattern, lambda _m, r=replacement: r, text, flags=re.M)
        return text

    def env(self, who: str) -> dict[str, str]:
        env = {
            "PATH": f"{self.path('/usr/local/bin')}:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(self.home(who)),
            "LOGNAME": who, "USER": who,
            "LC_ALL": "C.UTF-8",
            "CVSMSG_CONFIG": str(self.path("/etc/cvsmsg") / "config.toml"),
            "CVSMSG_SPOOL_DIR": str(self.path("/var/spool/cvsmsg")),
        }
        # pip's own settings (a local index) come from root's real home
        pip_conf = Path.home() / ".config" / "pip" / "pip.conf"
        if who == "root" and pip_conf.exists():
            env["PIP_CONFIG_FILE"] = str(pip_conf)
        return env

    def run(self, who: str, text: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The block as a shell script (`sh -e`), as WHO, from WHO's home."""
        env = self.env(who)
        argv = ["sh", "-ec", text]
        if who != "root":
            argv = ["runuser", "-u", who, "--", "env", "-i",
                    *(f"{k}={v}" for k, v in env.items()), *argv]
        return subprocess.run(argv, env=env, cwd=self.home(who), capture_output=True,
                              text=True, timeout=timeout, check=False, umask=0o022)


def unix(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture
def walk(bot, prosody) -> Iterator[Walk]:
    tag = f"{os.getpid() % 100000}"
    base = Path(tempfile.mkdtemp(prefix="cvsmsg-walk-"))
    base.chmod(0o755)  # the CVS users must reach everything under it
    w = Walk(base, f"cvsw{tag}", {"alice": f"wa{tag}", "bob": f"wb{tag}"})
    created: list[tuple[str, str]] = []
    try:
        for name in w.users.values():
            unix("useradd", "-M", "-d", str(w.home(name)), "-s", "/bin/sh", name)
            created.append(("userdel", name))
            w.home(name).mkdir(parents=True)
            shutil.chown(w.home(name), name, name)
        created.append(("groupdel", w.group))  # the README's groupadd creates it
        w.home("root").mkdir(parents=True)
        for standard in ("/usr/local/bin", "/opt", "/var/spool", "/srv"):  # as on Debian
            w.path(standard).mkdir(parents=True, exist_ok=True)
        # The repository the quick start starts from, made by root.
        root_env = w.env("root")
        repo = w.path("/srv/cvsroot")
        subprocess.run([cvs_binary(), "-d", str(repo), "init"], env=root_env, check=True)
        source = base / "import"
        source.mkdir()
        (source / "a.txt").write_text("alpha\n")
        subprocess.run([cvs_binary(), "-d", str(repo), "import", "-m", "initial import",
                        "proj", "vendor", "start"], cwd=source, env=root_env, check=True,
                       capture_output=True)
        # The private CA the commented ca_file line is about.
        w.path("/etc/cvsmsg").mkdir(parents=True)
        shutil.copy(prosody.ca, w.path("/etc/cvsmsg") / "ca.pem")
        (w.path("/etc/cvsmsg") / "ca.pem").chmod(0o644)

        domain = bot.jid.partition("@")[2]
        w.substitutions = [
            *((re.escape(p), str(w.path(p))) for p in SYSTEM_PATHS[1:]),
            (re.escape(SYSTEM_PATHS[0]), str(ROOT)),
            (r'^# server = .*$', f'server = "127.0.0.1:{prosody.port}"'),
            (r'^# ca_file = "([^"]*)".*$', f'ca_file = "{w.path("/etc/cvsmsg")}/ca.pem"'),
            (r"cvsmsg@example\.org", bot.jid),
            (r"\bexample\.org\b", domain),
            (r"the-bots-password", bot.password),
            (r"(?<=groupadd )cvs\b|(?<=-aG )cvs\b|(?<=-g )cvs\b|(?<=root:)cvs\b"
             r"|(?<=chgrp -R )cvs\b", w.group),
            *((rf"\b{name}\b", unix_name) for name, unix_name in w.users.items()),
        ]
        yield w
    finally:
        for command, name in reversed(created):
            with contextlib.suppress(subprocess.CalledProcessError):
                unix(command, name)
        shutil.rmtree(base, ignore_errors=True)


def test_quick_start_word_for_word(walk, bot, prosody, loops):
    blocks = quick_start_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    whos = [who for who, _ in blocks]
    assert whos[0] == "root" and {"alice", "bob"} <= set(whos), whos
    people: dict[str, Person] = {}
    checks: list[subprocess.CompletedProcess[str]] = []
    try:
        for who, text in blocks:
            script = walk.substitute(text)
            for system_path in SYSTEM_PATHS:  # nothing of the real machine is touched
                assert not re.search(rf"(?<!{re.escape(str(walk.base))}){system_path}",
                                     script), script
            user = "root" if who == "root" else walk.users[who]
            if "cvsmsg check" in script and not people:
                # Step 7: each recipient adds the bot in their XMPP client and will accept
                # its request to see their status.
                for name in ("alice", "bob"):
                    local = walk.users[name]
                    jid = prosody.register(local, "pw-" + local)
                    person = Person(loops, jid, "pw-" + local, prosody.port, prosody.ca)
                    person.online(auto_accept=True)
                    person.send_presence(bot.jid, "subscribe")
                    people[name] = person
            result = walk.run(user, script)
            if "cvsmsg check" in script:
                checks.append(result)
                if result.returncode == 10:
                    # "if it lists someone as NOT GATED right after they added the bot,
                    # run it again once they have accepted"
                    for person in people.values():
                        person.settle()
                    result = walk.run(user, script)
                    checks.append(result)
                assert result.returncode == 0, (result.stdout, result.stderr)
                assert "all 2 recipient(s) can be presence-gated" in result.stdout, result.stdout
                continue
            assert result.returncode == 0, (who, script, result.stdout, result.stderr)
            if "pip install" in script:
                # installed for everyone, with its man page
                assert (walk.path("/opt/cvsmsg") / "share/man/man1/cvsmsg.1").is_file()
                assert (walk.path("/usr/local/share/man") / "man1/cvsmsg.1").resolve().is_file()
            if "cvs edit" in script:
                got = people["alice"].wait_messages(1, timeout=15)
                assert [m.body for m in got] == [
                    f"proj a.txt\n---\nTriggered edit watch on "
                    f"{walk.path('/srv/cvsroot')}/proj\nBy {walk.users['bob']}"
                ], result.stderr
                assert got[0].sender == bot.jid
                assert got[0].subject == "CVS Watch Alarm"
        assert checks, "the quick start has no cvsmsg check block"
        # the final check: every recipient can be presence-gated
        assert "NOT GATED" not in checks[-1].stdout, checks[-1].stdout
        # the commit (step 9): alice watches a.txt and follows proj; bob follows proj
        bob = walk.users["bob"]
        alice_got = people["alice"].wait_messages(3, timeout=20)
        subjects = sorted(m.subject for m in alice_got)
        assert subjects == ["CVS Watch Alarm", "CVS Watch Alarm", f"CVS commit: proj by {bob}"]
        commit = next(m for m in alice_got if m.subject.startswith("CVS commit"))
        assert "Modified:\n  a.txt 1.1.1.1 -> 1.2" in commit.body, commit.body
        assert "Log message:\na.txt: one more line" in commit.body, commit.body
        bob_got = people["bob"].wait_messages(1, timeout=20)
        assert [m.subject for m in bob_got] == [f"CVS commit: proj by {bob}"]
    finally:
        for person in people.values():
            with contextlib.suppress(Exception):
                person.offline()
