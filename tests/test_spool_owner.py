"""Who owns the shared spool: a root run creates it only with `spool_group` (root:GROUP,
3770), else refuses with the command that does it right (exit 3, nothing sent); the sh
hand-off likewise with $CVSMSG_SPOOL_GROUP; `cvsmsg check` shows the spool's owner, group
and mode and says what is wrong. Real Prosody, the real sh hand-off; the tests run as root."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.spoolhelp import first_lines
from tests.test_drop import drop


@pytest.fixture(scope="module")
def group() -> Iterator[str]:
    name = f"cvsmsgs{os.getpid() % 100000}"
    subprocess.run(["groupadd", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["groupdel", name], check=False)


def refusal(spool: Path, knob: str = "spool_group in the config") -> str:
    return (f"spool directory {spool} does not exist and root would create it with its own "
            f"group, which the CVS users lack: set {knob}, or run: install -d -m 3770 -o "
            f"root -g GROUP {spool}")


def config_with(prosody, bot, tmp_path: Path, spool: Path, group: str | None,
                delivery: str) -> Path:
    config = prosody.write_cvsmsg_config(tmp_path / f"{delivery}.toml", bot.jid, bot.password,
                                         spool_dir=str(spool), delivery=delivery,
                                         coalesce_seconds=0.3)
    lines = [ln for ln in config.read_text().splitlines() if not ln.startswith("spool_group")]
    if group is not None:
        lines.append(f'spool_group = "{group}"')
    config.write_text("\n".join(lines) + "\n")
    return config


def owner(path: Path) -> tuple[str, str, int]:
    st = path.lstat()
    return path.owner(), grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)


NO_GROUP = {"CVSMSG_SPOOL_GROUP": ""}  # the test runner's default is off here


@pytest.mark.parametrize("delivery", ["direct", "background"])
def test_root_without_spool_group_refuses_to_create_the_spool(bot, person, prosody,
                                                             tmp_path, delivery):
    alice = person("")
    spool = tmp_path / "var" / "spool"
    config = config_with(prosody, bot, tmp_path, spool, None, delivery)
    result = bot.run(alice.jid, config=config, env={**NO_GROUP, "CVSMSG_SPOOL_DIR": ""})
    assert (result.returncode, result.stdout, result.stderr) == (
        3, "", f"cvsmsg: error: {refusal(spool)}\n")
    assert not spool.exists()
    assert alice.settle() == []  # nothing sent: the run failed whole


def test_root_with_spool_group_creates_it_root_group_3770(bot, person, prosody, tmp_path,
                                                         group):
    alice = person("")
    spool = tmp_path / "var" / "spool"
    config = config_with(prosody, bot, tmp_path, spool, group, "background")
    result = bot.run(alice.jid, config=config, env={**NO_GROUP, "CVSMSG_SPOOL_DIR": ""})
    assert (result.returncode, result.stderr) == (
        0, f"cvsmsg: queued for {alice.jid}: background delivery\n")
    assert owner(spool) == ("root", group, 0o3770)
    assert first_lines(alice.wait_messages(1, 15)) == ["proj a.txt"]


def test_the_sh_hand_off_as_root(tmp_path, group):
    spool = tmp_path / "sh" / "spool"
    result = drop("--spool", str(spool), "alice@x", env=NO_GROUP)
    assert (result.returncode, result.stdout, result.stderr.decode()) == (
        3, b"", f"cvsmsg-drop: error: {refusal(spool, '$CVSMSG_SPOOL_GROUP')}\n")
    assert not spool.exists()
    with (tmp_path / "deliver.lock").open("w"):  # (no deliverer: the file is enough)
        result = drop("--spool", str(spool), "alice@x", env={"CVSMSG_SPOOL_GROUP": group})
    assert (result.returncode, result.stderr) == (0, b"")
    assert owner(spool) == ("root", group, 0o3770)
    assert len(list(spool.glob("*.msg"))) == 1
    bad = tmp_path / "sh" / "other"
    result = drop("--spool", str(bad), "alice@x", env={"CVSMSG_SPOOL_GROUP": "nosuchgrp"})
    assert (result.returncode, result.stderr.decode()) == (
        3, f"cvsmsg-drop: error: cannot give spool directory {bad} the group nosuchgrp: "
           "invalid group: ‘nosuchgrp’\n")
    assert not bad.exists()  # never left with the wrong group


def spool_step(stdout: str) -> list[str]:
    """The `spool` line of `cvsmsg check` and its notes."""
    lines = stdout.splitlines()
    [i] = [n for n, line in enumerate(lines) if line.startswith("spool ")]
    notes = [line for line in lines[i + 1:] if line.startswith(" " * 30 + "note: ")]
    return [lines[i], *(line.strip() for line in notes[: len(notes)])]


def check_spool(bot, prosody, tmp_path: Path, spool: Path, group: str | None) -> list[str]:
    config = config_with(prosody, bot, tmp_path, spool, group, "direct")
    result = bot.run(command="check", input=None, config=config,
                     env={**NO_GROUP, "CVSMSG_SPOOL_DIR": ""})
    assert result.returncode == 0, result.stderr
    return spool_step(result.stdout)


def test_check_shows_a_good_spool(bot, prosody, tmp_path, group):
    spool = tmp_path / "good"
    subprocess.run(["install", "-d", "-m", "3770", "-o", "root", "-g", group, str(spool)],
                   check=True)
    assert check_spool(bot, prosody, tmp_path, spool, group) == [
        f"spool        ok               {spool} (owner root, group {group}, mode 3770)"]
    missing = tmp_path / "missing"
    assert check_spool(bot, prosody, tmp_path, missing, group) == [
        f"spool        ok               {missing} (not created yet; the first run creates "
        f"it: group {group}, mode 3770)"]
    other = tmp_path / "other"
    assert check_spool(bot, prosody, tmp_path, other, None) == [
        f"spool        ok               {other} (not created yet)",
        f"note: {refusal(other)}"]


def test_check_says_what_is_wrong_with_a_spool(bot, prosody, tmp_path, group):
    spool = tmp_path / "wrong"
    spool.mkdir()
    spool.chmod(0o755)
    assert check_spool(bot, prosody, tmp_path, spool, group) == [
        f"spool        ok               {spool} (owner root, group root, mode 0755)",
        f"note: the group cannot write it (mode 0755): the CVS users' messages go to "
        f"private spools nobody delivers: chmod 3770 {spool}",
        f"note: it is not setgid and sticky (mode 0755): files may get the wrong group, and "
        f"members can delete each other's messages: chmod 3770 {spool}",
        f"note: its group is root, spool_group says {group}: chgrp {group} {spool}",
        f"note: others can get in (mode 0755): it holds every queued message: "
        f"chmod o-rwx {spool}",
    ]
    link = tmp_path / "link"
    link.symlink_to(spool)
    assert check_spool(bot, prosody, tmp_path, link, group) == [
        f"spool        ok               {link} (owner root, group root, mode 0777)",
        f"note: {link} is a symbolic link: cvsmsg refuses to use it; replace it with a "
        f"directory: install -d -m 3770 -o root -g {group} {link}",
    ]
