"""`cvsmsg --help`, `cvsmsg COMMAND --help` and `--version` without click (issue 11: --help
≤ 60 ms): byte for byte what click prints, for every command and argv, or click answers.

- src/cvsmsg/data/help.txt is what scripts/make_help.py generates from the click CLI today;
- for each argv below, `cvsmsg` prints the same stdout and stderr, with the same exit code,
  as cvsmsg with `cvsmsg.quickhelp` switched off (click parsing and answering everything);
- that path imports no click, and nothing beyond what importing main.py imports itself;
- a terminal narrower than 80 columns (COLUMNS, or a real terminal's size) gets click's
  own wrapping: quickhelp steps aside.
"""

from __future__ import annotations

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from cvsmsg import options, quickhelp
from tests.conftest import cvsmsg_command

ROOT = Path(__file__).resolve().parent.parent

# cvsmsg as it was before quickhelp: click parses and answers every argv
CLICK_ONLY = """\
import sys
from cvsmsg import quickhelp
quickhelp.answer = lambda args: False
from cvsmsg.main import main
sys.exit(main())
"""

COMMANDS = list(options.COMMANDS)  # the hidden `deliver` too
TEXTS = quickhelp.texts()


def help_text(argv: list[str]) -> str:
    """The text data/help.txt holds for `cvsmsg [COMMAND] --help`."""
    return TEXTS[" ".join(["cvsmsg", *argv[:-1]])][0]

ARGVS = [
    *[[name, spelling] for name in COMMANDS for spelling in ("--help", "-h")],
    ["--help"], ["-h"], ["-hh"], ["--help", "-h"], ["--version"],
    ["--help", "--version"], ["--version", "--help"],  # the first eager option wins
    ["--version", "notify"], ["--version", "--bogus"],
    ["--help", "notify"], ["--help", "bogus"], ["--help", "notify", "--bogus"],
    ["--help", "--bogus"], ["--bogus", "--help"], ["--help=1"], ["-h=1"], ["-hx"],
    ["--", "--help"], ["--", "notify", "--help"], ["--help", "--", "x"], ["-", "--help"], [],
    ["bogus", "--help"], ["notif", "--help"], ["Notify", "--help"],
    ["notify", "--version"], ["notify", "--help", "--version"],
    ["notify", "a@x", "--help"], ["notify", "-", "--help"], ["notify", "-qh"],
    ["notify", "-hq"], ["notify", "-vhv", "a@x"], ["notify", "-h", "-h"],
    ["notify", "--timeout", "x", "--help"], ["notify", "--type", "zzz", "--help"],
    ["notify", "--timeout=", "--help"], ["notify", "--help", "--timeout"],
    ["notify", "--help", "--bogus"], ["notify", "--he"], ["notify", "--hel"],
    ["notify", "--help=1"], ["notify", "--verbose=2", "--help"], ["notify", "-t", "x", "-h"],
    ["notify", "--subject", "--help", "a@x"], ["notify", "--subject", "-h", "a@x"],
    ["notify", "--subject=-h", "a@x"], ["notify", "a@x", "--", "--help"],
    ["notify", "--help", "--", "a@x"], ["notify", "--", "-h"],
    ["loginfo", "proj", "--help"], ["loginfo", "proj", "a.txt", "NONE", "1.1", "-h"],
    ["loginfo", "--to", "-h", "proj"], ["loginfo", "-n", "--help", "proj"],
    ["commitinfo", "proj", "--help"], ["commitinfo", "-q", "--help"],
    ["check", "--help", "a@x"], ["check", "a@x", "-h"],
    ["queue", "--drop", "--help"], ["queue", "--help", "extra"],
    ["config", "--example", "--help"], ["deliver", "--lock-fd", "3", "--help"],
]


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    """No config anywhere (a run that gets past the options fails fast, exit 3), no
    COLUMNS unless given."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.environ["PATH"], "HOME": str(home),
            "CVSMSG_CONFIG": str(tmp_path / "missing.toml"),
            "CVSMSG_SPOOL_DIR": str(tmp_path), **extra}


def run(argv: list[str], env: dict[str, str], click_only: bool = False
        ) -> subprocess.CompletedProcess[bytes]:
    command = [sys.executable, "-c", CLICK_ONLY] if click_only else cvsmsg_command()
    return subprocess.run([*command, *argv], capture_output=True, env=env, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


def imported(argv: list[str], env: dict[str, str], command: list[str] | None = None
             ) -> set[str]:
    """The modules `cvsmsg ARGV` imports (python's -X importtime, through the env)."""
    result = subprocess.run([*(command or cvsmsg_command()), *argv], capture_output=True,
                            text=True, env={**env, "PYTHONPROFILEIMPORTTIME": "1"},
                            stdin=subprocess.DEVNULL, timeout=60, check=False)
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:")} - {"package"}


def on_terminal(argv: list[str], columns: int, env: dict[str, str],
                click_only: bool = False) -> tuple[bytes, int]:
    """What a terminal of `columns` columns shows of `cvsmsg ARGV`'s stdout, and the exit
    code."""
    command = [sys.executable, "-c", CLICK_ONLY] if click_only else cvsmsg_command()
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    proc = subprocess.Popen([*command, *argv], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.DEVNULL, env=env)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return shown, proc.wait(timeout=60)


def test_help_texts_are_generated_from_the_click_cli():
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_help.py"), "--check"],
                           capture_output=True, text=True, timeout=120, check=False)
    assert check.returncode == 0, check.stderr  # "... is out of date": run make man


