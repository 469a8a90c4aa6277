"""Every command-line option, declared once; the click CLI and the fast path both read it.

Each option has its names, value kind, conversion, choices and help text here and only
here. `cli.py` builds click decorators from these tables (shared groups such as
CONNECTION and OUTPUT, like sqlite-utils' `@output_options`), and `parse` reads argv for
`notify` and `loginfo` without importing click, the way click would read it: CVS runs
those once per watcher and file, and click costs 15-25 ms to import. Whenever `parse`
cannot be sure to agree with click (--help, an unknown option, a bad or missing value,
a missing argument) it returns None and click parses and reports instead.
"""

from __future__ import annotations

from cvsmsg.config import MESSAGE_TYPES, MIN_TIMEOUT
from cvsmsg.record import Record, replace

TYPE_CHECKING = False  # no `typing` at run time: the fast path's start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


# What an option does with its occurrences.
VALUE = "value"  # takes one value; the last one given wins
APPEND = "append"  # takes one value each time; all are kept, in order
FLAG = "flag"  # no value; present or not
COUNT = "count"  # no value; how many times (-vv)


def seconds(text: str) -> float:
    """A --timeout value: a number of seconds, at least MIN_TIMEOUT."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not value >= MIN_TIMEOUT:  # `not >=` also refuses nan
        raise ValueError(f"{text} is less than the minimum of {MIN_TIMEOUT:g} seconds")
    return value


def file_name(text: str) -> str:
    """A --config or --file value: a path, kept as text (pathlib is not imported on the
    hand-off's path: see paths.py)."""
    if not text:
        raise ValueError("an empty path")
    return text


def whole_number(text: str) -> int:
    """A file descriptor number."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


class Option(Record):
    """One option: how it is spelt, what it holds, and what --help says about it."""

    names: tuple[str, ...]  # "-q", "--quiet": a one-letter name is a short option
    dest: str  # the keyword the command body receives
    action: str = VALUE
    convert: Callable[[str], Any] = str
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    help: str = ""

    @property
    def takes_value(self) -> bool:
        return self.action in (VALUE, APPEND)

    @property
    def default(self) -> Any:
        return {VALUE: None, APPEND: (), FLAG: False, COUNT: 0}[self.action]

    def value(self, text: str) -> Any:
        """`text` converted; ValueError (with a message for the user) when invalid."""
        if self.choices and text not in self.choices:
            raise ValueError(f"{text!r} is not one of {', '.join(map(repr, self.choices))}")
        return self.convert(text)


class Argument(Record):
    """The positional arguments of a command: zero or more (one or more if required)."""

    dest: str
    metavar: str
    required: bool = False


class Command(Record):
    """A command's options and arguments, as both parsers read them."""

    name: str
    options: tuple[Option, ...]
    argument: Argument | None = None
    # False: everything after the first argument is an argument (CVS's loginfo values
    # may be "- New directory" or a file named -v).
    interspersed: bool = True
    reads_stdin: bool = False
    hidden: bool = False
    # CVS aborts the operation when this command fails (commitinfo): it reports on stderr
    # and always exits 0. Parsed without click like the stdin readers: it runs per directory.
    never_fails: bool = False

    @property
    def by_name(self) -> dict[str, Option]:
        return {n: o for o in self.options for n in o.names}

    def defaults(self) -> dict[str, Any]:
        values = {o.dest: o.default for o in self.options}
        if self.argument is not None:
            values[self.argument.dest] = ()
        return values


CONFIG = Option(
    ("--config",), "config_path", convert=file_name, metavar="PATH",
    help="Config file (default: $CVSMSG_CONFIG, ~/.config/cvsmsg/config.toml, "
         "/etc/cvsmsg/config.toml).",
)
SERVER = Option(("--server",), "server", metavar="HOST[:PORT]",
                help="Connect here instead of the JID's DNS SRV records.")
TIMEOUT = Option(("--timeout",), "timeout", convert=seconds, metavar="SECONDS",
                 help="Deadline for the whole run (default: config 'timeout' or 10).")
QUIET = Option(("-q", "--quiet"), "quiet", FLAG, help="Only print errors.")
VERBOSE = Option(("-v", "--verbose"), "verbose", COUNT,
                 help="Say more: where the time went (twice: each phase).")
DEBUG = Option(("--debug",), "debug", FLAG,
               help="Show the XML stream (password and SASL redacted) and tracebacks.")
FILE = Option(("--file",), "file", convert=file_name, metavar="PATH",
              help="Read the message from PATH instead of stdin.")
SUBJECT = Option(("--subject",), "subject", metavar="TEXT",
                 help="Message subject (default: config 'subject' or 'CVS Watch Alarm').")
TYPE = Option(("--type",), "message_type", choices=MESSAGE_TYPES,
              help="Message type (default: config 'type' or normal).")
TO = Option(("--to",), "to", APPEND, metavar="JID",
            help="Also send to JID (repeatable), beside the config's [[loginfo]] rules.")
ROOM = Option(("--room",), "rooms", APPEND, metavar="ROOM",
              help="Also send to the group-chat room ROOM (room@service; repeatable): "
                   "joined, not presence-gated.")
DROP = Option(("--drop",), "drop", APPEND, metavar="ID",
              help="Remove the message ID (or a unique prefix of it); repeatable.")
EXAMPLE = Option(("--example",), "example", FLAG,
                help="Print a commented example config to stdout (the one in "
                     "examples/config.toml) and exit.")
DRY_RUN = Option(("-n", "--dry-run"), "dry_run", FLAG,
                 help="Print on stdout what would be sent, to whom and why; connect to "
                      "nothing, queue nothing.")
LOCK_FD = Option(("--lock-fd",), "lock_fd", convert=whole_number, metavar="FD",
                 help="The deliver lock, inherited from notify.")

# Shared groups, as sqlite-utils shares its option decorators.
CONNECTION = (CONFIG, SERVER, TIMEOUT)
OUTPUT = (QUIET, VERBOSE, DEBUG)

NOTIFY = Command("notify", (CONFIG, FILE, SUBJECT, TYPE, SERVER, TIMEOUT, *OUTPUT, ROOM,
                           DRY_RUN),
                 Argument("recipients", "RECIPIENT..."), reads_stdin=True)
LOGINFO = Command("loginfo", (TO, TYPE, *CONNECTION, *OUTPUT, ROOM, DRY_RUN),
                  Argument("cvs_args", "DIRECTORY [NAME OLD NEW]..."),
                  interspersed=False, reads_stdin=True)
CHECK = Command("check", (*CONNECTION, VERBOSE, DEBUG), Argument("jids", "[JID]..."))
FLUSH = Command("flush", (
    CONFIG, SERVER,
    replace(TIMEOUT, help="Deadline for connecting and for each confirmation (default: "
                          "config 'timeout' or 10)."),
    *OUTPUT,
))
SERVE = Command("serve", (CONFIG, *OUTPUT))
QUEUE = Command("queue", (CONFIG, DROP, replace(DEBUG, help="Show tracebacks.")))
DELIVER = Command("deliver", (CONFIG, LOCK_FD, SERVER, TIMEOUT), hidden=True)
CONFIG_COMMAND = Command("config", (CONFIG, EXAMPLE))
COMMITINFO = Command("commitinfo", (CONFIG, *OUTPUT),
                     Argument("cvs_args", "DIRECTORY [FILE]..."), interspersed=False,
                     never_fails=True)

COMMANDS = {c.name: c for c in (NOTIFY, LOGINFO, CHECK, FLUSH, SERVE, QUEUE, DELIVER,
                                 COMMITINFO, CONFIG_COMMAND)}


def parse(command: Command, args: Sequence[str]) -> dict[str, Any] | None:
    """What click would pass to `command` for `args`, or None: let click parse and report."""
    values = command.defaults()
    positional: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            positional += args[i:]
            break
        if arg[:1] != "-" or arg == "-":
            positional.append(arg)
            if not command.interspersed:
                positional += args[i:]
                break
        elif arg.startswith("--"):
            name, has_value, text = arg.partition("=")
            option = command.by_name.get(name)
            if option is None or (has_value and not option.takes_value):
                return None  # --help, a typo, or --quiet=x
            if option.takes_value and not has_value:
                if i >= len(args):
                    return None  # missing value
                text = args[i]
                i += 1
            if not _store(values, option, text):
                return None
        else:  # -q, -vv, -qv: bundled one-letter flags
            for letter in arg[1:]:
                option = command.by_name.get("-" + letter)
                if option is None or option.takes_value:
                    return None
                _store(values, option, "")
    if command.argument is None:
        return None if positional else values
    if command.argument.required and not positional:
        return None
    values[command.argument.dest] = tuple(positional)
    return values


def _store(values: dict[str, Any], option: Option, text: str) -> bool:
    """Record one occurrence of `option`; False when `text` is not a valid value."""
    if option.action == FLAG:
        values[option.dest] = True
    elif option.action == COUNT:
        values[option.dest] += 1
    else:
        try:
            value = option.value(text)
        except ValueError:
            return False
        values[option.dest] = (*values[option.dest], value) if option.action == APPEND else value
    return True
