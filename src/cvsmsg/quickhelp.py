"""`cvsmsg --help`, `cvsmsg COMMAND --help` and `cvsmsg --version` without importing click.

Click's help, rendered at its widest, is generated into data/help.txt with the option names
its parser knows (scripts/make_help.py, `make man`; a test fails when it is stale). `answer`
reads argv the way click's parser would and prints that text only when it is sure click
would print exactly the same: anything click would refuse or read otherwise (an unknown
option or command, a missing value, a `--` before the command), and any terminal narrower
than the texts (click wraps to the terminal's width), is left to click. Importing click
costs ~10 ms; this path needs only `os` and `sys`, which the interpreter has loaded already.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # no `typing` at run time
if TYPE_CHECKING:
    from collections.abc import Sequence

WIDTH = 80  # click wraps its help to min(terminal columns, 80) - 2: the texts are at 80
GROUP = "cvsmsg"  # the sections of data/help.txt: "cvsmsg", "cvsmsg notify", ...
VERSION = "cvsmsg --version"


def answer(args: Sequence[str]) -> bool:
    """Print what click prints for `cvsmsg ARGS` when that is help or the version, and
    return True; False, having printed nothing, for anything else."""
    if not any(_may_be_eager(arg) for arg in args):
        return False  # notify and loginfo from CVS: decided without reading the texts
    sections = texts()
    name = _answered_by(sections, list(args))
    if name is None or sys.stdout is None:
        return False
    if name != VERSION and _columns() < WIDTH:
        return False  # click wraps its help to a narrower terminal: let it
    try:
        sys.stdout.write(sections[name][0])
        sys.stdout.flush()
    except OSError:  # a full disk, a closed pipe: click fails the same way, and main.py
        return False  # reports it in one line
    return True


def texts() -> dict[str, tuple[str, bool, dict[str, str]]]:
    """data/help.txt: each section's name -> (its text, whether its options and arguments
    may be interspersed, its option names -> "value", "flag", "help" or "version")."""
    with open(os.path.join(os.path.dirname(__file__), "data", "help.txt"),
              encoding="utf-8") as file:
        data = file.read()
    sections = {}
    for section in data.split("\f\n")[1:]:  # the file's own header first
        header, _, text = section.partition("\n")
        name, interspersed, spec = (part.strip() for part in header.split("|"))
        kinds = dict(word.split("=") for word in spec.split() if word != "-")
        sections[name] = (text, interspersed == "interspersed", kinds)
    return sections


def _may_be_eager(arg: str) -> bool:
    """Could `arg` be --help, -h (alone or among bundled flags) or --version?"""
    return arg in ("--help", "--version") or (arg[:1] == "-" and arg[1:2] != "-" and "h" in arg)


def _answered_by(sections: dict[str, tuple[str, bool, dict[str, str]]],
                 args: list[str]) -> str | None:
    """The section whose text click prints for `args`; None: not help, or not surely."""
    read = _read(args, sections[GROUP][2], interspersed=False)
    if read is None:
        return None
    eager, rest = read
    if eager is not None:
        return VERSION if eager == "version" else GROUP
    name = f"{GROUP} {rest[0]}" if rest else ""
    if name not in sections:
        return None  # no command, an unknown one, or "--" first: left to click
    read = _read(rest[1:], sections[name][2], sections[name][1])
    return name if read is not None and read[0] == "help" else None


def _read(args: list[str], names: dict[str, str],
          interspersed: bool) -> tuple[str | None, list[str]] | None:
    """Read `args` as click's parser reads options: (the first eager option given, "help"
    or "version", or None; what is left where the options stop, [] after `--`). None
    when click would refuse `args`, or might."""
    eager = None
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":  # the end of the options; after the group's, the command is left
            return eager, []  # to click (it reads a command named like an option itself)
        if arg[:1] != "-" or len(arg) == 1:
            if interspersed:
                continue
            return eager, args[i - 1:]
        # click tries the whole word as a long option first (`-name` too), then, unless it
        # starts with `--`, as bundled one-letter options
        name, has_value, _value = arg.partition("=")
        kind = names.get(name) if len(name) > 2 or name[:2] == "--" else None
        if kind is not None:
            if kind == "value":
                if not has_value:
                    if i >= len(args):
                        return None  # "requires an argument"
                    i += 1
            elif has_value:
                return None  # "does not take a value"
            elif eager is None and kind != "flag":
                eager = kind
            continue
        if arg[:2] == "--":
            return None  # "no such option"
        for letter in arg[1:]:
            kind = names.get("-" + letter)
            if kind is None or kind == "value":
                return None  # no such option; or one-letter options with values: not here
            if eager is None and kind != "flag":
                eager = kind
    return eager, []


def _columns() -> int:
    """The terminal width click wraps to, read as `shutil.get_terminal_size` reads it
    (importing shutil costs more than this)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # no stdout, or not a terminal
            columns = 0
    return columns or 80
