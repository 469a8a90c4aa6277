"""The config file, parsed once per change.

Importing `tomllib` costs 15-25 ms here (it compiles its regular expressions), and the
background hand-off pays every millisecond 300 times in a 100-file commit with three
watchers. So each user keeps the parsed file in a private cache (paths.config_cache_dir:
$XDG_CACHE_HOME/cvsmsg, else ~/.cache/cvsmsg; directory 0700, files 0600, `marshal`
format), used only when

- the cache file is ours (owner = our euid, no group/other bits), and
- the config file we just opened has the same device, inode, size, mtime and ctime.

The config file itself is always opened and read-checked first, so permissions keep
applying exactly as without the cache. Any problem with the cache means: parse the file.
A file that holds the password itself is never cached: the secret must not be copied into
every committer's home (password_file and password_command configs are cached).

A parse is cached only once the caller's `check` passed on it, so the checks that need
heavy imports (the `[[loginfo]]` regexes: `re`, ~4 ms with `enum`) run once per change of
the file, not on every hand-off.
"""

from __future__ import annotations

import contextlib
import marshal
import os
from collections.abc import Callable, Mapping

from cvsmsg.paths import config_cache_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CACHE_VERSION = 2  # 2: entries are written only after the caller's check passed
MAX_NAME = 200  # file-name room for the encoded config path


def cache_file(config: str, env: Mapping[str, str]) -> str | None:
    """Where the parsed `config` is cached for this user; None when there is no home."""
    base = config_cache_dir(env)
    if base is None:
        return None
    name = os.path.abspath(config).replace("%", "%25").replace("/", "%2F") + ".marshal"
    if len(name) > MAX_NAME:
        return None
    return os.path.join(base, name)


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (CACHE_VERSION, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _read_cache(path: str, identity: tuple[int | str, ...]) -> dict[str, Any] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or st.st_size > 1 << 20:
            return None
        raw = os.read(fd, st.st_size + 1)
        stored, data = marshal.loads(raw)
    except (OSError, ValueError, EOFError, TypeError):
        return None
    finally:
        os.close(fd)
    if stored != identity or not isinstance(data, dict):
        return None
    return data


def _write_cache(path: str, identity: tuple[int | str, ...], data: dict[str, Any]) -> None:
    try:
        raw = marshal.dumps((identity, data))
    except ValueError:
        return  # e.g. a TOML date: not worth caching
    parent, name = os.path.split(path)
    tmp = os.path.join(parent, f".{name}.{os.getpid()}")
    try:
        os.makedirs(parent, mode=0o700, exist_ok=True)
        if os.stat(parent).st_uid != os.geteuid():
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        try:
            os.write(fd, raw)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def load_toml(
    config: str,
    env: Mapping[str, str] | None = None,
    check: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """`tomllib.load` of `config`, from the cache when the file has not changed.

    `check` runs on a fresh parse, before it is cached (a cached one passed it). Raises
    what opening, parsing and `check` raise (OSError, tomllib.TOMLDecodeError...).
    """
    env = os.environ if env is None else env
    with open(config, "rb") as fh:
        identity = _identity(os.fstat(fh.fileno()))
        cached = cache_file(config, env)
        if cached is not None:
            data = _read_cache(cached, identity)
            if data is not None:
                return data
        import tomllib

        data = tomllib.load(fh)
    if check is not None:
        check(data)
    if cached is not None:
        if "password" in data:
            with contextlib.suppress(OSError):
                os.unlink(cached)  # e.g. left from before the password moved into the file
        else:
            _write_cache(cached, identity, data)
    return data
