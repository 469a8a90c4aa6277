"""A watcher who also follows the directory through `[[loginfo]]` gets two messages for one
commit: the lines say which is which, and `commit_watch_for_followers = false` leaves
them the commit message only. The real `cvs` binary runs both notify and loginfo."""

from __future__ import annotations

import pytest

from tests.harness.cvsrepo import METHODS, CvsRepo, loginfo_line, notify_line
from tests.test_loginfo_e2e import assert_clean, cvsmsg_lines


@pytest.mark.parametrize("method", METHODS)
def test_watch_and_commit_messages_told_apart_and_the_double_avoided(
        bot, person, prosody, tmp_path, method):
    alice, carol = person(""), person("")  # alice follows proj and watches; carol watches
    config = prosody.write_cvsmsg_config(tmp_path / "c.toml", bot.jid, bot.password)
    settings = config.read_text()
    rule = f"\n[[loginfo]]\nmatch = '^proj(/|$)'\nto = ['{alice.jid}']\n"
    config.write_text(settings + rule)
    repo = CvsRepo(tmp_path / "cvs", method).create()
    repo.checkout_all("alice", "carol", "bob")
    repo.install_notify(notify_line(config), {"alice": alice.jid, "carol": carol.jid})
    repo.install_loginfo(loginfo_line(config))
    repo.watcher("alice", "commit")
    repo.watcher("carol", "commit")
    bob = repo.checkout("bob")

    (bob.path / "a.txt").write_text("alpha, changed\n")
    result = bob.cvs("commit", "-m", "first")
    assert_clean(result)
    assert cvsmsg_lines(result.stderr) == [
        f"cvsmsg: delivered (watch) to {alice.jid}: available",
        f"cvsmsg: delivered (watch) to {carol.jid}: available",
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
    ]
    assert sorted(m.subject for m in alice.settle()) == [
        "CVS Watch Alarm", "CVS commit: proj by bob"]
    assert [m.subject for m in carol.settle()] == ["CVS Watch Alarm"]

    # The administrator leaves followers to the commit message.
    config.write_text(settings + "commit_watch_for_followers = false\n" + rule)
    (bob.path / "a.txt").write_text("alpha, changed again\n")
    result = bob.cvs("commit", "-m", "second")
    assert_clean(result)
    assert cvsmsg_lines(result.stderr) == [
        f"cvsmsg: skipped (watch) for {alice.jid}: follows proj through [[loginfo]] rule 1 "
        "(match ^proj(/|$)); commit_watch_for_followers = false",
        f"cvsmsg: delivered (watch) to {carol.jid}: available",
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
    ]
    to_alice = alice.settle()[2:]
    assert [m.subject for m in to_alice] == ["CVS commit: proj by bob"]
    assert "Log message:\nsecond" in to_alice[0].body
    assert [m.subject for m in carol.settle()] == ["CVS Watch Alarm"] * 2
