"""`cvsmsg loginfo` run by hand the way CVS runs it: arguments, stdin, exit codes, output."""

from __future__ import annotations

import os
import subprocess
import threading

import pytest

from tests.conftest import cvsmsg_command

TEXT = (
    "Update of /srv/cvsroot/proj\n"
    "In directory host:/home/bob/wc\n"
    "\n"
    "Modified Files:\n"
    "\ta.txt \n"
    "Log Message:\n"
    "it's $HOME — ok\n"
)
ARGS = ("proj", "a.txt", "1.1", "1.2")
BODY = (
    "Commit by bob in /srv/cvsroot/proj\n\nModified:\n  a.txt 1.1 -> 1.2\n\n"
    "Log message:\nit's $HOME — ok"
)
BOB = {"LOGNAME": "bob", "USER": "bob", "CVS_USER": ""}


def loginfo(bot, *args, **kw):
    kw.setdefault("input", TEXT)
    kw.setdefault("env", BOB)
    return bot.run(*args, command="loginfo", **kw)


def with_rules(prosody, bot, tmp_path, text):
    config = prosody.write_cvsmsg_config(tmp_path / "rules.toml", bot.jid, bot.password)
    with config.open("a") as fh:
        fh.write(text)
    return config


def test_to_option_delivers(bot, person):
    alice = person("")
    result = loginfo(bot, "--to", alice.jid, *ARGS)
    assert (result.returncode, result.stdout) == (0, ""), result.stderr
    assert result.stderr == f"cvsmsg: delivered (commit) to {alice.jid}: available\n"
    [msg] = alice.settle()
    assert (msg.sender, msg.subject, msg.body, msg.type) == (
        bot.jid, "CVS commit: proj by bob", BODY, "normal"
    )


def test_rules_and_to_together_gated_by_presence(bot, person, prosody, tmp_path):
    alice, dave, carol = person(""), person("dnd"), person("")
    config = with_rules(prosody, bot, tmp_path, f"""
[[loginfo]]
match = "^proj(/|$)"
to = ["{alice.jid}", "{dave.jid}"]
""")
    result = loginfo(bot, "--to", carol.jid, "--type", "chat", *ARGS, config=config)
    assert result.returncode == 10, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"cvsmsg: delivered (commit) to {carol.jid}: available",
        f"cvsmsg: delivered (commit) to {alice.jid}: available",
        f"cvsmsg: withheld (commit) from {dave.jid}: dnd (resource desk); queued",
    ]
    assert [(m.body, m.type) for m in alice.settle()] == [(BODY, "chat")]
    assert len(carol.settle()) == 1
    assert dave.settle() == []


def test_no_recipient_for_the_directory_sends_nothing(bot):
    result = loginfo(bot, *ARGS)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    result = loginfo(bot, "-v", *ARGS)
    assert result.returncode == 0
    assert result.stderr == (
        "cvsmsg: nothing to send for proj: no [[loginfo]] rule names anyone and no --to\n"
    )


def test_committer_from_pserver_name(bot, person):
    alice = person("")
    env = {"CVS_USER": "anoncvs", "LOGNAME": "cvs", "USER": "cvs"}
    assert loginfo(bot, "--to", alice.jid, *ARGS, env=env).returncode == 0
    assert [m.subject for m in alice.settle()] == ["CVS commit: proj by anoncvs"]


def test_file_names_and_log_in_latin1_and_control_characters(bot, person):
    alice = person("")
    name = os.fsdecode(b"caf\xe9.txt")  # Latin-1 on disk
    text = TEXT.replace("it's", "bell\x07 it's").encode().replace(
        b"\ta.txt", b"\tcaf\xe9.txt") + b"d\xe9j\xe0 vu\n"  # a Latin-1 line in the log
    result = loginfo(bot, "--to", alice.jid, "proj", name, "1.1", "1.2", input=text)
    assert result.returncode == 0, result.stderr
    [msg] = alice.settle()
    assert "  café.txt 1.1 -> 1.2\n" in msg.body
    assert msg.body.endswith("Log message:\nbell it's $HOME — ok\ndéjà vu")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((), "cvsmsg: error: no arguments from CVS: use 'ALL cvsmsg loginfo %p %{sVv}' "
             "in CVSROOT/loginfo"),
        (("proj", "a.txt", "1.1"), "cvsmsg: error: cannot read the loginfo arguments "
         "'proj a.txt 1.1' as 'DIRECTORY NAME OLD NEW ...': use 'ALL cvsmsg loginfo %p "
         "%{sVv}' in CVSROOT/loginfo"),
    ],
)
def test_unreadable_arguments(bot, args, error):
    result = loginfo(bot, *args)
    assert result.returncode == 2
    assert result.stderr == error + "\n"


def test_invalid_to_is_exit_7(bot):
    result = loginfo(bot, "--to", "not a jid", *ARGS)
    assert result.returncode == 7
    assert result.stderr == "cvsmsg: error: invalid recipient address 'not a jid'\n"


def feed(argv, data: bytes) -> tuple[int, str, bool]:
    """Run argv writing `data` to its stdin; (exit code, stderr, whether all was read)."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    complete = []

    def write() -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(data)
            proc.stdin.close()
            complete.append(True)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=write)
    writer.start()
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    writer.join(30)
    return proc.wait(30), stderr, bool(complete)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        (["--tooo", "x@localhost"], "Error: No such option '--tooo'"),
        (["--config", "/nonexistent/c.toml"],
         "cvsmsg: error: config file /nonexistent/c.toml does not exist or is not a file"),
        (["--config", "/nonexistent/c.toml", "--timeout", "0"], "Error: Invalid value"),
    ],
)
def test_stdin_is_read_to_the_end_even_on_errors(options, error):
    """A loginfo command that leaves its stdin unread makes client/server CVS abort."""
    data = b"Update of /r/proj\nLog Message:\n" + b"x" * (1 << 20)
    code, stderr, complete = feed(
        [*cvsmsg_command(), "loginfo", *options, *ARGS], data
    )
    assert code in (2, 3)
    assert error in stderr
    assert complete, "cvsmsg exited before reading all of stdin"


def test_terminal_stdin_is_usage_error(bot):
    primary, secondary = os.openpty()
    try:
        result = subprocess.run(
            [*cvsmsg_command(), "loginfo", "--config", str(bot.config), *ARGS],
            stdin=secondary, capture_output=True, text=True, timeout=30, check=False,
        )
    finally:
        os.close(primary)
        os.close(secondary)
    assert result.returncode == 2
    assert result.stderr == (
        "cvsmsg: error: no log text on stdin: CVS runs this from CVSROOT/loginfo "
        "(ALL cvsmsg loginfo %p %{sVv})\n"
    )


def test_help_shows_the_loginfo_line():
    out = subprocess.run([*cvsmsg_command(), "loginfo", "--help"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0
    assert "ALL cvsmsg loginfo %p %{sVv}" in out.stdout
