"""The real `cvs` binary runs `cvsmsg loginfo` from CVSROOT/loginfo; real people receive it.

The administrator commits CVSROOT/loginfo; the config's `[[loginfo]]` rules say who follows
which directory; `bob` commits, imports and adds directories. Run for `:local:` and for
`:fork:` (client/server: the command runs under `cvs server`, its stdout passed through).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.cvsrepo import METHODS, CvsRepo, CvsResult, cvsmsg_script, loginfo_line

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TROUBLE = ("unrecognized response", "protocol error", "aborted", "broken pipe", "Traceback")
# What a committer may write: quotes of both kinds, $ and backquotes a shell would expand,
# UTF-8, a blank line, a line that looks like CVS's own header.
LOG = (
    "Fix the \"quoted\" and 'single' cases\n"
    "costs $5, not `rm -rf` or $(date) — naïve café ✓\n"
    "\n"
    "Log Message:\n"
    "last line"
)


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def rules_config(prosody, bot, path: Path, rules: list[tuple[str, list[str]]]) -> Path:
    """The bot's config plus `[[loginfo]]` tables."""
    config = prosody.write_cvsmsg_config(path, bot.jid, bot.password)
    with config.open("a") as fh:
        for match, to in rules:
            people = ", ".join(f'"{jid}"' for jid in to)
            fh.write(f"\n[[loginfo]]\nmatch = '{match}'\nto = [{people}]\n")
    return config


def make_repo(tmp_path: Path, method: str, config: Path) -> CvsRepo:
    repo = CvsRepo(tmp_path / "cvs", method).create()
    repo.checkout_all("bob")
    installed = repo.install_loginfo(loginfo_line(config))
    # The commit of CVSROOT/loginfo runs it already: no rule for CVSROOT, so nothing.
    assert "cvsmsg" not in installed.stderr, installed.stderr
    return repo


def assert_clean(result: CvsResult) -> None:
    """The cvs operation succeeded and nothing disturbed the client/server protocol."""
    assert result.returncode == 0, result.stderr
    assert "cvsmsg" not in result.stdout, result.stdout
    for marker in TROUBLE:
        assert marker not in result.stderr, result.stderr


def cvsmsg_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("cvsmsg")]


def test_commit_reaches_the_followers_of_each_directory(bot, person, prosody, tmp_path, method):
    alice, dave, carol = person(""), person("dnd"), person("")
    config = rules_config(prosody, bot, tmp_path / "c.toml", [
        (r"^proj/sub(/|$)", [carol.jid]),  # first match wins: not alice and dave too
        (r"^proj(/|$)", [alice.jid, dave.jid]),
    ])
    repo = make_repo(tmp_path, method, config)
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("alpha, changed\n")
    (bob.path / "new.txt").write_text("new\n")
    (bob.path / "b.txt").unlink()
    (bob.path / "sub/s.txt").write_text("sierra, changed\n")
    (bob.path / "sub/n.txt").write_text("november\n")
    bob.cvs("add", "new.txt", "sub/n.txt")
    bob.cvs("remove", "b.txt")

    result = bob.cvs("commit", "-m", LOG)

    assert_clean(result)
    # one loginfo run per directory, proj first
    assert cvsmsg_lines(result.stderr) == [
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
        f"cvsmsg: withheld (commit) from {dave.jid}: dnd (resource desk); queued",
        f"cvsmsg: delivered (commit) to {carol.jid}: available",
    ]
    [to_alice] = alice.settle()
    assert (to_alice.sender, to_alice.subject) == (bot.jid, "CVS commit: proj by bob")
    assert to_alice.body == (
        f"Commit by bob in {repo.root}/proj\n"
        "\n"
        "Added:\n"
        "  new.txt 1.1\n"
        "Modified:\n"
        "  a.txt 1.1.1.1 -> 1.2\n"
        "Removed:\n"
        "  b.txt 1.1.1.1\n"
        "\n"
        f"Log message:\n{LOG}"
    )
    [to_carol] = carol.settle()
    assert to_carol.subject == "CVS commit: proj/sub by bob"
    assert to_carol.body == (
        f"Commit by bob in {repo.root}/proj/sub\n"
        "\n"
        "Added:\n"
        "  n.txt 1.1\n"
        "Modified:\n"
        "  s.txt 1.1.1.1 -> 1.2\n"
        "\n"
        f"Log message:\n{LOG}"
    )
    assert dave.settle() == []