def test_every_command_has_its_help():
    assert set(TEXTS) == {"cvsmsg", "cvsmsg --version", *(f"cvsmsg {n}" for n in COMMANDS)}
    for name in COMMANDS:
        assert help_text([name, "--help"]).startswith(f"Usage: cvsmsg {name} [OPTIONS]")


@pytest.mark.parametrize("argv", ARGVS, ids=lambda argv: " ".join(argv) or "(none)")
def test_argv_answered_as_click_answers_it(argv, tmp_path):
    env = environment(tmp_path)
    fast, click = run(argv, env), run(argv, env, click_only=True)
    assert (fast.returncode, fast.stdout.decode(), fast.stderr.decode()) == (
        click.returncode, click.stdout.decode(), click.stderr.decode())


@pytest.mark.parametrize("argv", [["--help"], ["-h"], ["--version"], ["notify", "--help"],
                                  ["loginfo", "-h"], ["check", "--help", "a@x"],
                                  ["notify", "-qh", "--timeout", "x"]],
                         ids=" ".join)
def test_help_imports_neither_click_nor_what_main_does_not_need(argv, tmp_path):
    env = environment(tmp_path)
    modules = imported(argv, env)
    assert not modules & {"click", "cvsmsg.cli", "cvsmsg.options", "cvsmsg.config",
                          "cvsmsg.commands", "dataclasses", "typing", "asyncio", "shutil",
                          "slixmpp"}
    # whatever main.py imports for itself (logging, for now), and nothing more
    main_alone = imported([], env, [sys.executable, "-c", "import cvsmsg.main"])
    assert modules - main_alone == {"cvsmsg.quickhelp"}


@pytest.mark.parametrize("argv", [["notify", "a@x"], ["notify", "-q", "--timeout", "3", "a@x"],
                                  ["loginfo", "proj", "- New directory", "NONE", "NONE"]],
                         ids=" ".join)
def test_a_notification_never_reads_the_help_texts(argv, monkeypatch):
    def texts():  # type: ignore[no-untyped-def]
        raise AssertionError("read data/help.txt")

    monkeypatch.setattr(quickhelp, "texts", texts)
    assert quickhelp.answer(argv) is False


@pytest.mark.parametrize("columns", ["1", "50", "79"])
def test_a_narrow_columns_gets_clicks_own_wrapping(columns, tmp_path):
    env = environment(tmp_path, COLUMNS=columns)
    for argv in (["--help"], ["notify", "--help"]):
        fast, click = run(argv, env), run(argv, env, click_only=True)
        assert (fast.returncode, fast.stdout) == (0, click.stdout)
        assert fast.stdout.decode() != help_text(argv)
        assert "click" in imported(argv, env)


@pytest.mark.parametrize("columns", ["80", "200", "0", "wide", ""])
def test_a_wide_or_meaningless_columns_gets_the_texts_without_click(columns, tmp_path):
    env = environment(tmp_path, COLUMNS=columns)
    fast, click = run(["notify", "--help"], env), run(["notify", "--help"], env,
                                                      click_only=True)
    assert fast.stdout == click.stdout == help_text(["notify", "--help"]).encode()
    assert "click" not in imported(["notify", "--help"], env)


@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("stdout", ["> /dev/full", ">&-"], ids=["full", "closed"])
@pytest.mark.parametrize("argv", [["--help"], ["--version"]], ids=" ".join)
def test_a_failing_stdout_is_reported_as_clicks_path_reports_it(argv, stdout, unbuffered,
                                                                  tmp_path):
    env = environment(tmp_path, PYTHONUNBUFFERED=unbuffered)
    fast, click = (subprocess.run(["sh", "-c", f'"$@" {stdout}', "sh", *command, *argv],
                                  capture_output=True, env=env, timeout=60, check=False)
                   for command in (cvsmsg_command(), [sys.executable, "-c", CLICK_ONLY]))
    assert (fast.returncode, fast.stderr) == (click.returncode, click.stderr)
    assert b"Traceback" not in fast.stderr


def test_version_ignores_the_width(tmp_path):
    env = environment(tmp_path, COLUMNS="20")
    assert run(["--version"], env).stdout == run(["--version"], env, click_only=True).stdout
    assert "click" not in imported(["--version"], env)


@pytest.mark.parametrize("columns", [60, 79, 80, 132])
def test_on_a_terminal_the_text_is_what_click_shows_at_its_width(columns, tmp_path):
    env = environment(tmp_path)
    for argv in (["--help"], ["loginfo", "--help"]):
        shown = on_terminal(argv, columns, env)
        assert shown == on_terminal(argv, columns, env, click_only=True)
        text = help_text(argv)
        assert (shown[0] == text.replace("\n", "\r\n").encode()) == (columns >= 80)


@pytest.mark.parametrize("value", [None, "", "0", "-3", "x", "1", "79", "80", "300"])
def test_columns_are_read_as_shutil_reads_them(value, monkeypatch):
    monkeypatch.delenv("LINES", raising=False)
    if value is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", value)
    assert quickhelp._columns() == shutil.get_terminal_size().columns
