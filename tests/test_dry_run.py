"""`--dry-run`: what would be sent, to whom and why, on stdout; with no XMPP server at all
(the config points at a closed port), nothing connected to and the spool never touched."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cvsmsg import options
from tests.spoolhelp import cvsmsg

LOG_TEXT = """Update of /srv/cvsroot/proj/sub
In directory host:/home/bob/wc

Modified Files:
\ta.txt\x20
Added Files:
\tnew.txt\x20
Log Message:
fix the frobnicator
"""
ARGS = ("proj/sub", "a.txt", "1.1", "1.2", "new.txt", "NONE", "1.1")
COMMIT_WATCH = "proj/sub a.txt\n---\nTriggered commit watch on /srv/cvsroot/proj/sub\nBy bob\n"
ENV = {"CVS_USER": "", "LOGNAME": "bob", "USER": "bob"}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cvsmsg.toml"
    path.write_text(f"""jid = "bot@example.org"
password = "secret"
server = "127.0.0.1:{closed_port()}"
default_domain = "example.org"

[[loginfo]]
match = "^other"
to = ["erin"]

[[loginfo]]
match = "^proj(/|$)"
to = ["bob", "carol@example.org"]

[[loginfo]]
match = "ALL"
to = ["dave", "bob"]
""")
    path.chmod(0o600)
    return path


def test_loginfo_dry_run_prints_message_recipients_and_rules(config, spool_dir):
    result = cvsmsg("loginfo", "--config", str(config), "--dry-run", "--to", "Alice@Example.org",
                    *ARGS, input=LOG_TEXT, env=ENV)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == """\
dry run: nothing sent, nothing queued
to alice@example.org: given with --to
to bob@example.org: [[loginfo]] rule 2 (match ^proj(/|$))
to carol@example.org: [[loginfo]] rule 2 (match ^proj(/|$))
to dave@example.org: [[loginfo]] rule 3 (match ALL)
when: at once to each one available and not dnd; queued for the others
subject: CVS commit: proj/sub by bob
type: normal

Commit by bob in /srv/cvsroot/proj/sub

Added:
  new.txt 1.1
Modified:
  a.txt 1.1 -> 1.2

Log message:
fix the frobnicator
"""
    assert not spool_dir.exists()

    # The same run for real: the closed port fails (so the preview really connected to
    # nothing), and stdout stays silent, as CVS needs.
    real = cvsmsg("loginfo", "--config", str(config), *ARGS, input=LOG_TEXT, env=ENV)
    assert real.returncode == 5, real.stderr
    assert real.stdout == ""


def test_loginfo_dry_run_with_nobody_to_tell(config, spool_dir):
    config.write_text(config.read_text().split("[[loginfo]]")[0])  # no rules at all
    result = cvsmsg("loginfo", "--config", str(config), "-n", "elsewhere", "x.txt", "1.1", "1.2",
                    input=LOG_TEXT, env=ENV)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == ("dry run: nothing to send for elsewhere: no [[loginfo]] rule names "
                             "anyone and no --to\n")
    assert not spool_dir.exists()


@pytest.mark.parametrize("flag", ["--dry-run", "-n", "-qn"])
def test_notify_dry_run(config, spool_dir, flag):
    result = cvsmsg("notify", "--config", str(config), flag, "alice", "bad@@x", input=COMMIT_WATCH)
    assert result.returncode == 7  # an invalid recipient, as a real run would say
    assert result.stderr == ""
    assert result.stdout == """\
dry run: nothing sent, nothing queued
to alice@example.org: given on the command line
invalid bad@@x: invalid recipient address 'bad@@x'
when: at once to each one available and not dnd; queued for the others
subject: CVS Watch Alarm
type: normal

proj/sub a.txt
---
Triggered commit watch on /srv/cvsroot/proj/sub
By bob
"""
    assert not spool_dir.exists()


def test_both_parsers_know_dry_run():
    """Declared once in the option table: the click-free parser reads it like click."""
    for command in (options.NOTIFY, options.LOGINFO):
        assert command.by_name["--dry-run"] is options.DRY_RUN
        assert command.by_name["-n"] is options.DRY_RUN
    parsed = options.parse(options.LOGINFO, ["-n", "--to", "a@x", "proj", "-n"])
    assert parsed is not None
    assert parsed["dry_run"] is True
    assert parsed["cvs_args"] == ("proj", "-n")  # after the first argument: CVS's values
    assert options.parse(options.NOTIFY, ["a@x"])["dry_run"] is False  # type: ignore[index]
