"""The real `cvs` binary runs `cvsmsg notify` from CVSROOT/notify; real people receive it.

Each test builds its own repository: the administrator commits CVSROOT/notify and
CVSROOT/users, a watcher (`alice`) watches the module, a second CVS user (`bob`) edits or
commits. Run for `:local:` and for `:fork:` (client/server, where the notify command's
stdout would be the CVS protocol).
"""

from __future__ import annotations

import pytest

from tests.harness.cvsrepo import CvsRepo, CvsResult, notify_line

# What CVS says when something on the notify command's stdout corrupted the protocol,
# or when the operation itself gave up.
PROTOCOL_TROUBLE = (
    "unrecognized response",
    "protocol error",
    "aborted",
    "Traceback",
)


@pytest.fixture(params=["local", "fork"])
def method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_repo(tmp_path, method):
    """Factory, called inside the test: a missing cvs binary fails the test, never skips."""

    def make(config, users: dict[str, str]) -> CvsRepo:
        repo = CvsRepo(tmp_path / "cvs", method).create()
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
    for marker in PROTOCOL_TROUBLE:
        assert marker not in result.stderr, result.stderr


def test_edit_notifies_available_watcher(bot, person, make_repo, method):
    alice = person("")
    # CVS hands the users value over verbatim: trailing blank and CR included.
    repo = make_repo(bot.config, {"alice": f"{alice.jid} \r"})
    repo.watcher("alice")
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "a.txt")

    assert_clean(result)
    assert f"cvsmsg: delivered to {alice.jid}: available" in result.stderr
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
    assert f"cvsmsg: withheld from {alice.jid}: dnd" in result.stderr
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
    for marker in PROTOCOL_TROUBLE:
        assert marker not in result.stderr, result.stderr
    assert "cvsmsg" not in result.stdout
    assert f"cvsmsg: delivered to {alice.jid}" in result.stderr
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
    repo = make_repo(config, {"someone-else": "nobody@example.invalid"})
    repo.watcher(cvs_name)
    bob = repo.checkout("bob")

    result = bob.cvs("edit", "b.txt")

    assert_clean(result)
    assert f"cvsmsg: delivered to {alice.jid}" in result.stderr
    assert [m.body for m in alice.settle()] == [notice(repo, "edit", "bob", "b.txt")]
