"""The pure loginfo parts: CVS's arguments and text (as measured with CVS 1.12.13), the
message made of them, routing by directory, and the `[[loginfo]]` config."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvsmsg.account import committer
from cvsmsg.config import LoginfoRule, load_config
from cvsmsg.errors import ConfigError, UsageError
from cvsmsg.loginfo import (
    COMMIT,
    IMPORT,
    NEW_DIRECTORY,
    FileChange,
    format_message,
    parse_loginfo,
    parse_text,
    route,
)

# What CVS 1.12.13 wrote on stdin for one commit in /srv/cvsroot/proj (verbatim).
COMMIT_TEXT = (
    "Update of /srv/cvsroot/proj\n"
    "In directory host:/home/bob/wc\n"
    "\n"
    "Modified Files:\n"
    "\ta.txt \n"
    "Added Files:\n"
    "\tnew.txt \n"
    "Removed Files:\n"
    "\tb.txt \n"
    "Log Message:\n"
    "first line of msg\n"
    "second 'quotes' \"dq\" and $dollar `bt` ünïcødé\n"
    "\n"
    "after blank\n"
)
COMMIT_ARGS = ["proj", "a.txt", "1.1.1.1", "1.2", "b.txt", "1.1.1.1", "NONE",
               "new.txt", "NONE", "1.1"]
LOG = "first line of msg\nsecond 'quotes' \"dq\" and $dollar `bt` ünïcødé\n\nafter blank"

IMPORT_TEXT = (
    "Update of /srv/cvsroot/proj/vendor\n"
    "In directory host:/tmp/imp\n"
    "\n"
    "Log Message:\n"
    "vendor drop $x\n"
    "\n"
    "Status:\n"
    "\n"
    "Vendor Tag:\tV\n"
    "Release Tags:\tR1\n"
    "\t\t\n"
    "N proj/vendor/x.txt\n"
    "N proj/vendor/d/y.txt\n"
    "\n"
    "No conflicts created by this import\n"
    "\n"
)
NEW_DIR_TEXT = (
    "Update of /srv/cvsroot/proj/newdir\n"
    "In directory host:/home/bob/wc/newdir\n"
    "\n"
    "Log Message:\n"
    "Directory /srv/cvsroot/proj/newdir put under version control\n"
    "\n"
)
BRANCH_TEXT = (
    "Update of /srv/cvsroot/proj\n"
    "In directory host:/var/tmp/cvs-serv23069\n"
    "\n"
    "Modified Files:\n"
    "      Tag: BR1\n"
    "\ta.txt \n"
    "Log Message:\n"
    "branch commit\n"
)


def test_parse_commit():
    commit = parse_loginfo(COMMIT_ARGS, COMMIT_TEXT)
    assert commit.directory == "proj"
    assert commit.kind == COMMIT
    assert commit.files == (
        FileChange("a.txt", "1.1.1.1", "1.2"),
        FileChange("b.txt", "1.1.1.1", None),
        FileChange("new.txt", None, "1.1"),
    )
    assert [f.change for f in commit.files] == ["modified", "removed", "added"]
    assert commit.log.update_of == "/srv/cvsroot/proj"
    assert commit.log.in_directory == "host:/home/bob/wc"
    assert commit.log.message == LOG
    assert dict(commit.log.sections) == {
        "modified": ("a.txt",), "added": ("new.txt",), "removed": ("b.txt",)
    }


def test_commit_message():
    subject, body = format_message(parse_loginfo(COMMIT_ARGS, COMMIT_TEXT), "bob")
    assert subject == "CVS commit: proj by bob"
    assert body == (
        "Commit by bob in /srv/cvsroot/proj\n"
        "\n"
        "Added:\n"
        "  new.txt 1.1\n"
        "Modified:\n"
        "  a.txt 1.1.1.1 -> 1.2\n"
        "Removed:\n"
        "  b.txt 1.1.1.1\n"
        "\n"
        "Log message:\n" + LOG
    )


def test_branch_commit():
    commit = parse_loginfo(["proj", "a.txt", "1.1.1.1", "1.1.1.1.2.1"], BRANCH_TEXT)
    assert commit.log.tag == "BR1"
    _, body = format_message(commit, "bob")
    assert body.splitlines()[:4] == [
        "Commit by bob in /srv/cvsroot/proj on branch BR1", "", "Modified:",
        "  a.txt 1.1.1.1 -> 1.1.1.1.2.1",
    ]


def test_import():
    commit = parse_loginfo(["proj/vendor", "- Imported sources", "NONE", "NONE"], IMPORT_TEXT)
    assert (commit.directory, commit.kind, commit.files) == ("proj/vendor", IMPORT, ())
    assert commit.log.message == "vendor drop $x"
    subject, body = format_message(commit, "bob")
    assert subject == "CVS import: proj/vendor by bob"
    assert body == (
        "Import by bob into /srv/cvsroot/proj/vendor\n"
        "Vendor tag V, release tags R1\n"
        "\n"
        "N proj/vendor/x.txt\n"
        "N proj/vendor/d/y.txt\n"
        "\n"
        "No conflicts created by this import\n"
        "\n"
        "Log message:\n"
        "vendor drop $x"
    )


def test_import_log_message_that_looks_like_the_status():
    text = IMPORT_TEXT.replace("vendor drop $x\n", "Status:\n\nVendor Tag:\tfake\n")
    commit = parse_loginfo(["proj/vendor", "- Imported sources", "NONE", "NONE"], text)
    assert commit.log.message == "Status:\n\nVendor Tag:\tfake"
    assert commit.log.import_status is not None
    assert commit.log.import_status.vendor_tag == "V"


def test_new_directory():
    commit = parse_loginfo(["proj/newdir", "- New directory", "NONE", "NONE"], NEW_DIR_TEXT)
    assert commit.kind == NEW_DIRECTORY
    assert format_message(commit, "bob") == (
        "CVS new directory: proj/newdir by bob",
        "New directory by bob: /srv/cvsroot/proj/newdir",
    )


@pytest.mark.parametrize(
    ("arg", "directory", "files"),
    [
        ("proj a.txt,1.1.1.1,1.2", "proj", [("a.txt", "1.1.1.1", "1.2")]),
        ("proj/sub a.txt,1.1,1.2 b.txt,NONE,1.1 c.txt,1.4,NONE", "proj/sub",
         [("a.txt", "1.1", "1.2"), ("b.txt", None, "1.1"), ("c.txt", "1.4", None)]),
        ("proj sp ace.txt,NONE,1.1 x y,1.1,1.2", "proj",
         [("sp ace.txt", None, "1.1"), ("x y", "1.1", "1.2")]),
        ("proj", "proj", []),
    ],
)
def test_old_single_argument_format(arg, directory, files):
    commit = parse_loginfo([arg], COMMIT_TEXT)
    assert commit.directory == directory
    assert [(f.name, f.old, f.new) for f in commit.files] == files


def test_old_format_directory_with_space_found_by_update_line():
    text = COMMIT_TEXT.replace("/srv/cvsroot/proj", "/srv/cvsroot/my proj")
    commit = parse_loginfo(["my proj a.txt,1.1,1.2"], text)
    assert commit.directory == "my proj"
    assert commit.files == (FileChange("a.txt", "1.1", "1.2"),)


@pytest.mark.parametrize(
    ("arg", "kind"),
    [("proj/newdir - New directory,NONE,NONE", NEW_DIRECTORY),
     ("proj/vendor - Imported sources,NONE,NONE", IMPORT)],
)
def test_old_format_special(arg, kind):
    commit = parse_loginfo([arg], NEW_DIR_TEXT)
    assert (commit.directory.split("/")[0], commit.kind) == ("proj", kind)


def test_directory_alone_with_a_space():
    text = COMMIT_TEXT.replace("/srv/cvsroot/proj", "/srv/cvsroot/my proj")
    assert parse_loginfo(["my proj"], text).directory == "my proj"


def test_old_format_directory_only_shows_names_from_text():
    commit = parse_loginfo(["proj"], COMMIT_TEXT)
    _, body = format_message(commit, "bob")
    assert "Added:\n  new.txt\nModified:\n  a.txt\nRemoved:\n  b.txt\n" in body


def test_without_directory_argument_uses_update_line():
    args = COMMIT_ARGS[1:]  # `%{sVv}` without `%p`
    commit = parse_loginfo(args, COMMIT_TEXT, cvsroot=":local:/srv/cvsroot")
    assert commit.directory == "proj"
    assert len(commit.files) == 3
    assert parse_loginfo(args, COMMIT_TEXT, cvsroot="/srv/cvsroot/").directory == "proj"


def test_file_names_that_look_like_options_or_keywords():
    commit = parse_loginfo(["proj", "-v", "1.1", "1.2", "NONE", "NONE", "1.1"], "")
    assert commit.files == (FileChange("-v", "1.1", "1.2"), FileChange("NONE", None, "1.1"))


@pytest.mark.parametrize(
    "args",
    [[], ["proj", "a.txt"], ["proj", "a.txt", "1.1", "x"], ["proj", "a.txt", "1.1", "1.2", "b"],
     ["proj a.txt"]],
)
def test_unreadable_arguments(args):
    with pytest.raises(UsageError, match=r"ALL cvsmsg loginfo %p %\{sVv\}"):
        parse_loginfo(args, COMMIT_TEXT)


def test_text_without_cvs_layout():
    log = parse_text("just some text\n")
    assert (log.update_of, log.message, log.import_status) == ("", "", None)
    commit = parse_loginfo(["proj", "a.txt", "1.1", "1.2"], "")
    assert format_message(commit, "bob")[1] == (
        "Commit by bob in proj\n\nModified:\n  a.txt 1.1 -> 1.2"
    )


def test_log_message_line_inside_the_message_is_kept():
    text = COMMIT_TEXT.replace("after blank\n", "Log Message:\nstill mine\n")
    assert parse_text(text).message.endswith("\nLog Message:\nstill mine")


def test_file_named_like_a_header_is_not_the_log_message():
    text = COMMIT_TEXT.replace("\ta.txt \n", "\tLog Message: \n")
    assert parse_text(text).message == LOG


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CVS_USER": "anoncvs", "LOGNAME": "cvs", "USER": "cvs"}, "anoncvs"),
        ({"CVS_USER": "", "LOGNAME": "bob", "USER": "robert"}, "bob"),
        ({"USER": "robert"}, "robert"),
        ({}, "account"),
    ],
)
def test_committer(env, expected):
    assert committer(env, "account") == expected


# -- routing ----------------------------------------------------------------------------

RULES = [
    LoginfoRule(r"^proj/sub(/|$)", ("carol@x",)),
    LoginfoRule(r"^proj(/|$)", ("alice@x", "dave@x")),
    LoginfoRule("^quiet", ()),
    LoginfoRule("DEFAULT", ("admin@x",)),
    LoginfoRule("ALL", ("archive@x", "alice@x")),
]


@pytest.mark.parametrize(
    ("directory", "expected"),
    [
        ("proj/sub", ["carol@x", "archive@x", "alice@x"]),  # first match wins, ALL added
        ("proj/sub/deeper", ["carol@x", "archive@x", "alice@x"]),
        ("proj", ["alice@x", "dave@x", "archive@x"]),  # no duplicate alice
        ("proj/doc", ["alice@x", "dave@x", "archive@x"]),
        ("project", ["admin@x", "archive@x", "alice@x"]),  # DEFAULT: nothing else matched
        ("quiet/x", ["archive@x", "alice@x"]),  # an empty `to` silences, ALL still applies
        ("CVSROOT", ["admin@x", "archive@x", "alice@x"]),
    ],
)
def test_route(directory, expected):
    assert route(directory, RULES) == expected


def test_route_nothing_configured():
    assert route("proj", []) == []
    assert route("proj", [LoginfoRule("^other", ("a@x",))]) == []


# -- config -----------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text('jid = "bot@example.org"\npassword = "p"\n' + text)
    path.chmod(0o600)
    return path


def test_loginfo_config(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", """
default_domain = "example.org"
[[loginfo]]
match = "^proj/"
to = ["Alice@Example.org", "dave", "alice@example.org"]
[[loginfo]]
match = "DEFAULT"
to = "admin@example.org"
[[loginfo]]
match = "^quiet"
"""), env={})
    assert cfg.loginfo == (
        LoginfoRule("^proj/", ("alice@example.org", "dave@example.org")),
        LoginfoRule("DEFAULT", ("admin@example.org",)),
        LoginfoRule("^quiet", ()),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('loginfo = "x"\n', "'loginfo' must be tables: [[loginfo]] with match and to"),
        ("[[loginfo]]\nto = []\n", "[[loginfo]] number 1: 'match' must be a regular"),
        ('[[loginfo]]\nmatch = "(proj"\n', "'match' '(proj' is not a valid regex"),
        ('[[loginfo]]\nmatch = "x"\nto = [1]\n', "'to' must be a list of JIDs"),
        ('[[loginfo]]\nmatch = "x"\nwho = []\n', "unknown setting 'who'"),
        ('[[loginfo]]\nmatch = "x"\nto = ["dave"]\n', "recipient 'dave' has no domain"),
        ('[[loginfo]]\nmatch = "x"\nto = ["a b@x"]\n', "invalid recipient address"),
    ],
)
def test_loginfo_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path / "c.toml", text), env={})
    assert message in str(info.value)
    assert str(info.value).startswith(str(tmp_path / "c.toml"))


def test_example_config_rules_load_uncommented(tmp_path):
    """examples/config.toml with its subscription and [[loginfo]] lines uncommented."""
    example = Path(__file__).resolve().parent.parent / "examples" / "config.toml"
    keys = ("# subscribers", "# max_roster", "# [[loginfo]]", "# match", "# to =")
    text = "\n".join(line[2:] if line.startswith(keys) else line
                     for line in example.read_text().splitlines())
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(0o600)
    cfg = load_config(path, env={})
    assert cfg.allowed_subscribers == ("example.org", "dj@xmpp.example.net")
    assert cfg.max_roster == 500
    assert route("proj/sub", cfg.loginfo) == ["dj@example.org", "piers@example.org"]
    assert route("other", cfg.loginfo) == ["cvs-admin@example.org"]


def test_a_bad_loginfo_regex_is_refused_on_every_run_and_never_cached(tmp_path):
    """The regexes are compiled before a parse is cached (tomlcache's check): a cached
    config is one whose regexes compiled, and a bad one is refused every time."""
    from cvsmsg import tomlcache

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    secret.chmod(0o600)
    head = 'jid = "a@x"\npassword_file = "pw"\n[[loginfo]]\n'
    config = tmp_path / "c.toml"
    config.write_text(head + 'match = "(proj"\nto = ["b@x"]\n')
    for _ in range(2):
        with pytest.raises(ConfigError, match=r"'match' '\(proj' is not a valid regex"):
            load_config(str(config), env=env)
    cached = tomlcache.cache_file(str(config), env)
    assert cached is not None and not Path(cached).exists()
    config.write_text(head + 'match = "^proj"\nto = ["b@x"]\n')
    for _ in range(2):
        assert load_config(str(config), env=env).loginfo == (LoginfoRule("^proj", ("b@x",)),)
    assert Path(cached).exists()
