"""The error boundary, the option table and its click-free parser.

- `options.parse` (the fast path of `notify` and `loginfo`) reads every argv exactly as
  click reads it, or steps aside where click must parse and report;
- a `--config` that is a directory, unreadable or missing is exit 3 with one stderr line,
  for every command (click's usage banner used to answer it with exit 2);
- Ctrl-C is exit 130, `cvsmsg: error: interrupted`; a bug is exit 1 with one line.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from cvsmsg import commands, options
from cvsmsg.cli import cli
from cvsmsg.main import main
from cvsmsg.status import ExitStatus
from tests.conftest import cvsmsg_command

NOTICE = b"proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"


def click_reading(name: str, argv: list[str]) -> dict[str, Any] | None:
    """What click passes to the command for `argv`; None when click refuses it or
    answers it itself (--help)."""
    parent = cli.make_context("cvsmsg", [name])
    try:
        return dict(cli.commands[name].make_context(name, list(argv), parent=parent).params)
    except (click.ClickException, click.exceptions.Exit):
        return None


NOTIFY_ARGVS = [
    ["a@x"],
    ["--room", "dev@conference.x"],  # a room alone is enough
    ["--room", "r1@c.x", "a@x", "--room=r2@c.x"],
    ["--room"],
    ["a@x", "b@x", "c"],
    ["--config", "c.toml", "a@x"],
    ["--config=c.toml", "a@x"],
    ["--config=", "a@x"],
    ["-q", "a@x"],
    ["--quiet", "a@x"],
    ["-vv", "a@x"],
    ["-v", "--verbose", "-v", "a@x"],
    ["-qv", "a@x"],
    ["-vq", "--debug", "a@x"],
    ["a@x", "--quiet", "b@x"],  # options between recipients
    ["--", "-alice@x"],  # a recipient starting with '-'
    ["a@x", "--", "--help", "-q"],
    ["a@x", "--", "--", "b"],
    ["-", "a@x"],  # '-' alone is a recipient
    ["", "a@x"],
    ["--type", "chat", "a@x"],
    ["--type=headline", "a@x"],
    ["--type", "normal", "--type", "chat", "a@x"],  # the last one wins
    ["--type", "groupchat", "a@x"],  # not a choice
    ["--type", "Chat", "a@x"],  # choices are case-sensitive
    ["--type=", "a@x"],
    ["--timeout", "0.5", "a@x"],
    ["--timeout=30", "a@x"],
    ["--timeout", "1e1", "a@x"],
    ["--timeout", "0.49", "a@x"],  # below the minimum
    ["--timeout", "0", "a@x"],
    ["--timeout", "-5", "a@x"],
    ["--timeout", "nan", "a@x"],
    ["--timeout", "soon", "a@x"],
    ["--timeout=", "a@x"],
    ["--subject", "--quiet", "a@x"],  # a value that looks like an option is a value
    ["--subject=", "a@x"],
    ["--subject", "a=b c", "a@x"],
    ["--server", "h:5222", "--timeout", "3", "a@x"],
    ["--file", "-", "a@x"],
    ["--file", "msg.txt", "a@x"],
    ["--bogus", "a@x"],  # unknown option
    ["--conf", "c.toml", "a@x"],  # click takes no abbreviations
    ["-x", "a@x"],
    ["-alice@x"],
    ["-q=1", "a@x"],
    ["--quiet=yes", "a@x"],  # a flag takes no value
    ["--verbose=2", "a@x"],
    ["a@x", "--subject"],  # missing value
    ["--config"],
    [],  # no recipient
    ["-q"],
    ["--help"],
    ["-h"],
    ["a@x", "--help"],
    ["--help", "--bogus"],
]

LOGINFO_ARGVS = [
    ["proj", "a.txt", "1.1", "1.2"],
    ["proj", "- New directory", "NONE", "NONE"],
    ["proj", "-v", "1.1", "1.2"],  # after the directory everything is an argument
    ["proj", "--", "x"],
    ["proj", "--help"],
    ["--", "proj"],
    ["--", "-proj"],
    ["--to", "a@x", "--to", "b@x", "proj"],
    ["--to=a@x", "proj", "f", "NONE", "1.1"],
    ["-q", "--debug", "proj"],
    ["-vq", "proj"],
    ["--type", "chat", "proj"],
    ["--type", "groupchat", "proj"],
    ["--config", "/c.toml", "--server", "s", "--timeout", "2", "proj"],
    ["--timeout", "0", "proj"],
    ["--tooo", "x@localhost", "proj"],
    ["--to"],
    ["--subject", "s", "proj"],  # notify's option, not loginfo's
    [],  # CVS always gives the directory, but click accepts none
    ["--help"],
    ["-h", "proj"],
    ["-n", "proj"],
    ["--dry-run", "--to", "a@x", "proj", "-n"],
    ["-qn", "proj"],
    ["--dry-run=1", "proj"],
]


@pytest.mark.parametrize(
    ("name", "argv"),
    [("notify", a) for a in NOTIFY_ARGVS] + [("loginfo", a) for a in LOGINFO_ARGVS],
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_fast_parser_reads_argv_as_click_does(name, argv):
    assert options.parse(options.COMMANDS[name], argv) == click_reading(name, argv)


def test_fast_parser_reads_what_cvs_passes():
    """Not only equal to click: right (a guard against both being wrong the same way)."""
    notify = options.parse(options.NOTIFY, ["--config=/etc/c.toml", "-vv", "a@x", "--", "-b"])
    assert notify == {
        "config_path": "/etc/c.toml", "file": None, "subject": None,
        "message_type": None, "server": None, "timeout": None, "quiet": False, "verbose": 2,
        "debug": False, "recipients": ("a@x", "-b"), "rooms": (), "dry_run": False,
    }
    loginfo = options.parse(options.LOGINFO, ["--to", "a@x", "p", "-v", "NONE", "1.1"])
    assert loginfo is not None
    assert (loginfo["to"], loginfo["verbose"], loginfo["cvs_args"]) == (
        ("a@x",), 0, ("p", "-v", "NONE", "1.1"))
    assert options.parse(options.NOTIFY, ["--timeout", "0.49", "a@x"]) is None
    assert options.parse(options.NOTIFY, ["--timeout", "0.5", "a@x"])["timeout"] == 0.5  # type: ignore[index]


def test_every_click_command_is_built_from_the_table():
    """No option exists only in click: the table is the whole command line."""
    for name, spec in options.COMMANDS.items():
        params = {p.name for p in cli.commands[name].params}
        table = {o.dest for o in spec.options} | (
            {spec.argument.dest} if spec.argument else set())
        assert params - {"help"} == table, name


# -- --config that is a directory, unreadable or missing: exit 3, one line, every command --

COMMANDS_WITH_CONFIG = ["notify", "loginfo", "flush", "check", "queue", "serve"]


def argv_for(command: str, config: Path) -> list[str]:
    extra = {"notify": ["alice@localhost"], "loginfo": ["proj", "a.txt", "1.1", "1.2"]}
    return [command, "--config", str(config), *extra.get(command, [])]


@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_bad_config_path_is_exit_3_one_line(command, kind, tmp_path):
    config = tmp_path / ("conf.d" if kind == "directory" else "missing.toml")
    if kind == "directory":
        config.mkdir()
    result = subprocess.run([*cvsmsg_command(), *argv_for(command, config)], input=NOTICE,
                            capture_output=True, timeout=60, check=False)
    assert (result.returncode, result.stderr.decode()) == (
        3, f"cvsmsg: error: config file {config} does not exist or is not a file\n")
    if command == "check":
        assert result.stdout.decode().split() == ["config", "FAILED"]
    else:
        assert result.stdout == b""


@pytest.fixture(scope="module")
def as_nobody() -> Iterator[tuple[Path, Path]]:
    """(a cvsmsg the user `nobody` can run, a world-traversable scratch directory): root
    reads any file, so an unreadable config is only unreadable to someone else."""
    if os.geteuid() != 0 or shutil.which("runuser") is None:
        pytest.skip("needs root and runuser to run cvsmsg as another user")
    from tests.test_shared_spool import public_cvsmsg

    root = Path(tempfile.mkdtemp(prefix="cvsmsg-nobody-", dir="/tmp"))
    try:
        root.chmod(0o755)
        script = public_cvsmsg(root / "py")
        scratch = root / "scratch"
        scratch.mkdir(mode=0o777)
        scratch.chmod(0o777)
        yield script, scratch
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("command", COMMANDS_WITH_CONFIG)
def test_unreadable_config_is_exit_3_one_line(command, as_nobody):
    script, scratch = as_nobody
    config = scratch / f"{command}.toml"
    config.write_text('jid = "bot@localhost"\npassword_file = "pw"\n')
    config.chmod(0o000)
    env = [f"HOME={scratch}", f"XDG_CACHE_HOME={scratch}/cache", "PATH=/usr/bin:/bin",
           f"CVSMSG_SPOOL_DIR={scratch}/spool", "LC_ALL=C.UTF-8"]
    result = subprocess.run(
        ["runuser", "-u", "nobody", "--", "env", "-i", *env, str(script),
         *argv_for(command, config)],
        input=NOTICE, capture_output=True, timeout=60, check=False,
    )
    assert (result.returncode, result.stderr.decode()) == (
        3, f"cvsmsg: error: cannot read config file {config}: permission denied\n")


# -- Ctrl-C --------------------------------------------------------------------------------

@pytest.fixture
def silent_server() -> Iterator[socket.socket]:
    """A server that accepts connections and never says a word."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(30)
        yield server


