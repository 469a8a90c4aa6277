"""Symlink attacks from inside the CVS group: user A plants a link at every name cvsmsg
uses in the shared spool, pointing at files of user B and of root; then B and root run
`cvsmsg notify` (background and direct) and `cvsmsg-drop`. The victims' files stay byte-for-
byte and mode-for-mode as they were, and each run either says clearly what it refused or
succeeds without touching the link. Real throwaway users, real Prosody, the real sh script.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from tests.spoolhelp import notice
from tests.test_shared_spool import Site, admin_setup, site  # noqa: F401  (the fixture)

NAMES = ["deliver.lock", "serve.lock", "wake", "announce", "deliver.log",
         "0000000000005-000000.msg"]


def victims(where: Path, owner: str, group: str) -> dict[str, Path]:
    """One private file per spool name, owned by `owner`, mode 0600 (0640 for one)."""
    where.mkdir(exist_ok=True)
    shutil.chown(where, user=owner, group=group)
    files = {}
    for i, name in enumerate(NAMES):
        path = where / f"precious-{name}"
        path.write_bytes(f"{owner}'s data {i}\n".encode())
        shutil.chown(path, user=owner, group=group)
        path.chmod(0o640 if i % 2 else 0o600)
        os.utime(path, (1_000_000_000, 1_000_000_000))
        files[name] = path
    return files


def state(files: dict[str, Path]) -> dict[str, tuple[bytes, int, int, int, int]]:
    result = {}
    for name, path in files.items():
        st = path.stat()
        result[name] = (path.read_bytes(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                        st.st_mtime_ns)
    return result


def plant(host: Site, user: str, spool: Path, targets: dict[str, Path]) -> None:
    """As `user` (a group member): replace every name with a link to its target."""
    for name, target in targets.items():
        link = spool / name
        result = host.run(user, "sh", "-c", f'rm -f "{link}" 2>/dev/null; '
                          f'ln -s "{target}" "{link}"')
        assert result.returncode == 0, result.stderr
        assert link.is_symlink() and os.readlink(link) == str(target)


def as_root(host: Site, *argv: str, input: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {**host.env("root"), "HOME": "/root"}
    proc = subprocess.run(argv, input=input, capture_output=True, env=env, cwd=host.root,
                          timeout=120, check=False)
    return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode(),
                                       proc.stderr.decode())


def test_links_planted_by_a_member_never_touch_b_or_root(site, prosody, bot, person):  # noqa: F811
    alice = person("")
    bg, spool = admin_setup(site, prosody, bot, "links", delivery="background")
    direct, _ = admin_setup(site, prosody, bot, "links-direct")
    direct.write_text(direct.read_text().replace(str(site.root / "links-direct-spool"),
                                                 str(spool)))
    attacker, user_b = site.users
    drop = site.root / "cvsmsg-drop"
    shutil.copy(Path(__file__).parents[1] / "bin" / "cvsmsg-drop", drop)
    drop.chmod(0o755)
    b_files = victims(site.root / f"home-{user_b}", user_b, site.group)
    root_dir = site.root / "root-only"
    root_files = victims(root_dir, "root", "root")
    root_dir.chmod(0o700)
    before = state(b_files), state(root_files)
    cvsmsg = str(site.cvsmsg)
    lock_refused = (f"cvsmsg: cannot start the deliverer ({spool}/deliver.lock is a symbolic "
                    "link: refusing to follow it (someone planted it in the spool: remove "
                    "it)): the message stays queued for the next run or `cvsmsg flush`")
    drop_refused = (f"cvsmsg-drop: warning: {spool}/deliver.lock is not a regular file: no "
                    "deliverer started (the message is queued for the next one)")
    for who, targets in ((user_b, b_files), ("root", root_files)):
        plant(site, attacker, spool, targets)

        def run(*argv: str, text: str, who: str = who) -> subprocess.CompletedProcess[str]:
            data = notice(text).replace("bob", who).encode()
            if who == "root":
                return as_root(site, *argv, input=data)
            return site.run(who, *argv, input=data)

        background = run(cvsmsg, "notify", "--config", str(bg), alice.jid, text=f"{who}-bg")
        assert (background.returncode, background.stderr.splitlines()) == (0, [
            lock_refused, f"cvsmsg: queued for {alice.jid}: background delivery"]), who
        dropped = run(str(drop), "--spool", str(spool), "--config", str(bg), alice.jid,
                      text=f"{who}-drop")
        assert (dropped.returncode, dropped.stderr) == (0, drop_refused + "\n"), who
        direct_run = run(cvsmsg, "notify", "--config", str(direct), alice.jid,
                         text=f"{who}-direct")
        planted = f"cvsmsg: spool file {spool}/{NAMES[-1]} is invalid (it is a symbolic link)"
        set_aside = (" and cannot be renamed (Operation not permitted): skipped"
                     if who != "root" else f": renamed to {NAMES[-1][:-4]}.bad")
        assert (direct_run.returncode, direct_run.stderr.splitlines()) == (0, [
            planted + set_aside, f"cvsmsg: delivered to {alice.jid}: available"]), who
        assert (state(b_files), state(root_files)) == before, who
        for name, target in targets.items():  # the links are still there, untouched
            link = spool / name
            if name.endswith(".msg") and not link.is_symlink():
                link = link.with_suffix(".bad")  # set aside (only root may rename it)
            assert os.readlink(link) == str(target), name
    assert (state(b_files), state(root_files)) == before
    # the admin removes the links, as the lines say: what was queued is delivered
    for name in NAMES:
        for path in (spool / name, (spool / name).with_suffix(".bad")):
            if path.is_symlink():
                path.unlink()
    flushed = site.run(user_b, cvsmsg, "flush", "--config", str(bg))
    assert flushed.returncode == 0, flushed.stderr
    bodies = " ".join(m.body for m in alice.settle())
    for who in (user_b, "root"):
        for kind in ("bg", "drop", "direct"):
            assert bodies.count(f"proj {who}-{kind}\n") == 1, (who, kind)
    assert (state(b_files), state(root_files)) == before
