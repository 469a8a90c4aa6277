"""Every place cvsmsg keeps something on disk, and the names inside the spool.

The one module that knows locations (pipx's `paths.py` is the model): XDG variables are
honoured here and nowhere else, each only when it holds an absolute path (the XDG rule),
else its default under $HOME. Every function takes the environment as a mapping, so tests
inject it. `bin/cvsmsg-drop` hard-codes SYSTEM_SPOOL_DIR and the names below; a test keeps
them equal.

Locations are strings (os.path), not pathlib Paths: importing pathlib costs the background
hand-off ~10 ms (it imports re, enum, fnmatch and urllib.parse), on every call CVS waits for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

APP = "cvsmsg"

SYSTEM_CONFIG = "/etc/cvsmsg/config.toml"
SYSTEM_SPOOL_DIR = "/var/spool/cvsmsg"

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


def _xdg(env: Mapping[str, str], name: str, default: str) -> str:
    """$NAME if it is absolute (relative values are ignored, as the XDG spec says), else
    $HOME/DEFAULT (the password database's home when $HOME is unset or relative)."""
    value = env.get(name) or ""
    if value.startswith("/"):
        return value
    return os.path.join(home(env), default)


def home(env: Mapping[str, str]) -> str:
    """$HOME when absolute, else the user's home from the password database."""
    value = env.get("HOME") or ""
    if value.startswith("/"):
        return value
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:
        return "/"


def config_home(env: Mapping[str, str]) -> str:
    return _xdg(env, "XDG_CONFIG_HOME", ".config")


def state_home(env: Mapping[str, str]) -> str:
    return _xdg(env, "XDG_STATE_HOME", ".local/state")


def cache_home(env: Mapping[str, str]) -> str:
    return _xdg(env, "XDG_CACHE_HOME", ".cache")


def config_search_path(env: Mapping[str, str]) -> list[str]:
    """Where the config is looked for when neither --config nor $CVSMSG_CONFIG is given,
    first match wins: the user's own, then the system-wide one."""
    return [os.path.join(config_home(env), APP, "config.toml"), SYSTEM_CONFIG]


def config_cache_dir(env: Mapping[str, str]) -> str | None:
    """The private directory of parsed-config caches (tomlcache); None without a usable
    home: a cache is an optimisation, never worth guessing a directory for."""
    value = env.get("XDG_CACHE_HOME") or ""
    if value.startswith("/"):
        return os.path.join(value, APP)
    base = env.get("HOME") or ""
    if not base.startswith("/"):
        return None
    return os.path.join(base, ".cache", APP)


def account_cache_file(kind: str, jid: str, server: str, env: Mapping[str, str]) -> str | None:
    """This user's `kind` cache (roster, server notes) for the bot `jid` on `server`, named
    by a digest of the two (a JID is no file name); None without a usable home."""
    base = config_cache_dir(env)
    if base is None:
        return None
    import hashlib  # not on the hand-off's path

    digest = hashlib.sha256(f"{jid}\0{server}".encode()).hexdigest()[:32]
    return os.path.join(base, f"{kind}-{digest}.marshal")


def user_spool_dir(env: Mapping[str, str]) -> str:
    """The per-user fallback spool: $XDG_STATE_HOME/cvsmsg/spool (~/.local/state/…)."""
    return os.path.join(state_home(env), APP, "spool")


def message_name(entry_id: str) -> str:
    return entry_id + MESSAGE_SUFFIX


def bad_name(entry_id: str) -> str:
    return entry_id + BAD_SUFFIX


def lock_name(name: str) -> str:
    """`deliver` → `deliver.lock`."""
    return name + LOCK_SUFFIX


def deliver_log(spool: str) -> str:
    """The detached deliverer's log file; open it with `spool.open_log_file`."""
    return os.path.join(spool, DELIVER_LOG)


def example_config() -> str:
    """The commented example config shipped inside the package (a copy of
    examples/config.toml: `pip install` does not install examples/)."""
    from importlib.resources import files

    return (files(__package__) / "data" / "config.toml").read_text(encoding="utf-8")


def commits_dir(spool: str) -> str:
    """Where `cvsmsg commitinfo` records a commit's directories for `cvsmsg loginfo`."""
    return os.path.join(spool, COMMITS_DIR)


def commit_record(spool: str, key: str) -> str:
    """One commit's record (see cvsmsg.commits)."""
    return os.path.join(commits_dir(spool), key + COMMIT_SUFFIX)
