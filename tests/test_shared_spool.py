"""Two real Unix users of one group trigger notifications into the same spool.

CVS runs the notify command as whoever ran `cvs edit`: the spool must let each group
member add, deliver and remove the others' messages. Throwaway users (`useradd -M`) in a
throwaway group work in a group-shared directory, set up the way the README tells an admin.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cvsrepo import CvsRepo
from tests.spoolhelp import notice, pid_alive, wait_for


@dataclass
class Site:
    group: str
    users: tuple[str, str]
    root: Path  # group-shared directory, 2770
    cvsmsg: Path  # a cvsmsg every user can run

    def env(self, user: str) -> dict[str, str]:
        """A clean environment: nothing of the test runner's (its spool, HOME) leaks in."""
        return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(self.root / f"home-{user}"),
                "LOGNAME": user, "USER": user, "LC_ALL": "C.UTF-8"}

    def run(self, user: str, *argv: str, input: bytes = b"", cwd: Path | None = None,
            extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`runuser -u USER -- env -i … ARGV` with umask 002, as a login would set it."""
        env = [f"{k}={v}" for k, v in {**self.env(user), **(extra_env or {})}.items()]
        proc = subprocess.run(
            ["runuser", "-u", user, "--", "env", "-i", *env, "sh", "-c",
             'umask 002 && exec "$@"', "sh", *argv],
            input=input, capture_output=True, cwd=cwd or self.root, timeout=120, check=False,
        )
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                           proc.stderr.decode())


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    tag = f"{os.getpid() % 100000}"
    group, users = f"cvsmsgg{tag}", (f"cvsmsga{tag}", f"cvsmsgb{tag}")
    subprocess.run(["groupadd", group], check=True)
    try:
        for user in users:
            subprocess.run(["useradd", "-M", "-N", "-g", group, "-s", "/bin/sh", user],
                           check=True)
        root = Path(tempfile.mkdtemp(prefix="cvsmsg-site-", dir="/tmp"))
        shutil.chown(root, group=group)
        root.chmod(0o2770)
        for user in users:
            home = root / f"home-{user}"
            home.mkdir()
            shutil.chown(home, user=user, group=group)
        yield Site(group, users, root, public_cvsmsg(root / "py"))
    finally:
        for user in users:
            _end_processes_of(user)
            subprocess.run(["userdel", user], check=False, capture_output=True)
        subprocess.run(["groupdel", group], check=False, capture_output=True)
        with contextlib.suppress(NameError):
            shutil.rmtree(root, ignore_errors=True)


def _end_processes_of(user: str) -> None:
    """userdel refuses a user with processes: give a lingering deliverer of ours time to
    finish, then end it by its pid."""
    def pids() -> list[int]:
        found = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True)
        return [int(p) for p in found.stdout.split()]

    if not wait_for(lambda: not pids(), 15):
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pids(), 5)


def public_cvsmsg(where: Path) -> Path:
    """A `cvsmsg` the throwaway users can execute.

    The test interpreter may live where they cannot go (here: pyenv under /root, mode
    0700). A venv of the system Python 3.11 that sees this project and its installed
    dependencies (same minor version, same ABI) stands in for a system-wide install.
    """
    python = shutil.which("python3.11", path="/usr/bin:/usr/local/bin")
    if python is None:
        pytest.fail("these tests need a system python3.11 that every user can run")
    subprocess.run([python, "-m", "venv", "--without-pip", str(where)], check=True)
    import slixmpp

    import cvsmsg

    paths = [Path(cvsmsg.__file__).parent.parent, Path(slixmpp.__file__).parent.parent]
    [site_dir] = (where / "lib").glob("python3*/site-packages")
    (site_dir / "cvsmsg-test.pth").write_text("".join(f"{p}\n" for p in dict.fromkeys(paths)))
    script = where / "bin" / "cvsmsg"
    script.write_text(f"#!{where}/bin/python3\nimport sys\nfrom cvsmsg.main import main\n"
                      "sys.exit(main())\n")
    script.chmod(0o755)
    subprocess.run(["chmod", "-R", "a+rX", str(where)], check=True)
    return script


def admin_setup(site: Site, prosody, bot, name: str, **extra: object) -> tuple[Path, Path]:
    """As the README says: config 0640 root:GROUP, spool `install -d -m 3770 -g GROUP`
    (setgid and sticky: nobody renames or deletes another member's files)."""
    ca = site.root / f"{name}-ca.pem"
    shutil.copy(prosody.ca, ca)
    ca.chmod(0o644)
    spool = site.root / f"{name}-spool"
    subprocess.run(["install", "-d", "-m", "3770", "-g", site.group, str(spool)], check=True)
    extra.setdefault("spool_group", site.group)
    config = prosody.write_cvsmsg_config(site.root / f"{name}.toml", bot.jid, bot.password,
                                         spool_dir=str(spool), **extra)
    config.write_text(config.read_text().replace(str(prosody.ca), str(ca)))
    shutil.chown(config, group=site.group)
    config.chmod(0o640)
    return config, spool


def owners(spool: Path) -> list[tuple[str, str, int]]:
    result = []
    for path in sorted(spool.glob("*.msg")):
        st = path.stat()
        result.append((pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                       stat.S_IMODE(st.st_mode)))
    return result


def test_two_users_queue_into_one_spool_through_cvs(site, prosody, bot, person):
    alice = person("dnd")
    config, spool = admin_setup(site, prosody, bot, "direct")
    u1, u2 = site.users
    # A group-shared repository (FACTS: CVS writes with umask 002 for group members).
    repo = CvsRepo(site.root / "cvs", "local").create()
    line = f"ALL {site.cvsmsg} notify --config {config} %s"
    repo.install_notify(line, {"alice": alice.jid})
    repo.watcher("alice")
    subprocess.run(["chgrp", "-R", site.group, str(repo.root)], check=True)
    subprocess.run(["chmod", "-R", "g+rwX", str(repo.root)], check=True)
    subprocess.run(["find", str(repo.root), "-type", "d", "-exec", "chmod", "g+s", "{}", "+"],
                   check=True)
    cvs = ["cvs", "-f", "-d", str(repo.root)]
    for user in site.users:
        wc = site.root / f"wc-{user}"
        result = site.run(user, *cvs, "checkout", "-d", wc.name, "proj")
        assert result.returncode == 0, result.stderr

    edit1 = site.run(u1, *cvs, "edit", "a.txt", cwd=site.root / f"wc-{u1}")
    edit2 = site.run(u2, *cvs, "edit", "b.txt", cwd=site.root / f"wc-{u2}")
    for result in (edit1, edit2):
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"cvsmsg: withheld from {alice.jid}: dnd (resource desk); queued\n"
    # each user's message, group-shared so the other can deliver and remove it
    assert owners(spool) == [(u1, site.group, 0o660), (u2, site.group, 0o660)]
    listing = site.run(u2, str(site.cvsmsg), "queue", "--config", str(config))
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.count(alice.jid) == 2

    alice.online("")
    unedit = site.run(u1, *cvs, "unedit", "a.txt", cwd=site.root / f"wc-{u1}")
    assert unedit.returncode == 0, unedit.stderr
    assert unedit.stderr.splitlines() == [
        f"cvsmsg: delivered to {alice.jid}: available",
        f"cvsmsg: delivered to {alice.jid}: 2 queued notifications",
    ]
    bodies = [m.body for m in alice.settle()]
    assert len(bodies) == 2, bodies
    assert bodies[0].startswith(f"proj a.txt\n---\nTriggered unedit watch on {repo.root}/proj")
    assert "Triggered edit watch" in bodies[1] and f"By {u1}" in bodies[1] \
        and f"By {u2}" in bodies[1]  # u1's run delivered u2's message too
    # the sticky spool kept u1 from deleting u2's file: emptied, i.e. delivered
    assert [(p.owner(), p.stat().st_size) for p in spool.glob("*.msg")] == [(u2, 0)]
    listing = site.run(u2, str(site.cvsmsg), "queue", "--config", str(config))
    assert (listing.returncode, listing.stdout) == (0, f"no messages queued in {spool}\n")
    [emptied] = spool.glob("*.msg")  # kept a while: a fresh empty one may be a drop's
    os.utime(emptied, (1, 1))  # EMPTY_REAP_SECONDS later
    site.run(u2, str(site.cvsmsg), "queue", "--config", str(config))
    assert list(spool.glob("*.msg")) == []  # u2's own run reaped it


def test_two_users_background_one_deliverer(site, prosody, bot, person):
    alice = person("")
    config, spool = admin_setup(site, prosody, bot, "background", delivery="background",
                                coalesce_seconds=0.5)
    script = str(site.cvsmsg)
    for i in range(6):
        user = site.users[i % 2]
        result = site.run(user, script, "notify", "--config", str(config), alice.jid,
                          input=notice(f"f{i}.txt").replace("bob", user).encode())
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"cvsmsg: queued for {alice.jid}: background delivery\n"

    def received() -> list[str]:
        return [line for m in alice.settle() for line in m.body.splitlines()
                if line.startswith("proj ")]

    assert wait_for(lambda: len(received()) >= 6, 20)
    assert received() == [f"proj f{i}.txt" for i in range(6)]  # once each, in order
    # delivered: deleted, or emptied where the sticky spool kept the deliverer from
    # deleting the other user's file (reaped by that user's next run)
    assert wait_for(lambda: all(p.stat().st_size == 0 for p in spool.glob("*.msg")), 10)
    pids = {int(p) for p in re.findall(r"cvsmsg\[(\d+)\] INFO: delivered",
                                       (spool / "deliver.log").read_text())}
    assert len(pids) <= 2  # one deliverer (two if the first left) for both users
    assert wait_for(lambda: not any(pid_alive(p) for p in pids), 15)  # it lingers, leaves
    for name in ("deliver.lock", "deliver.log", "wake"):
        st = (spool / name).stat()
        assert (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode) & 0o060) == (
            site.group, 0o060), name  # the other user can take them over


def test_sticky_spool_other_members_messages(site):
    """In the sticky spool a member cannot replace or delete another's file: an update
    writes the message under a new id of its own and empties the old file; a removal
    empties it; the owner's next look reaps the empty files. Links planted by one member
    are refused by the other."""
    spool = site.root / "sticky-spool"
    subprocess.run(["install", "-d", "-m", "3770", "-g", site.group, str(spool)], check=True)
    python = str(site.cvsmsg.with_name("python3"))
    u1, u2 = site.users

    def py(user: str, code: str) -> str:
        result = site.run(user, python, "-c", "from pathlib import Path\n"
                          f"from cvsmsg.spool import Spool\ns = Spool(Path('{spool}'))\n"
                          + code)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    first = py(u1, "print(s.add('a@x', 's', 'one').id)")
    second = py(u1, "print(s.add('a@x', 's', 'two').id)")
    moved = py(u2, f"c = s.claim('{first}')\nprint(c.update(attempts=1, reason='dnd').id)")
    assert moved != first and moved[:13] == first[:13]  # same time, sorts in its place
    py(u2, f"c = s.claim('{second}')\nc.remove()")
    assert py(u2, "print([(e.id, e.body, e.attempts) for e in s.entries()])") == \
        str([(moved, "one", 1)])
    owners = {p.name: (p.owner(), p.stat().st_size) for p in spool.glob("*.msg")}
    assert owners[f"{first}.msg"] == (u1, 0) and owners[f"{second}.msg"] == (u1, 0)
    assert owners[f"{moved}.msg"][0] == u2
    assert py(u1, "print(s.ids())") == str([moved])  # emptied: ignored at once
    assert len(list(spool.glob("*.msg"))) == 3  # a fresh empty file may be a drop's
    py(u1, f"import os\nfor i in ('{first}', '{second}'):\n"
           "    os.utime(s.file_of(i), (1, 1))\ns.ids()")  # the owner reaps old empty ones
    assert sorted(p.name for p in spool.glob("*.msg")) == [f"{moved}.msg"]

    # a link planted by u1 where u2 would create the lock: refused, not followed
    precious = site.root / f"home-{u2}" / "precious"
    site.run(u2, "sh", "-c", f"echo mine > {precious}; chmod 600 {precious}")
    site.run(u1, "ln", "-s", str(precious), str(spool / "deliver.lock"))
    result = site.run(u2, python, "-c", f"from pathlib import Path\nfrom cvsmsg.spool import "
                      f"Spool, DELIVER_LOCK\nSpool(Path('{spool}')).try_lock(DELIVER_LOCK)")
    assert "deliver.lock is a symbolic link: refusing to follow it" in result.stderr
    script = site.root / "cvsmsg-drop"
    shutil.copy(Path(__file__).parents[1] / "bin" / "cvsmsg-drop", script)
    script.chmod(0o755)
    result = site.run(u2, str(script), "--spool", str(spool), "a@x", input=b"hi\n")
    assert result.returncode == 0
    assert "deliver.lock is not a regular file: no deliverer started" in result.stderr
    assert precious.read_text() == "mine\n"
    assert stat.S_IMODE(precious.stat().st_mode) == 0o600