def test_import_and_new_directory(bot, person, prosody, tmp_path, method):
    alice = person("")
    config = rules_config(prosody, bot, tmp_path / "c.toml", [(r"^proj(/|$)", [alice.jid])])
    repo = make_repo(tmp_path, method, config)
    bob = repo.checkout("bob")
    (bob.path / "doc").mkdir()

    added = bob.cvs("add", "doc")
    imported = repo.import_tree("bob", "proj/vendor", {"x.txt": "x\n", "lib/y.c": "y\n"},
                                "vendor drop 'v2' $Id$", vendor="ACME", release="ACME_2")

    for result in (added, imported):
        assert_clean(result)
        assert cvsmsg_lines(result.stderr) == [
            f"cvsmsg: delivered (commit) to {alice.jid}: available"]
    new_dir, vendor = alice.settle()
    assert (new_dir.subject, new_dir.body) == (
        "CVS new directory: proj/doc by bob", f"New directory by bob: {repo.root}/proj/doc"
    )
    assert vendor.subject == "CVS import: proj/vendor by bob"
    assert vendor.body == (
        f"Import by bob into {repo.root}/proj/vendor\n"
        "Vendor tag ACME, release tags ACME_2\n"
        "\n"
        "N proj/vendor/x.txt\n"
        "N proj/vendor/lib/y.c\n"
        "\n"
        "No conflicts created by this import\n"
        "\n"
        "Log message:\n"
        "vendor drop 'v2' $Id$"
    )


def test_directory_without_followers_is_silent(bot, person, prosody, tmp_path, method):
    alice = person("")
    config = rules_config(prosody, bot, tmp_path / "c.toml", [(r"^other(/|$)", [alice.jid])])
    repo = make_repo(tmp_path, method, config)
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("changed\n")

    result = bob.cvs("commit", "-m", "nobody follows proj")

    assert_clean(result)
    assert cvsmsg_lines(result.stderr) == []
    assert alice.settle() == []


@pytest.mark.parametrize("mistake", ["missing config", "unknown option"])
def test_broken_setup_never_breaks_cvs_commit(tmp_path, method, mistake):
    """cvsmsg's own failure is one line on stderr, after reading all of a log message
    bigger than a pipe buffer: the commit succeeds, no broken pipe."""
    missing = tmp_path / "missing.toml"
    options = ["--tooo", "x@localhost"] if mistake == "unknown option" else []
    repo = CvsRepo(tmp_path / "cvs", method).create()
    repo.checkout_all("bob")
    repo.install_loginfo(loginfo_line(missing, *options))
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("changed\n")
    message = tmp_path / "message.txt"
    message.write_text("a long story\n" * 20000)  # 260 kB

    result = bob.cvs("commit", "-F", str(message))

    assert_clean(result)
    if mistake == "missing config":
        assert cvsmsg_lines(result.stderr) == [
            f"cvsmsg: error: config file {missing} does not exist or is not a file"
        ]
    else:
        assert "Error: No such option '--tooo'" in result.stderr
    assert "1.2" in bob.cvs("status", "a.txt").stdout


def test_example_loginfo_works_as_shipped(bot, person, prosody, tmp_path, method):
    """examples/loginfo verbatim (cvsmsg on PATH, config from $CVSMSG_CONFIG)."""
    alice = person("")
    config = rules_config(prosody, bot, tmp_path / "c.toml", [(r"^proj(/|$)", [alice.jid])])
    path = os.pathsep.join([str(cvsmsg_script().parent), "/usr/local/bin", "/usr/bin", "/bin"])
    repo = CvsRepo(tmp_path / "cvs", method,
                   extra_env={"PATH": path, "CVSMSG_CONFIG": str(config)}).create()
    repo.checkout_all("bob")
    repo.admin_commit({"loginfo": (EXAMPLES / "loginfo").read_bytes()}, "cvsmsg from examples")
    bob = repo.checkout("bob")
    (bob.path / "a.txt").write_text("changed\n")

    result = bob.cvs("commit", "-m", "from the example")

    assert_clean(result)
    assert cvsmsg_lines(result.stderr) == [f"cvsmsg: delivered (commit) to {alice.jid}: available"]
    [msg] = alice.settle()
    assert msg.subject == "CVS commit: proj by bob"
    assert "  a.txt 1.1.1.1 -> 1.2\n" in msg.body
