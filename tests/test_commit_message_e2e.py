"""One message per commit: the real `cvs` runs `cvsmsg commitinfo` for every directory of a
commit, then `cvsmsg loginfo` once per directory; each follower receives exactly one
message with all of their directories' files, links to the web viewer, and the log
message once. Under `:local:` and `:fork:`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness.cvsrepo import (
    METHODS,
    CvsRepo,
    commitinfo_line,
    loginfo_line,
)
from tests.test_loginfo_e2e import assert_clean, cvsmsg_lines

FILES = {"a.txt": "alpha\n", "b.txt": "bravo\n", "sub/s.txt": "sierra\n",
         "other/o.txt": "oscar\n"}
VIEWER = "https://cvs.example.org/viewvc/{path}/{file}?r1={old}&r2={new}"
VIEWER_FILE = "https://cvs.example.org/viewvc/{path}/{file}?revision={rev}"
LOG = "One change across three directories\n\nwith 'quotes' and $dollar"


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def config_with(prosody, bot, path: Path, rules: list[tuple[str, list[str]]], **extra) -> Path:
    config = prosody.write_cvsmsg_config(path, bot.jid, bot.password, **extra)
    with config.open("a") as fh:
        for match, to in rules:
            people = ", ".join(f'"{jid}"' for jid in to)
            fh.write(f"\n[[loginfo]]\nmatch = '{match}'\nto = [{people}]\n")
    return config


def repo_with_hooks(tmp_path: Path, method: str, config: Path,
                    files: dict[str, str] | None = None, commitinfo: Path | None = None
                    ) -> CvsRepo:
    repo = CvsRepo(tmp_path / "cvs", method).create(files or FILES)
    repo.checkout_all("bob")
    installed = repo.install_hooks(commitinfo_line(commitinfo or config), loginfo_line(config))
    assert "cvsmsg" not in installed.stderr, installed.stderr
    return repo


def test_one_message_per_follower_for_a_commit_of_three_directories(
        bot, person, prosody, tmp_path, method):
    alice, carol = person(""), person("")
    config = config_with(prosody, bot, tmp_path / "c.toml", [
        (r"^proj/other(/|$)", [carol.jid]),
        (r"^proj(/|$)", [alice.jid]),  # proj and proj/sub
    ], viewer_url=VIEWER, viewer_file_url=VIEWER_FILE)
    repo = repo_with_hooks(tmp_path, method, config)
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("alpha, changed\n")
    (bob.path / "new file.txt").write_text("new\n")
    (bob.path / "b.txt").unlink()
    (bob.path / "sub/s.txt").write_text("sierra, changed\n")
    (bob.path / "other/o.txt").write_text("oscar, changed\n")
    bob.cvs("add", "new file.txt")
    bob.cvs("remove", "b.txt")

    result = bob.cvs("commit", "-m", LOG)

    assert_clean(result)
    assert sorted(cvsmsg_lines(result.stderr)) == sorted([
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
        f"cvsmsg: delivered (commit) to {carol.jid}: available",
    ])
    [to_alice] = alice.settle()
    assert to_alice.subject == "CVS commit: proj (2 directories) by bob"
    assert to_alice.body == (
        f"Commit by bob in {repo.root}/proj, 2 directories\n"
        "\n"
        "proj:\n"
        "Added:\n"
        "  new file.txt 1.1\n"
        "    https://cvs.example.org/viewvc/proj/new%20file.txt?revision=1.1\n"
        "Modified:\n"
        "  a.txt 1.1.1.1 -> 1.2\n"
        "    https://cvs.example.org/viewvc/proj/a.txt?r1=1.1.1.1&r2=1.2\n"
        "Removed:\n"
        "  b.txt 1.1.1.1\n"
        "    https://cvs.example.org/viewvc/proj/b.txt?revision=1.1.1.1\n"
        "\n"
        "proj/sub:\n"
        "Modified:\n"
        "  s.txt 1.1.1.1 -> 1.2\n"
        "    https://cvs.example.org/viewvc/proj/sub/s.txt?r1=1.1.1.1&r2=1.2\n"
        "\n"
        f"Log message:\n{LOG}"
    )
    [to_carol] = carol.settle()
    assert to_carol.subject == "CVS commit: proj/other by bob"
    assert to_carol.body == (
        f"Commit by bob in {repo.root}/proj/other\n"
        "\n"
        "Modified:\n"
        "  o.txt 1.1.1.1 -> 1.2\n"
        "    https://cvs.example.org/viewvc/proj/other/o.txt?r1=1.1.1.1&r2=1.2\n"
        "\n"
        f"Log message:\n{LOG}"
    )
    assert list((tmp_path / "spool" / "commits").iterdir()) == []  # the record is gone


def test_a_500_file_commit_is_one_summarised_message(bot, person, prosody, tmp_path):
    alice = person("")
    config = config_with(prosody, bot, tmp_path / "c.toml", [(r"^proj(/|$)", [alice.jid])])
    repo = repo_with_hooks(tmp_path, "local", config)
    bob = repo.checkout("bob")
    names = []
    for d in range(5):
        (bob.path / f"d{d}").mkdir()
        bob.cvs("add", f"d{d}")
        for n in range(100):
            (bob.path / f"d{d}" / f"f{n:03}.c").write_text(f"{d} {n}\n")
            names.append(f"d{d}/f{n:03}.c")
    bob.cvs("add", *names)
    alice.settle()  # the five "new directory" messages (no commitinfo for `cvs add dir`)
    alice.messages.clear()

    result = bob.cvs("commit", "-m", "five hundred files", timeout=120)

    assert_clean(result)
    assert cvsmsg_lines(result.stderr) == [f"cvsmsg: delivered (commit) to {alice.jid}: available"]
    [message] = alice.settle()
    assert message.subject == "CVS commit: proj (5 directories) by bob"
    lines = message.body.split("\n")
    assert lines[0] == f"Commit by bob in {repo.root}/proj, 5 directories"
    assert [line for line in lines if line.startswith("  f")] == [
        f"  f{n:03}.c 1.1" for n in range(50)]
    assert lines[-4:] == ["… and 450 more files", "", "Log message:", "five hundred files"]
    assert "proj/d0:" in lines and "proj/d1:" not in lines  # the rest are summarised


def test_commitinfo_never_blocks_a_commit_and_loginfo_falls_back(
        bot, person, prosody, tmp_path, method):
    """A broken commitinfo line (missing config) says so on stderr, the commit goes
    through, and loginfo without a record sends one message per directory, as before."""
    alice = person("")
    config = config_with(prosody, bot, tmp_path / "c.toml", [(r"^proj(/|$)", [alice.jid])])
    missing = tmp_path / "missing.toml"
    repo = repo_with_hooks(tmp_path, method, config, commitinfo=missing)
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("alpha, changed\n")
    (bob.path / "sub/s.txt").write_text("sierra, changed\n")

    result = bob.cvs("commit", "-m", "two directories")

    assert result.returncode == 0, result.stderr
    assert cvsmsg_lines(result.stderr) == [
        f"cvsmsg: error: config file {missing} does not exist or is not a file",
        f"cvsmsg: error: config file {missing} does not exist or is not a file",
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
    ]
    assert "1.2" in bob.cvs("status", "a.txt").stdout
    assert [m.subject for m in alice.settle()] == [
        "CVS commit: proj by bob", "CVS commit: proj/sub by bob"]


def test_diffstat_figures_per_file(bot, person, prosody, tmp_path, method):
    """diffstat = true: `+added -removed` lines per file, counted by `cvs -R rdiff` while
    the commit still holds its locks (loginfo runs inside it)."""
    alice = person("")
    config = config_with(prosody, bot, tmp_path / "c.toml", [(r"^proj(/|$)", [alice.jid])],
                         diffstat=True)
    repo = repo_with_hooks(tmp_path, method, config,
                           files={"a.txt": "one\ntwo\nthree\n", "b.txt": "x\ny\n",
                                  "sub/s.txt": "s\n"})
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("one\nTWO\nthree\nfour\n")  # +2 -1
    (bob.path / "n.txt").write_text("1\n2\n3\n")  # added: +3
    (bob.path / "b.txt").unlink()  # removed: -2
    (bob.path / "sub/s.txt").write_text("s\nt\n")  # +1 -0
    bob.cvs("add", "n.txt")
    bob.cvs("remove", "b.txt")

    result = bob.cvs("commit", "-m", "counted")

    assert_clean(result)
    [message] = alice.settle()
    lines = message.body.split("\n")
    assert "  n.txt 1.1 +3 -0" in lines
    assert "  a.txt 1.1.1.1 -> 1.2 +2 -1" in lines
    assert "  b.txt 1.1.1.1 +0 -2" in lines
    assert "  s.txt 1.1.1.1 -> 1.2 +1 -0" in lines
    assert not any("no diffstat" in line for line in lines)
