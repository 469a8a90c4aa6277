"""Configuration: a frozen dataclass and its loader (CLI > environment > file > defaults)."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping

from cvsmsg.errors import ConfigError, RecipientError
from cvsmsg.recipients import normalize_recipient, normalize_room, unsafe
from cvsmsg.record import Record

# typing and tomllib cost ~15 ms to import: the background hand-off (300 times in a big
# commit) needs neither (annotations only; a cached parse of the file, see tomlcache).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, ClassVar

DEFAULT_SUBJECT = "CVS Watch Alarm"
MESSAGE_TYPES = ("normal", "chat", "headline")
SHOW_VALUES = ("away", "chat", "dnd", "xa")
# Prosody's default c2s_stanza_size_limit; a bigger stanza kills our stream.
DEFAULT_MAX_STANZA = 256 * 1024
MIN_STANZA_BYTES = 4096  # the smallest max_stanza_bytes (and learned limit) we accept
PASSWORD_COMMAND_TIMEOUT = 10.0
DEFAULT_MAX_ROSTER = 500
WITHHELD_POLICIES = ("queue", "drop")
DELIVERY_MODES = ("direct", "background")
DEFAULT_QUEUE_MAX_AGE = 7 * 86400.0
DEFAULT_COALESCE_SECONDS = 2.0
PRESENCE_MODES = ("probe", "announce")
# A quiet ("probe") bot still announces this often, so that subscription requests the server
# stored while no cvsmsg ran are answered (RFC 6121 §3.1.3: only an initial presence makes
# the server hand them over).
DEFAULT_ANNOUNCE_INTERVAL = 600.0
DEFAULT_TIMEOUT = 10.0
MIN_TIMEOUT = 0.5  # below this not even a loopback login completes
# The placeholders of viewer_url / viewer_file_url, each URL-quoted when filled in.
VIEWER_FIELDS = ("path", "file", "old", "new", "rev")
DEFAULT_MAX_FILES = 50  # a commit message lists this many files, then "… and N more files"


class LoginfoRule(Record):
    """One `[[loginfo]]` table: who hears about commits in directories that `match`.

    `match` is a regular expression searched in the repository-relative directory, or
    `ALL` / `DEFAULT` as in CVSROOT/loginfo. An empty `to` silences the directories.
    """

    match: str
    to: tuple[str, ...] = ()
    rooms: tuple[str, ...] = ()  # group-chat rooms (XEP-0045), not presence-gated


class Config(Record):
    """Everything one run needs; built once by `load_config`, never mutated."""

    _hidden: ClassVar[tuple[str, ...]] = ("password",)  # never in a repr

    jid: str
    password: str
    server: str | None = None  # "host" or "host:port"; None means SRV lookup
    tls: str = "starttls"  # or "direct" (XEP-0368 port)
    tls_verify: bool = True
    ca_file: str | None = None
    default_domain: str | None = None
    subject: str = DEFAULT_SUBJECT
    message_type: str = "normal"
    withhold_show: frozenset[str] = frozenset({"dnd"})
    timeout: float = DEFAULT_TIMEOUT  # the deadline of a whole one-shot run
    # serve and the background deliverer: the bound on each login, confirmation and ping
    step_timeout: float = DEFAULT_TIMEOUT
    presence_grace: float = 2.0
    max_stanza_bytes: int = DEFAULT_MAX_STANZA
    max_parts: int = 10
    presence: str = "probe"  # or "announce": initial presence on every run (the book's way)
    announce_interval: float = DEFAULT_ANNOUNCE_INTERVAL  # probe mode: announce this often
    # The spool (issue 3): None means the default directory (see spool.resolve_spool_dir).
    spool_dir: str | None = None
    # The group a root run gives the shared spool it creates (mode 3770); without it a root
    # run refuses to create one (its own group would lock the CVS users out).
    spool_group: str | None = None
    withheld: str = "queue"  # or "drop": what happens to a message withheld (offline/dnd)
    delivery: str = "direct"  # or "background": notify only writes the spool
    queue_max_age: float = DEFAULT_QUEUE_MAX_AGE  # seconds; older queued messages are dropped
    coalesce_seconds: float = DEFAULT_COALESCE_SECONDS  # burst window for digests
    source: str | None = None  # the file it came from, for messages
    loginfo: tuple[LoginfoRule, ...] = ()
    # Who may subscribe to the bot's presence: bare JIDs, domains, or "*". None: the bot's
    # own domain (see `allowed_subscribers`).
    subscribers: tuple[str, ...] | None = None
    max_roster: int = DEFAULT_MAX_ROSTER
    password_source: str = ""  # where the password came from, for `cvsmsg check`
    room_nick: str | None = None  # the nick in group-chat rooms; None: the JID's localpart
    # Commit messages (loginfo): web-viewer link templates, and how many files are listed.
    viewer_url: str = ""
    viewer_file_url: str = ""
    max_files: int = DEFAULT_MAX_FILES
    diffstat: bool = False  # `+12 -3` per file, from `cvs rdiff` (opt-in: it costs time)
    # A late message's body ends with "[queued TIME: offline]" (its <delay> stamp is always
    # sent; the note is for clients that do not show it).
    late_note: bool = True
    # False: `notify` skips a commit-watch notification for a recipient whom a [[loginfo]]
    # rule already tells about that directory's commits (they get the commit message).
    commit_watch_for_followers: bool = True

    @property
    def allowed_subscribers(self) -> tuple[str, ...]:
        """`subscribers`, or the bot's own domain when it is not set."""
        if self.subscribers is not None:
            return self.subscribers
        return (self.jid.partition("@")[2].split("/")[0].lower(),)

    @property
    def server_address(self) -> tuple[str, int] | None:
        """(host, port) when `server` is set; the default port follows `tls`."""
        if not self.server:
            return None
        host, sep, port = self.server.rpartition(":")
        if sep and port.isdigit() and host and not host.endswith(":"):
            return host.strip("[]"), int(port)
        return self.server.strip("[]"), 5223 if self.tls == "direct" else 5222


