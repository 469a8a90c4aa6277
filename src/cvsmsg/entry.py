"""Console entry point. `cvsmsg notify` in background mode (or while `cvsmsg serve` runs)
is handed off here without loading click or asyncio: CVS waits for every call, once per
watcher and file. Everything else, and anything unusual, goes to the click CLI.

The fast path understands exactly the `notify` options a CVSROOT/notify line uses; for
any other option (--help, --debug, --file, a bad value, ...) it steps aside before
reading stdin, so click parses and reports as always.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

TYPE_CHECKING = False  # no `typing` at run time: this is the hand-off's start-up
if TYPE_CHECKING:
    from typing import IO, Any

# Read like the click CLI does (same cap): see cli.MAX_INPUT_BYTES.
MAX_INPUT_BYTES = 32 * 1024 * 1024
_VALUE_OPTIONS = {"--config", "--subject", "--type", "--server", "--timeout"}
_TYPES = ("normal", "chat", "headline")


def main(argv: list[str] | None = None) -> int:
    """`cvsmsg ...`: the fast hand-off when it applies, else the click CLI."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["notify"]:
        status = fast_notify(args[1:])
        if status is not None:
            return status
    from cvsmsg.cli import main as cli_main

    return cli_main(args)


def parse_notify_args(args: list[str]) -> dict[str, Any] | None:
    """The options and recipients of `notify`, or None for anything click should see."""
    opts: dict[str, Any] = {"recipients": [], "quiet": False, "verbose": 0}
    i = 0
    only_args = False
    while i < len(args):
        arg = args[i]
        if only_args or not arg.startswith("-") or arg == "-":
            opts["recipients"].append(arg)
        elif arg == "--":
            only_args = True
        elif arg in _VALUE_OPTIONS:
            if i + 1 >= len(args):
                return None
            opts[arg[2:]] = args[i + 1]
            i += 1
        elif arg.partition("=")[0] in _VALUE_OPTIONS:
            name, _, value = arg.partition("=")
            opts[name[2:]] = value
        elif arg in ("-q", "--quiet"):
            opts["quiet"] = True
        elif arg == "--verbose" or (len(arg) > 1 and arg.strip("v") == "-"):
            opts["verbose"] += 1 if arg == "--verbose" else len(arg) - 1
        else:
            return None
        i += 1
    if not opts["recipients"] or opts.get("type", "normal") not in _TYPES:
        return None
    if "timeout" in opts:
        try:
            opts["timeout"] = float(opts["timeout"])
        except ValueError:
            return None
        if not opts["timeout"] >= 0.5:
            return None
    return opts


def _read_stdin(stdin: IO[bytes]) -> bytes:
    from cvsmsg.errors import UsageError

    if stdin.isatty():
        raise UsageError("no message: pipe the text on stdin or use --file PATH")
    data = stdin.read(MAX_INPUT_BYTES + 1)
    while len(data) > MAX_INPUT_BYTES and stdin.read(1 << 20):
        pass  # drain to EOF: the writer must never see a broken pipe
    if len(data) > MAX_INPUT_BYTES:
        sys.stderr.write(f"cvsmsg: input is larger than {MAX_INPUT_BYTES // (1024 * 1024)} "
                         "MiB: only that much was used\n")
        data = data[:MAX_INPUT_BYTES]
    return data


def fast_notify(args: list[str]) -> int | None:
    """Hand the message off to the spool; None when the click CLI should run instead."""
    opts = parse_notify_args(args)
    if opts is None:
        return None
    env = os.environ
    config_path = Path(opts["config"]) if opts.get("config") else None
    try:
        from cvsmsg.config import Config, peek_spool_settings
        from cvsmsg.spool import Spool, resolve_spool_dir

        settings = peek_spool_settings(config_path, env)
        path, shared, warning = resolve_spool_dir(settings.get("spool_dir"), env)
        spool = Spool(path, shared=shared)
        if warning or not (settings["delivery"] == "background" or spool.serve_running()):
            return None  # direct delivery (or a warning to log): the full CLI does it
        spool.ensure()
    except Exception:
        return None  # the full CLI reports it properly (or falls back to direct delivery)

    import logging

    from cvsmsg.errors import CvsmsgError
    from cvsmsg.status import ExitStatus

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cvsmsg: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if opts["quiet"] else
                  logging.INFO if opts["verbose"] else logging.WARNING)
    try:
        # Read the whole message first, as the CLI does: exiting without reading stdin can
        # make CVS die of SIGPIPE.
        raw = _read_stdin(sys.stdin.buffer)
        from cvsmsg.config import load_config
        from cvsmsg.dispatch import dispatch
        from cvsmsg.message import clean_text

        cfg: Config = load_config(config_path, env, overrides={
            "subject": opts.get("subject"), "message_type": opts.get("type"),
            "server": opts.get("server"), "timeout": opts.get("timeout"),
        })
        text = clean_text(raw)
        results = dispatch(cfg, list(opts["recipients"]), cfg.subject, text, env).outcomes
    except CvsmsgError as exc:
        sys.stderr.write(f"cvsmsg: error: {exc}\n")
        return int(exc.status)
    except Exception as exc:  # a bug: still one line
        sys.stderr.write(f"cvsmsg: error: internal error: {type(exc).__name__}: {exc} "
                         "(rerun with --debug)\n")
        return int(ExitStatus.INTERNAL)
    failed = False
    for result in results:
        if result.failed:
            failed = True
            sys.stderr.write(f"cvsmsg: error: {result.reason}\n")
        elif not opts["quiet"]:
            sys.stderr.write(f"cvsmsg: queued for {result.recipient}: {result.reason}\n")
    return int(ExitStatus.RECIPIENT if failed else ExitStatus.OK)
