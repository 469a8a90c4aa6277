"""The pure parts, without a network: decision, recipients, message hygiene, config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvsmsg.config import load_config
from cvsmsg.cvs import parse_notify
from cvsmsg.errors import ConfigError, RecipientError, UsageError
from cvsmsg.message import (
    STANZA_OVERHEAD,
    CData,
    as_body,
    cdata_section,
    clean_text,
    split_message,
    wire_size,
)
from cvsmsg.policy import PresenceView, decide
from cvsmsg.recipients import normalize_recipient
from cvsmsg.redact import RedactingFilter

DND = frozenset({"dnd"})


# -- policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("resources", "deliver", "reason"),
    [
        ({"desk": ""}, True, "available"),
        ({"desk": "chat"}, True, "chat"),
        ({"desk": "away", "phone": "xa"}, True, "away, xa"),
        ({"desk": "dnd"}, False, "dnd (resource desk)"),
        ({"desk": "", "phone": "dnd"}, False, "dnd (resource phone)"),
        ({}, False, "offline"),
    ],
)
def test_decide(resources, deliver, reason):
    decision = decide(PresenceView(resources), DND)
    assert (decision.deliver, decision.reason) == (deliver, reason)


def test_decide_invisible_is_not_offline():
    decision = decide(PresenceView({}, visible=False), DND)
    assert not decision.deliver
    assert decision.reason.startswith("presence not visible")


def test_decide_negative_priority():
    view = PresenceView({"bot": "", "desk": "away"}, negative_priority=frozenset({"bot"}))
    assert decide(view, DND).reason == "away"
    only = PresenceView({"bot": ""}, negative_priority=frozenset({"bot"}))
    assert not decide(only, DND).deliver


def test_decide_configurable_shows():
    assert not decide(PresenceView({"d": "xa"}), frozenset({"dnd", "xa"})).deliver
    assert decide(PresenceView({"d": "dnd"}), frozenset()).deliver


# -- recipients ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("alice@example.org", "alice@example.org"),
        ("alice@example.org \r", "alice@example.org"),
        ("  Alice@Example.ORG.", "alice@example.org"),
        ("xmpp:alice@example.org", "alice@example.org"),
        ("alice@example.org/laptop", "alice@example.org"),
        ("dave", "dave@cvs.example"),
        # equivalent spellings of one person fold to the form the server and slixmpp use
        ("alice@example.org\u200b", "alice@example.org"),  # a zero-width space pasted in
        ("\ufeffal\u00adice@example.org", "alice@example.org"),  # BOM, soft hyphen
        ("\uff41\uff4c\uff49\uff43\uff45@example.org", "alice@example.org"),  # fullwidth
        ("ALICE@EXAMPLE.ORG", "alice@example.org"),
        ("alice@XN--BCHER-KVA.example", "alice@b\u00fccher.example"),  # IDNA A-label
        ("alice@B\u00dcCHER.example", "alice@b\u00fccher.example"),
        ("alice@127.0.0.1", "alice@127.0.0.1"),
        ("alice@[::1]", "alice@[::1]"),
    ],
)
def test_normalize_recipient(value, expected):
    assert normalize_recipient(value, "cvs.example") == expected


@pytest.mark.parametrize(
    "value",
    [
        "", " \r", "a b@x", "a@b@c", "@x", "a@", "<a>@x", "a@x y", "xmpp", "XMPP ",
        # what slixmpp's JID refuses must be refused here (exit 7, never queued)
        "x@-bad.org", "x@bad-.org", "\U0001f600@localhost", "a\x7f@localhost",
        "a\x1b]0;owned\x07@localhost", "a@b..c", "a@[::zz]", "a@" + "x" * 64 + ".org",
        "\u202eecila@localhost",  # a bidi override: prohibited
    ],
)
def test_invalid_recipients(value):
    with pytest.raises(RecipientError) as info:
        normalize_recipient(value, "cvs.example")
    assert "\x1b" not in str(info.value) and "\x7f" not in str(info.value)  # printable


def test_the_bot_is_not_its_own_recipient():
    from cvsmsg.recipients import resolve_recipients

    valid, invalid = resolve_recipients(
        ["Bot@Example.org", "alice@example.org", "alice@example.org\u200b"], None,
        "bot@example.org",
    )
    assert valid == ["alice@example.org"]
    assert [o.reason for o in invalid] == [
        "recipient bot@example.org is cvsmsg's own account: it cannot notify itself"
    ]


def test_parse_notify():
    text = "proj/sub s.txt\n---\nTriggered edit watch on /srv/cvsroot/proj\nBy bob\n"
    notice = parse_notify(text)
    assert notice is not None
    assert (notice.path, notice.kind, notice.repository, notice.by) == (
        "proj/sub s.txt", "edit", "/srv/cvsroot/proj", "bob"
    )
    assert parse_notify("hello") is None


# -- message hygiene ----------------------------------------------------------------------


def test_clean_text():
    assert clean_text(b"\xef\xbb\xbfa\r\nb\x07\n\n") == "a\nb"
    with pytest.raises(UsageError, match="empty"):
        clean_text(b"\n \t\n")
    with pytest.raises(UsageError, match="binary"):
        clean_text(b"a\x00b")


def test_split_keeps_text_and_fits():
    text = "\n".join("é<&>" * 50 for _ in range(400))
    parts = split_message("S", text, 16384, 100)
    assert "".join(p.body for p in parts) == text
    assert all(wire_size(p.body) + wire_size(p.subject) < 16384 - 1024 for p in parts)
    assert parts[0].subject == f"S (part 1/{len(parts)})"


def test_split_one_long_line():
    text = "y" * 50000
    parts = split_message("S", text, 8192, 100)
    assert "".join(p.body for p in parts) == text
    assert len(parts) > 5


def _greedy(text: str, budget: int) -> list[str]:
    """The splitting rule, one character at a time: each chunk ends after the last line
    that fits `budget` wire bytes, else after the last character that fits."""
    chunks, pos = [], 0
    while pos < len(text):
        end = line_end = pos
        while end < len(text) and wire_size(text[pos:end + 1]) <= budget:
            end += 1
            if text[end - 1] == "\n":
                line_end = end
        end = len(text) if end == len(text) else (line_end if line_end > pos else end)
        chunks.append(text[pos:max(end, pos + 1)])
        pos += len(chunks[-1])
    return chunks


@pytest.mark.parametrize("text", [
    "a<&>'\"é€𝄞" * 900,  # cuts fall inside entities and UTF-8 sequences
    "\n".join(("é" * i + "&" * (i % 7) + "x" * (i * 13 % 97)) for i in range(300)),
    ("<" * 3000 + "\n") * 3,  # lines longer than a part, all entities
])
def test_split_cuts_where_the_rule_says(text):
    budget = 4096 - STANZA_OVERHEAD - wire_size("S") - 32 - 128
    parts = split_message("S", text, 4096, 1000)
    assert [p.body for p in parts] == _greedy(text, budget)


def test_a_long_body_goes_as_cdata_only_when_no_larger():
    short = "<&" * 100
    assert type(as_body(short)) is str  # short: the usual escaped text
    long = "a<&\n" * 5000
    assert type(as_body(long)) is CData and as_body(long) == long
    assert type(as_body("]]>" * 5000)) is str  # CDATA would be larger than escaping
    assert cdata_section("a]]>b") == "<![CDATA[a]]]]><![CDATA[>b]]>"


def _sent_size(body: str) -> int:
    """Bytes a body takes in the stanza as it is sent (as_body: CDATA or escaped text)."""
    body = as_body(body)
    return len(cdata_section(body).encode()) if type(body) is CData else wire_size(body)


@pytest.mark.parametrize(("text", "count"), [
    ("a.txt <tag> & 'q' \"dq\" 0123456789\n" * 30000, 4),  # 1.02 MB; escaped 1.53: 6
    (("<" * 3000 + "\n") * 300, 4),  # 900 KB, 3.6 MB escaped: CDATA's 4, not 14
    ("x]]>y<\n" * 150000, 8),  # ]]> inside: counted escaped (1.95 MB), as before
    ("é" * 600000, 5),  # 1.2 MB of UTF-8, nothing to escape
])
def test_long_parts_are_counted_as_they_go_cdata_or_text(text, count):
    limit = 262144
    parts = split_message("S", text, limit, 10)
    assert "".join(p.body for p in parts) == text
    assert len(parts) == count
    assert all(_sent_size(p.body) + wire_size(p.subject) + STANZA_OVERHEAD <= limit
               for p in parts)


def test_small_message_is_one_part():
    assert [(p.subject, p.body) for p in split_message("S", "hi", 262144, 10)] == [("S", "hi")]


# -- config -------------------------------------------------------------------------------


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_config_precedence(tmp_path):
    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\nsubject = "file"\n')
    cfg = load_config(cfg_file, env={"CVSMSG_JID": "b@x"}, overrides={"subject": "cli"})
    assert (cfg.jid, cfg.password, cfg.subject) == ("b@x", "p", "cli")
    cfg = load_config(cfg_file, env={"CVSMSG_PASSWORD": "envpw"})
    assert cfg.password == "envpw"


def test_config_from_env_variable_path(tmp_path):
    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\ntimeout = 3\n')
    assert load_config(None, env={"CVSMSG_CONFIG": str(cfg_file)}).timeout == 3.0


def test_config_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\n'), env={})
    assert cfg.subject == "CVS Watch Alarm"
    assert cfg.withhold_show == frozenset({"dnd"})
    assert cfg.timeout == 10.0
    assert cfg.message_type == "normal"
    assert cfg.server_address is None
    assert cfg.tls_verify


@pytest.mark.parametrize(
    ("server", "tls", "address"),
    [
        ("xmpp.example", "starttls", ("xmpp.example", 5222)),
        ("xmpp.example", "direct", ("xmpp.example", 5223)),
        ("xmpp.example:5333", "starttls", ("xmpp.example", 5333)),
        ("[::1]:5333", "starttls", ("::1", 5333)),
        ("[::1]", "starttls", ("::1", 5222)),
    ],
)
def test_server_address(tmp_path, server, tls, address):
    cfg_file = write(
        tmp_path / "c.toml", f'jid = "a@x"\npassword = "p"\nserver = "{server}"\ntls = "{tls}"\n'
    )
    assert load_config(cfg_file, env={}).server_address == address


def test_password_is_not_in_repr(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "sekrit"\n'), env={})
    assert "sekrit" not in repr(cfg)


def test_two_password_sources_refused(tmp_path):
    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\npassword_file = "f"\n')
    with pytest.raises(ConfigError, match="set only one of password, password_file"):
        load_config(cfg_file, env={})


def test_relative_password_file_is_next_to_config(tmp_path):
    write(tmp_path / "secret", "pw\n")
    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword_file = "secret"\n', 0o644)
    assert load_config(cfg_file, env={}).password == "pw"


def test_missing_ca_file(tmp_path):
    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\nca_file = "nope.pem"\n')
    with pytest.raises(ConfigError, match=r"ca_file .*nope\.pem does not exist"):
        load_config(cfg_file, env={})


# -- redaction ----------------------------------------------------------------------------


def test_redacting_filter():
    import logging

    record = logging.LogRecord(
        "x", logging.DEBUG, __file__, 1,
        'SEND: <auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">AGJvdABzZWNyZXQ='
        "</auth> and hunter2", None, None,
    )
    record.name = "slixmpp.xmlstream.xmlstream"
    RedactingFilter(["hunter2"]).filter(record)
    assert record.getMessage() == (
        'SEND: <auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">[redacted]'
        "</auth> and [redacted]"
    )


# -- speed-ups must not change results ------------------------------------------------------


def test_ssl_context_verifies_by_default(tmp_path):
    import ssl

    from cvsmsg.xmpp import make_ssl_context

    cfg_file = write(tmp_path / "c.toml", 'jid = "a@x"\npassword = "p"\n')
    ctx = make_ssl_context(load_config(cfg_file, env={}))
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_help_never_imports_slixmpp():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "cvsmsg", "--help"],
                            capture_output=True, text=True)
    assert result.returncode == 0
    assert "Usage: cvsmsg" in result.stdout
    imported = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()]
    assert not [m for m in imported if m.startswith(("slixmpp", "asyncio", "ssl"))]


def test_redaction_leaves_our_own_messages_alone():
    import logging

    record = logging.LogRecord("cvsmsg", logging.ERROR, __file__, 1,
                               "error: authentication failed: wrong JID or password", None, None)
    RedactingFilter(["wrong"]).filter(record)
    assert record.getMessage() == "error: authentication failed: wrong JID or password"


# -- str methods where the hand-off used regexes (re costs it ~4 ms to import) --------------

_NOTICE_SPEC = r"^(?P<path>.+)\n---\nTriggered (?P<kind>.+?) watch on (?P<repo>.+)\nBy (?P<by>\S+)"


def test_parse_notify_agrees_with_the_regex_it_replaces():
    import random
    import re

    from cvsmsg.cvs import WatchNotice, parse_notify

    spec = re.compile(_NOTICE_SPEC, re.MULTILINE)
    pieces = ["a", " ", "\n", "---", "Triggered ", " watch on ", "By ", "\r", "\t", "\u2028",
              "\x1c", "é", "watch", "---\n"]
    starts = ["", "p f\n---\nTriggered ", "d f\n---\n", "x\n---\nTriggered edit watch on /r\nBy "]
    rng = random.Random(11)
    matched = 0
    for _ in range(20000):
        text = rng.choice(starts) + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        m = spec.match(text)
        want = None if m is None else WatchNotice(m["path"], m["kind"], m["repo"], m["by"])
        assert parse_notify(text) == want, repr(text)
        matched += want is not None
    assert matched > 500  # the comparison covered real notices, not only refusals


def test_plain_host_name_labels_skip_idna_with_the_same_result():
    import random

    from cvsmsg import recipients

    def with_idna(label: str) -> str:
        from encodings import idna

        label = idna.nameprep(label)
        idna.ToASCII(label)
        return recipients._checked_label(label)

    rng = random.Random(5)
    for _ in range(5000):
        label = "".join(rng.choice("aZ0-9x") for _ in range(rng.choice([1, 2, 5, 63, 64])))
        try:
            want: str | None = with_idna(label)
        except (ValueError, UnicodeError):
            want = None
        try:
            got: str | None = recipients._domainprep(label)
        except ValueError:
            got = None
        assert got == want, label


@pytest.mark.parametrize("copies", [1, 3], ids=["once", "three times"])
def test_removing_what_xml_cannot_carry_agrees_with_the_spec(copies):
    import re

    from cvsmsg.message import without_illegal

    every = "".join(chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000) * copies
    every += "".join(map(chr, range(0x10000, 0x110000, 97)))  # the other planes too
    spec = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
    assert without_illegal(every) == (spec.sub("", every), len(spec.findall(every)))
    # a file name from argv may carry surrogates (surrogateescape): kept as they are
    assert without_illegal("caf\udce9\x01.txt") == ("caf\udce9.txt", 1)
    assert without_illegal("plain") == ("plain", 0)


def test_config_paths_keep_dot_dot_as_the_kernel_resolves_it(tmp_path):
    """A relative path in the config is joined to the config's directory and tidied as
    pathlib would, but `..` after a symbolic link is left to the kernel (it is not the
    link's directory)."""
    from cvsmsg.config import load_config

    (tmp_path / "conf").mkdir()
    (tmp_path / "elsewhere" / "inner").mkdir(parents=True)
    (tmp_path / "conf" / "link").symlink_to(tmp_path / "elsewhere" / "inner")
    write(tmp_path / "conf" / "pw", "wrong\n")
    write(tmp_path / "elsewhere" / "pw", "right\n")
    config = write(tmp_path / "conf" / "c.toml",
                   'jid = "a@x"\npassword_file = "./link/../pw"\n')
    cfg = load_config(str(config), env={})
    assert cfg.password == "right"
    assert cfg.password_source == f"password_file {tmp_path}/conf/link/../pw"


def test_decode_reads_each_line_as_utf8_or_else_windows_1252():
    from cvsmsg.message import decode

    assert decode("naïve — ok\n".encode()) == "naïve — ok\n"
    assert decode(b"caf\xe9\nna\xc3\xafve\n\x93q\x94") == "café\nnaïve\n“q”"
    assert decode(b"\x81\xe9") == "\x81é"  # undefined in Windows-1252: Latin-1
    assert decode(b"\xff" * 3) == "ÿÿÿ"