def default_config_paths(env: Mapping[str, str] | None = None) -> list[str]:
    """Where we look when neither --config nor $CVSMSG_CONFIG is given (paths.py)."""
    from cvsmsg.paths import config_search_path

    return config_search_path(os.environ if env is None else env)


def find_config_file(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """An explicit or $CVSMSG_CONFIG path must exist; default paths are optional."""
    chosen = explicit or env.get("CVSMSG_CONFIG") or None
    if chosen is not None:
        if not os.path.isfile(chosen):
            raise ConfigError(f"config file {chosen} does not exist or is not a file")
        return chosen
    for path in default_config_paths(env):
        if os.path.isfile(path):
            return path
    return None


def _read_toml(path: str) -> dict[str, Any]:
    from cvsmsg.tomlcache import load_toml

    try:
        return load_toml(path, check=lambda data: _check_regexes(data, path))
    except PermissionError:
        raise ConfigError(f"cannot read config file {path}: permission denied") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def _refuse_exposed(path: str, what: str, *, secret: bool) -> None:
    """A file others can write can make cvsmsg run anything (`password_command`) as every
    CVS user; a password every local user can read is a password given away."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"cannot stat {what} {path}: {exc.strerror}") from None
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "group- and world" if mode & stat.S_IWGRP and mode & stat.S_IWOTH else (
            "group" if mode & stat.S_IWGRP else "world")
        raise ConfigError(
            f"{what} {path} is {who}-writable: whoever can write it runs code as every CVS "
            f"user; run 'chmod go-w {path}'"
        )
    if secret and mode & stat.S_IROTH:
        raise ConfigError(
            f"{what} {path} holds a password and is world-readable: run 'chmod o-rwx {path}'"
        )


def _password_from_file(path: str) -> str:
    _refuse_exposed(path, "password file", secret=True)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise ConfigError(f"cannot read password file {path}: {reason}") from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"password file {path} is empty")
    return password


def _password_from_command(command: str) -> str:
    import subprocess  # only here: `notify`'s background hand-off must start fast

    try:
        proc = subprocess.run(
            ["/bin/sh", "-c", command],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=PASSWORD_COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(
            f"password_command did not finish within {PASSWORD_COMMAND_TIMEOUT:g} s"
        ) from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise ConfigError(f"password_command exited with status {proc.returncode}{tail}")
    lines = proc.stdout.decode("utf-8", "replace").splitlines()
    if not lines or not lines[0]:
        raise ConfigError("password_command printed no password")
    return lines[0]


_KNOWN_KEYS = {
    "jid", "password", "password_file", "password_command", "server", "tls", "tls_verify",
    "ca_file", "default_domain", "subject", "type", "withhold_show", "timeout",
    "presence_grace", "max_stanza_bytes", "max_parts", "presence", "announce_interval",
    "step_timeout", "loginfo", "subscribers", "max_roster",
}
_KNOWN_KEYS |= {"room_nick"}
_SPOOL_KEYS = {"spool_dir", "withheld", "delivery", "queue_max_age", "coalesce_seconds"}
_SPOOL_KEYS |= {"spool_group"}
_KNOWN_KEYS |= _SPOOL_KEYS
_COMMIT_MESSAGE_KEYS = {"viewer_url", "viewer_file_url", "max_files", "diffstat"}
_KNOWN_KEYS |= _COMMIT_MESSAGE_KEYS
_KNOWN_KEYS |= {"late_note"}
_KNOWN_KEYS |= {"commit_watch_for_followers"}

# Largest first: the one table for reading and for showing durations.
DURATION_UNITS = (("w", 7 * 86400), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1))
_DURATION_UNITS = {"": 1, **dict(DURATION_UNITS)}


def format_duration(seconds: float, *, exact: bool = True) -> str:
    """"7d", "90m", "45s": the largest unit that divides `seconds` (exact), or the largest
    unit it reaches, rounded down (an age: "3d" for 3 days and 5 hours)."""
    seconds = max(seconds, 0)
    for unit, size in DURATION_UNITS:
        if seconds >= size and (not exact or seconds % size == 0):
            return f"{seconds / size:g}{unit}" if exact else f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s" if exact else f"{int(seconds)}s"


def did_you_mean(key: str, known: set[str]) -> str:
    """` (did you mean 'server'?)` for a misspelt key, or nothing when none is close."""
    import difflib  # only on this error path

    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_duration(value: Any, key: str, where: str) -> float:
    """Seconds from a number or a string like "90s", "30m", "12h", "7d", "2w"."""
    text = str(value).strip().lower() if isinstance(value, int | float | str) else ""
    number, unit = text.rstrip("smhdw"), text[len(text.rstrip("smhdw")):]
    try:
        if isinstance(value, bool) or unit not in _DURATION_UNITS:
            raise ValueError(text)
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ConfigError(
            f"{where}: '{key}' must be a number of seconds or a duration like "
            '"7d", "12h", "30m"'
        ) from None
    if not seconds >= 0:  # also refuses nan
        raise ConfigError(f"{where}: '{key}' must not be negative")
    return seconds


def _spool_settings(
    data: Mapping[str, Any], env: Mapping[str, str], where: str, base: str
) -> dict[str, Any]:
    """The spool keys of the Config: where the queue lives and how delivery works."""
    settings: dict[str, Any] = {}
    spool_dir = env.get("CVSMSG_SPOOL_DIR") or _expect(data, "spool_dir", str, where)
    if spool_dir:
        settings["spool_dir"] = _resolved(spool_dir, base)
    spool_group = env.get("CVSMSG_SPOOL_GROUP") or _expect(data, "spool_group", str, where)
    if spool_group:
        settings["spool_group"] = spool_group
    withheld = _expect(data, "withheld", str, where) or "queue"
    if withheld not in WITHHELD_POLICIES:
        raise ConfigError(f"{where}: 'withheld' must be \"queue\" or \"drop\"")
    settings["withheld"] = withheld
    delivery = _expect(data, "delivery", str, where) or "direct"
    if delivery not in DELIVERY_MODES:
        raise ConfigError(f"{where}: 'delivery' must be \"direct\" or \"background\"")
    settings["delivery"] = delivery
    if data.get("queue_max_age") is not None:
        settings["queue_max_age"] = parse_duration(data["queue_max_age"], "queue_max_age", where)
    coalesce = _expect(data, "coalesce_seconds", (int, float), where)
    if coalesce is not None:
        if coalesce < 0:
            raise ConfigError(f"{where}: 'coalesce_seconds' must be at least 0")
        settings["coalesce_seconds"] = float(coalesce)
    return settings


def _viewer_template(data: Mapping[str, Any], key: str, where: str) -> str:
    """A viewer_url-style template: only the known placeholders, no format specs."""
    template = _expect(data, key, str, where) or ""
    if not template:
        return template  # nothing to check (and no `string` import on the hand-off path)
    import string

    try:
        fields = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigError(f"{where}: '{key}' is not a valid template: {exc} "
                          "(write a literal brace as {{ or }})") from None
    for _text, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in VIEWER_FIELDS or spec or conversion:
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (
                f":{spec}" if spec else "") + "}"
            raise ConfigError(
                f"{where}: '{key}' has an unknown placeholder {shown}: use "
                + ", ".join("{" + f + "}" for f in VIEWER_FIELDS))
    return template


def _commit_message_settings(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The keys that shape loginfo's commit message."""
    max_files = _expect(data, "max_files", int, where)
    if max_files is not None and max_files < 1:
        raise ConfigError(f"{where}: 'max_files' must be at least 1")
    return {
        "viewer_url": _viewer_template(data, "viewer_url", where),
        "viewer_file_url": _viewer_template(data, "viewer_file_url", where),
        "max_files": DEFAULT_MAX_FILES if max_files is None else max_files,
        "diffstat": _flag(data, "diffstat", False, where),
    }


def _expect(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) and kind in (int, float, (int, float)):
        raise ConfigError(f"{where}: '{key}' must be a number, not a boolean")
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}: '{key}' must be a {names}")
    return value


