"""Every place cvsmsg keeps something on disk, and the names inside the spool.

The one module that knows locations (pipx's `paths.py` is the model): XDG variables are
honoured here and nowhere else, each only when it holds an absolute path (the XDG rule),
else its default under $HOME. Every function takes the environment as a mapping, so tests
inject it. `bin/cvsmsg-drop` hard-codes SYSTEM_SPOOL_DIR and the names below; a test keeps
them equal.

No imports beyond the standard library's `pathlib`: the hand-off imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

APP = "cvsmsg"

SYSTEM_CONFIG = Path("/etc/cvsmsg/config.toml")
SYSTEM_SPOOL_DIR = Path("/var/spool/cvsmsg")

# Names inside a spool directory.
MESSAGE_SUFFIX = ".msg"  # ID.msg: one queued message
BAD_SUFFIX = ".bad"  # ID.bad: a message file that failed validation, kept for a human
TMP_PREFIX = ".tmp-"  # a file being written (never a message until linked into place)
LOCK_SUFFIX = ".lock"
DELIVER_LOCK = "deliver"  # deliver.lock: held by the one process draining the spool
SERVE_LOCK = "serve"  # serve.lock: held by `cvsmsg serve` for its lifetime
WAKE_FIFO = "wake"  # a FIFO: a byte in it wakes a waiting drainer
DELIVER_LOG = "deliver.log"  # the detached deliverer's log
ANNOUNCE_STAMP = "announce"  # mtime = when a run last announced the bot's presence
COMMITS_DIR = "commits"  # SPOOL/commits/KEY.commit: one commit's directories and parts
COMMIT_SUFFIX = ".commit"


def _xdg(env: Mapping[str, str], name: str, default: str) -> Path:
    """$NAME if it is absolute (relative values are ignored, as the XDG spec says), else
    $HOME/DEFAULT (the password database's home when $HOME is unset or relative)."""
    value = env.get(name) or ""
    if value.startswith("/"):
        return Path(value)
    return home(env) / default


def home(env: Mapping[str, str]) -> Path:
    """$HOME when absolute, else the user's home from the password database."""
    value = env.get("HOME") or ""
    if value.startswith("/"):
        return Path(value)
    import os
    import pwd

    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:
        return Path("/")


def config_home(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def state_home(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def cache_home(env: Mapping[str, str]) -> Path:
    return _xdg(env, "XDG_CACHE_HOME", ".cache")


def config_search_path(env: Mapping[str, str]) -> list[Path]:
    """Where the config is looked for when neither --config nor $CVSMSG_CONFIG is given,
    first match wins: the user's own, then the system-wide one."""
    return [config_home(env) / APP / "config.toml", SYSTEM_CONFIG]


def config_cache_dir(env: Mapping[str, str]) -> Path | None:
    """The private directory of parsed-config caches (tomlcache); None without a usable
    home: a cache is an optimisation, never worth guessing a directory for."""
    value = env.get("XDG_CACHE_HOME") or ""
    if value.startswith("/"):
        return Path(value) / APP
    base = env.get("HOME") or ""
    if not base.startswith("/"):
        return None
    return Path(base) / ".cache" / APP


def user_spool_dir(env: Mapping[str, str]) -> Path:
    """The per-user fallback spool: $XDG_STATE_HOME/cvsmsg/spool (~/.local/state/…)."""
    return state_home(env) / APP / "spool"


def message_name(entry_id: str) -> str:
    return entry_id + MESSAGE_SUFFIX


def bad_name(entry_id: str) -> str:
    return entry_id + BAD_SUFFIX


def lock_name(name: str) -> str:
    """`deliver` → `deliver.lock`."""
    return name + LOCK_SUFFIX


def deliver_log(spool: Path) -> Path:
    """The detached deliverer's log file; open it with `spool.open_log_file`."""
    return spool / DELIVER_LOG


def example_config() -> str:
    """The commented example config shipped inside the package (a copy of
    examples/config.toml: `pip install` does not install examples/)."""
    from importlib.resources import files

    return (files(__package__) / "data" / "config.toml").read_text(encoding="utf-8")


def commits_dir(spool: Path) -> Path:
    """Where `cvsmsg commitinfo` records a commit's directories for `cvsmsg loginfo`."""
    return spool / COMMITS_DIR


def commit_record(spool: Path, key: str) -> Path:
    """One commit's record (see cvsmsg.commits)."""
    return commits_dir(spool) / (key + COMMIT_SUFFIX)
