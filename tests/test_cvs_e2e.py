"""The real `cvs` binary runs `cvsmsg notify` from CVSROOT/notify; real people receive it.

Each test builds its own repository: the administrator commits CVSROOT/notify and
CVSROOT/users, a watcher (`alice`) watches the module, a second CVS user (`bob`) edits or
commits. Run for `:local:` and for `:fork:` (client/server, where the notify command's
stdout would be the CVS protocol).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.cvsrepo import METHODS, CvsRepo, CvsResult, cvsmsg_script, notify_line

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

# What CVS says when the notify command's stdout corrupted the client/server protocol or
# the operation gave up (also on SIGPIPE), and what a crashing cvsmsg would print.
TROUBLE = (
    "unrecognized response",
    "protocol error",
    "aborted",
    "Traceback",
)


@pytest.fixture(params=METHODS)
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_repo(tmp_path, method):
    """Factory, called inside the test: a missing cvs binary fails the test, never skips."""

    def make(config, users: dict[str, str], people: tuple[str, ...] = ("alice", "bob")
             ) -> CvsRepo:
        repo = CvsRepo(tmp_path / "cvs", method).create()
        repo.checkout_all(*people)
        repo.install_notify(notify_line(config), users)
        return repo

    return make


def notice(repo: CvsRepo, kind: str, by: str, path: str = "a.txt") -> str:
    """CVS's notify text for `path` in the module, without the final newline."""
    directory, _, name = f"{repo.module}/{path}".rpartition("/")
    return f"{directory} {name}\n---\nTriggered {kind} watch on {repo.root}/{directory}\nBy {by}"


def assert_clean(result: CvsResult) -> None:
    """The cvs operation succeeded and nothing disturbed the client/server protocol."""
    assert result.returncode == 0, result.stderr
    assert result.stdout == "", f"unexpected stdout from cvs {result.args}: {result.stdout!r}"
    for marker in TROUBLE:
        assert marker not in result.stderr, result.stderr


def test_edit_notifies_available_watcher(bot, person, make_repo, method):
    alice = person("")
    # CVS hands the users value over verbatim: trailing blank and CR included.
    repo = make_repo(bot.config, {"alice": f"{alice.jid} \r"})
    repo.watcher("alice")
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "a.txt")

    assert_clean(result)
    # cvsmsg's one line is all the user sees, under :fork: too (stderr is not the protocol).
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    msgs = alice.settle()
    assert len(msgs) == 1, msgs
    msg = msgs[0]
    assert msg.sender == bot.jid
    assert msg.subject == "CVS Watch Alarm"
    assert "Triggered edit watch on" in msg.body
    assert "a.txt" in msg.body
    assert "By bob" in msg.body
    assert msg.body == notice(repo, "edit", "bob")


def test_edit_withheld_from_dnd_watcher(bot, person, make_repo, method):
    alice = person("dnd")
    repo = make_repo(bot.config, {"alice": alice.jid})
    repo.watcher("alice")
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "a.txt")

    assert_clean(result)
    assert result.stderr.startswith(f"cvsmsg: withheld from {alice.jid}: dnd"), result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert alice.settle() == []
    assert (bob.path / "a.txt").stat().st_mode & 0o200, "cvs edit did not make a.txt writable"


def test_commit_notifies_commit_watcher(bot, person, make_repo, method):
    alice = person("")
    repo = make_repo(bot.config, {"alice": alice.jid})
    repo.watcher("alice", "commit")  # no edit watch: the commit is the only notification
    bob = repo.checkout("bob")
    bob.cvs("edit", "sub/s.txt")
    assert alice.settle() == []
    (bob.path / "sub/s.txt").write_text("sierra\nsecond line\n")

    result = bob.cvs("commit", "-m", "second line")

    assert result.returncode == 0, result.stderr
    for marker in TROUBLE:
        assert marker not in result.stderr, result.stderr
    assert "cvsmsg" not in result.stdout
    assert f"cvsmsg: delivered (watch) to {alice.jid}" in result.stderr
    msgs = alice.settle()
    assert [m.body for m in msgs] == [notice(repo, "commit", "bob", "sub/s.txt")]


def test_notification_is_not_repeated_by_update(bot, person, make_repo, method):
    """The client clears CVS/Notify once the server accepted the edit: no duplicate later."""
    alice = person("")
    repo = make_repo(bot.config, {"alice": alice.jid})
    repo.watcher("alice")
    bob = repo.checkout("bob")

    assert_clean(bob.cvs("edit", "a.txt"))
    assert not bob.pending_notify.exists(), bob.pending_notify.read_text()
    update = bob.cvs("update")

    assert update.returncode == 0, update.stderr
    assert "cvsmsg" not in update.stderr, update.stderr
    msgs = alice.settle()
    assert [m.body for m in msgs] == [notice(repo, "edit", "bob")]


def test_watcher_without_users_entry_gets_default_domain(bot, person, prosody, tmp_path,
                                                         make_repo, method):
    """No CVSROOT/users line: CVS passes the bare CVS name, default_domain completes it."""
    alice = person("")
    cvs_name = alice.jid.partition("@")[0]
    config = prosody.write_cvsmsg_config(tmp_path / "domain.toml", bot.jid, bot.password,
                                         default_domain=prosody.domain)
    repo = make_repo(config, {"someone-else": "nobody@example.invalid"}, (cvs_name, "bob"))
    repo.watcher(cvs_name)
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "b.txt")

    assert_clean(result)
    assert f"cvsmsg: delivered to {alice.jid}" in result.stderr
    assert [m.body for m in alice.settle()] == [notice(repo, "edit", "bob", "b.txt")]


def test_broken_config_never_breaks_cvs_edit(tmp_path, make_repo, method):
    """cvsmsg's own failure is one line on stderr; the edit is still recorded."""
    missing = tmp_path / "missing.toml"
    repo = make_repo(missing, {"alice": "alice@localhost"})
    repo.watcher("alice")
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "a.txt")

    assert_clean(result)
    assert result.stderr.strip() == (
        f"cvsmsg: error: config file {missing} does not exist or is not a file"
    )
    editors = bob.cvs("editors", "a.txt").stdout
    assert editors.startswith("a.txt\tbob\t"), editors


def test_example_files_work_as_shipped(bot, person, tmp_path, method):
    """examples/notify verbatim (`ALL cvsmsg notify %s`, cvsmsg on PATH, config from
    $CVSMSG_CONFIG) and examples/users with alice's real address: comments are inert."""
    alice = person("")
    path = os.pathsep.join([str(cvsmsg_script().parent), "/usr/local/bin", "/usr/bin", "/bin"])
    repo = CvsRepo(tmp_path / "cvs", method,
                   extra_env={"PATH": path, "CVSMSG_CONFIG": str(bot.config)}).create()
    repo.checkout_all("alice", "bob")
    users = (EXAMPLES / "users").read_text().replace("alice@example.org", alice.jid)
    repo.admin_commit({"notify": (EXAMPLES / "notify").read_bytes(), "users": users.encode()},
                      "cvsmsg from the examples")
    repo.watcher("alice")
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "a.txt")

    assert_clean(result)
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert [m.body for m in alice.settle()] == [notice(repo, "edit", "bob")]