def test_ctrl_c_is_exit_130_interrupted(silent_server, tmp_path):
    port = silent_server.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(f'jid = "bot@localhost"\npassword = "x"\nserver = "127.0.0.1:{port}"\n'
                      "timeout = 120\n")
    config.chmod(0o600)
    proc = subprocess.Popen(
        [*cvsmsg_command(), "notify", "--config", str(config), "alice@localhost"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(NOTICE)
        proc.stdin.close()
        conn, _ = silent_server.accept()  # cvsmsg is now waiting for the stream header
        with conn:
            proc.send_signal(signal.SIGINT)
            proc.wait(30)
        assert proc.stderr is not None
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, err.decode()) == (130, "cvsmsg: error: interrupted\n")


# -- the boundary itself, in-process: what a command raises becomes one line ----------------

@pytest.fixture
def boundary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """main() installs its own stderr handler: put pytest's logging back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "stdin", open(os.devnull))  # noqa: SIM115 - closed by pytest
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def raiser(exc: BaseException) -> Any:
    def body(opts: Any, io: Any) -> ExitStatus:
        raise exc

    return body


@pytest.mark.parametrize("command", [["notify", "a@x"], ["queue"]])  # fast path, click
@pytest.mark.parametrize(
    ("exc", "status", "line"),
    [
        (KeyboardInterrupt(), 130, "cvsmsg: error: interrupted"),
        (RuntimeError("boom"), 1,
         "cvsmsg: error: internal error: RuntimeError: boom (rerun with --debug)"),
    ],
)
def test_boundary_turns_exceptions_into_one_line(boundary, monkeypatch, capsys, command, exc,
                                                 status, line):
    monkeypatch.setitem(commands.BODIES, command[0], raiser(exc))
    assert main(command) == status
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", line + "\n")


def test_debug_adds_the_traceback(boundary, monkeypatch, capsys):
    monkeypatch.setitem(commands.BODIES, "queue", raiser(RuntimeError("boom")))
    assert main(["queue", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: boom" in err
    assert "Traceback (most recent call last)" in err


def test_usage_error_is_clicks_message_exit_2(boundary, capsys):
    assert main(["queue", "--bogus"]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "Error: No such option '--bogus'."
    assert main(["--version"]) == 0


# -- verbosity levels stay as they were -----------------------------------------------------

def test_verbose_levels_of_a_delivered_run(bot, person):
    """Default: the recipient line only; -v adds one line saying where the time went; -vv
    each phase; neither shows slixmpp's own internals (that is --debug's)."""
    alice = person("")
    line = f"cvsmsg: delivered to {alice.jid}: available\n"
    assert bot.run(alice.jid).stderr == line
    verbose = bot.run("-v", alice.jid).stderr.splitlines()
    assert verbose[-1] == line.rstrip("\n")
    summary = [v for v in verbose if " as " in v and "login and presence" in v]
    assert len(summary) == 1, verbose
    assert re.fullmatch(
        rf"cvsmsg: (probed|announced) as {re.escape(bot.jid)}/cvsmsg-\S+ "
        r"\(STARTTLS, TLSv1\.[23]\): login and presence \d+ ms, send and confirm \d+ ms, "
        r"0 queued message\(s\) delivered, "
        r"closed after \d+ ms", summary[0]), summary[0]
    chatty = bot.run("-vv", alice.jid).stderr
    assert "cvsmsg: phase: waiting for the server to confirm" in chatty.splitlines()
    assert chatty.endswith(line)
    assert "slixmpp" not in chatty and "Negotiating TLS" not in chatty


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """`cvsmsg queue | head -1`: the rest cannot be printed, and that is no bug to report:
    exit 141 (128 + SIGPIPE, as shells report a tool killed by it), nothing on stderr."""
    from cvsmsg.spool import Spool

    spool = Spool(tmp_path / "spool", shared=False).ensure()
    for i in range(1500):  # ~100 KB of listing: more than a pipe holds
        spool.add("alice@example.org", "s", f"text {i}")
    config = tmp_path / "c.toml"
    config.write_text(f'jid = "bot@example.org"\npassword = "p"\n'
                      f'spool_dir = "{tmp_path / "spool"}"\n')
    config.chmod(0o600)
    proc = subprocess.Popen([*cvsmsg_command(), "queue", "--config", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().split()[:2] == [b"ID", b"RECIPIENT"]
    proc.stdout.close()
    assert (proc.wait(30), proc.stderr.read()) == (ExitStatus.PIPE, b"")