def _loginfo_rules(
    data: Mapping[str, Any], where: str, default_domain: str | None
) -> tuple[LoginfoRule, ...]:
    """`[[loginfo]]` tables, regexes compiled once to catch mistakes, recipients normalized."""
    tables = data.get("loginfo", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError(f"{where}: 'loginfo' must be tables: [[loginfo]] with match and to")
    rules = []
    for number, table in enumerate(tables, 1):
        here = _rule_place(where, number)
        unknown = sorted(set(table) - {"match", "to", "rooms"})
        if unknown:
            raise ConfigError(f"{here}: unknown setting '{unknown[0]}'"
                              f"{did_you_mean(unknown[0], {'match', 'to'})}")
        match = table.get("match")
        if not isinstance(match, str) or not match:
            raise ConfigError(f"{here}: 'match' must be a regular expression, ALL or DEFAULT")
        to = _addresses(table, "to", "JIDs", here,
                        lambda v: normalize_recipient(v, default_domain))
        rooms = _addresses(table, "rooms", "room JIDs", here, normalize_room)
        rules.append(LoginfoRule(match, to, rooms))
    return tuple(rules)


def _rule_place(where: str, number: int) -> str:
    return f"{where}: [[loginfo]] number {number}"


def _check_regexes(data: Mapping[str, Any], where: str) -> None:
    """Compile each `[[loginfo]]` match once per change of the file (tomlcache calls this
    before it caches a parse), so a mistake is caught by any command, not just loginfo."""
    import re

    tables = data.get("loginfo", [])
    for number, table in enumerate(tables if isinstance(tables, list) else [], 1):
        match = table.get("match") if isinstance(table, dict) else None
        if isinstance(match, str):
            try:
                re.compile(match)
            except re.error as exc:
                raise ConfigError(f"{_rule_place(where, number)}: 'match' {match!r} "
                                  f"is not a valid regex: {exc}") from None


def _addresses(
    table: Mapping[str, Any], key: str, what: str, here: str, normalize: Callable[[str], str]
) -> tuple[str, ...]:
    """A rule's `to` or `rooms`: one string or a list, each normalized; deduplicated."""
    values = table.get(key, [])
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{here}: '{key}' must be a list of {what}")
    try:
        return tuple(dict.fromkeys(normalize(v) for v in values))
    except RecipientError as exc:
        raise ConfigError(f"{here}: {exc}") from None


def _room_nick(data: Mapping[str, Any], where: str) -> str | None:
    """`room_nick`: one line of printable text, or None (the bot's localpart)."""
    nick = _expect(data, "room_nick", str, where)
    if nick is None:
        return None
    if not nick.strip() or not nick.isprintable() or len(nick) > 64:
        raise ConfigError(f"{where}: 'room_nick' must be 1-64 printable characters")
    return nick.strip()


def _subscribers(data: Mapping[str, Any], where: str) -> tuple[str, ...] | None:
    """`subscribers`: bare JIDs and domains, case-folded; "*" for anyone."""
    values = data.get("subscribers")
    if values is None:
        return None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise ConfigError(f"{where}: 'subscribers' must be a list of JIDs and domains")
    result = []
    for value in values:
        entry = value.strip().lower().rstrip(".")
        if entry.startswith("xmpp:"):
            entry = entry[5:]
        local, at, domain = entry.rpartition("@")
        if (
            not entry or unsafe(entry, "/") or entry.count("@") > 1
            or (at and not local) or not domain or ("*" in entry and entry != "*")
        ):
            raise ConfigError(
                f"{where}: subscribers entry {value!r} is not a JID (user@domain), "
                "a domain, or \"*\""
            )
        result.append(entry)
    return tuple(dict.fromkeys(result))


def _resolved(value: str, base: str) -> str:
    """A path from the config: `~` expanded, relative to the config file's directory."""
    return _tidy(os.path.join(base, os.path.expanduser(value)))


def _base(path: str | None) -> str:
    """What relative paths in the config are relative to: its directory, else the cwd."""
    return os.path.dirname(_tidy(os.path.join(os.getcwd(), path))) if path else os.getcwd()


def _tidy(path: str) -> str:
    """`path` as pathlib shows it: no `.` parts or doubled slashes, but `..` kept (unlike
    os.path.normpath: through a symbolic link, `link/..` is not the link's directory)."""
    parts = [part for part in path.split("/") if part not in ("", ".")]
    return ("/" if path.startswith("/") else "") + "/".join(parts) or "."


def peek_spool_settings(explicit_path: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """Only the spool keys (delivery mode, spool_dir), without fetching the password:
    enough for `notify` to choose between the hand-off and a direct delivery."""
    path = find_config_file(explicit_path, env)
    data: dict[str, Any] = _read_toml(path) if path else {}
    return _spool_settings(data, env, path or "configuration", _base(path))


def load_config(
    explicit_path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the Config: CLI `overrides` > environment > file > defaults."""
    env = os.environ if env is None else env
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    path = find_config_file(explicit_path, env)
    data: dict[str, Any] = _read_toml(path) if path else {}
    where = path or "configuration"

    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown setting '{unknown[0]}'"
                          f"{did_you_mean(unknown[0], _KNOWN_KEYS)}")
    if path is not None:
        # Whatever overrides are set: the file itself is what others could read or change.
        _refuse_exposed(path, "config file", secret="password" in data)
    base = _base(path)

    jid = env.get("CVSMSG_JID") or _expect(data, "jid", str, where)
    if not jid:
        if path is None:
            raise ConfigError(
                "no configuration found: create /etc/cvsmsg/config.toml or "
                "~/.config/cvsmsg/config.toml, or pass --config "
                "('cvsmsg config --example' prints a commented example)"
            )
        raise ConfigError(f"{where}: 'jid' is not set (the bot's own XMPP account)")

    sources = [k for k in ("password", "password_file", "password_command") if k in data]
    if len(sources) > 1:
        raise ConfigError(f"{where}: set only one of {', '.join(sources)}")
    password = env.get("CVSMSG_PASSWORD")
    password_source = "$CVSMSG_PASSWORD"
    if not password:
        if "password" in data:
            password = _expect(data, "password", str, where)
            password_source = f"config file {path}"
        elif "password_file" in data:
            pfile = _resolved(_expect(data, "password_file", str, where), base)
            password = _password_from_file(pfile)
            password_source = f"password_file {pfile}"
        elif "password_command" in data:
            password = _password_from_command(_expect(data, "password_command", str, where))
            password_source = "password_command"
    if not password:
        raise ConfigError(
            f"{where}: no password: set password, password_file or password_command, "
            "or $CVSMSG_PASSWORD"
        )

    tls = overrides.get("tls") or _expect(data, "tls", str, where) or "starttls"
    if tls not in ("starttls", "direct"):
        raise ConfigError(f"{where}: 'tls' must be \"starttls\" or \"direct\"")
    tls_verify = _expect(data, "tls_verify", bool, where)

    ca_file = overrides.get("ca_file") or _expect(data, "ca_file", str, where)
    ca_path = None
    if ca_file:
        ca_path = _resolved(ca_file, base)
        if not os.path.isfile(ca_path):
            raise ConfigError(f"{where}: ca_file {ca_path} does not exist")

    mtype = overrides.get("message_type") or _expect(data, "type", str, where) or "normal"
    if mtype not in MESSAGE_TYPES:
        raise ConfigError(f"{where}: 'type' must be one of {', '.join(MESSAGE_TYPES)}")

    presence = _expect(data, "presence", str, where) or PRESENCE_MODES[0]
    if presence not in PRESENCE_MODES:
        raise ConfigError(f"{where}: 'presence' must be \"probe\" or \"announce\"")
    announce_interval = DEFAULT_ANNOUNCE_INTERVAL
    if data.get("announce_interval") is not None:
        announce_interval = parse_duration(data["announce_interval"], "announce_interval", where)

    withhold = _expect(data, "withhold_show", list, where)
    if withhold is None:
        withhold = ["dnd"]
    bad = [s for s in withhold if s not in SHOW_VALUES]
    if bad:
        raise ConfigError(
            f"{where}: withhold_show value {bad[0]!r} is not one of {', '.join(SHOW_VALUES)}"
        )

    def number(key: str, default: float, low: float) -> float:
        value = overrides.get(key)
        if value is None:
            value = _expect(data, key, (int, float), where)
        value = default if value is None else value
        if value < low:
            raise ConfigError(f"{where}: '{key}' must be at least {low:g}")
        return float(value)

    server = (
        overrides.get("server") or env.get("CVSMSG_SERVER") or _expect(data, "server", str, where)
    )
    default_domain = _expect(data, "default_domain", str, where) or None
    return Config(
        jid=jid,
        password=password,
        server=server or None,
        tls=tls,
        tls_verify=True if tls_verify is None else tls_verify,
        ca_file=ca_path,
        default_domain=default_domain,
        subject=overrides.get("subject") or _expect(data, "subject", str, where) or DEFAULT_SUBJECT,
        message_type=mtype,
        withhold_show=frozenset(withhold),
        timeout=number("timeout", DEFAULT_TIMEOUT, MIN_TIMEOUT),
        step_timeout=number("step_timeout", DEFAULT_TIMEOUT, MIN_TIMEOUT),
        presence_grace=number("presence_grace", 2.0, 0.0),
        max_stanza_bytes=int(number("max_stanza_bytes", DEFAULT_MAX_STANZA, MIN_STANZA_BYTES)),
        max_parts=int(number("max_parts", 10, 1)),
        presence=presence,
        announce_interval=announce_interval,
        **_spool_settings(data, env, where, base),
        source=path,
        loginfo=_loginfo_rules(data, where, default_domain),
        subscribers=_subscribers(data, where),
        max_roster=int(number("max_roster", DEFAULT_MAX_ROSTER, 0)),
        password_source=password_source,
        room_nick=_room_nick(data, where),
        **_commit_message_settings(data, where),
        late_note=_flag(data, "late_note", True, where),
        commit_watch_for_followers=_flag(data, "commit_watch_for_followers", True, where),
    )


def _flag(data: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """A true/false key."""
    value = _expect(data, key, bool, where)
    return default if value is None else value
