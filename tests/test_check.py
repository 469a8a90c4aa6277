"""`cvsmsg check` as an administrator reads it: a healthy setup, and each broken one."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from cvsmsg.check import Contact, file_notes, recipient_lines, summary_line
from cvsmsg.check import FileInfo as Info
from cvsmsg.policy import Decision
from tests.conftest import cvsmsg_command
from tests.harness.prosody import free_port


def check(bot, *args, config: Path | None = None, env=None):
    return bot.run(*args, command="check", input=None, config=config, env=env)


def assert_lines(output: str, expected: list[str]) -> None:
    """Each line matches its template: `{ms}` is a timing, `{any}` anything."""
    lines = output.splitlines()
    assert len(lines) == len(expected), output
    for line, template in zip(lines, expected, strict=True):
        pattern = re.escape(template).replace(r"\{ms\}", r" *\d+ ms").replace(r"\{any\}", ".*")
        assert re.fullmatch(pattern, line), f"\n{line!r}\n does not match\n{template!r}"


def configure(prosody, bot, tmp_path: Path, rules: str = "", mode: int = 0o640, **extra):
    extra.setdefault("presence_grace", 0.2)
    config = prosody.write_cvsmsg_config(tmp_path / "check.toml", bot.jid, bot.password, **extra)
    with config.open("a") as fh:
        fh.write(rules)
    config.chmod(mode)
    return config


def steps(config: Path, port: int, rules: list[str], contacts: int, online: str) -> list[str]:
    """The step lines of a check that gets through."""
    return [
        f"config       ok               {config} (owner root, group root, mode 0640)",
        f"password     ok               from the config file {config}",
        f"loginfo      ok               {len(rules)} rule(s)",
        *[f"{' ' * 30}{rule}" for rule in rules],
        "subscribers  ok               localhost (the bot's own domain, by default); "
        "max_roster 500",
        "spool        ok               {any} (not created yet; the first run creates it: "
        "group root, mode 3770)",
        f"connect+TLS  ok {{ms}}  127.0.0.1:{port}, STARTTLS, TLSv1.3, certificate verified",
        "auth         ok {ms}  as {any}",
        f"roster       ok {{ms}}  {contacts} contact(s)",
        f"presence     ok {{ms}}  {online} online",
    ]


def test_healthy(bot, person, prosody, tmp_path):
    alice, dave = person(""), person("dnd")
    config = configure(prosody, bot, tmp_path,
                       f'[[loginfo]]\nmatch = "^proj"\nto = ["{alice.jid}", "{dave.jid}"]\n')
    result = check(bot, config=config)
    assert (result.returncode, result.stderr) == (0, "")
    w = max(len(alice.jid), len(dave.jid))
    assert_lines(result.stdout, [
        *steps(config, prosody.port, [f"^proj -> {alice.jid}, {dave.jid}"], 2, "2 of 2"),
        "",
        f"roster of {bot.jid}: 2 contact(s), max_roster 500",
        f"  {alice.jid:<{w}}  both         available",
        f"  {dave.jid:<{w}}  both         dnd (resource desk)",
        "",
        "recipients ([[loginfo]] rules and arguments):",
        f"  {alice.jid:<{w}}  ok         subscription both; a notification now would be "
        "delivered (available)",
        f"  {dave.jid:<{w}}  ok         subscription both; a notification now would be "
        "withheld (dnd (resource desk))",
        "",
        "all 2 recipient(s) can be presence-gated",
    ])


def test_recipient_without_subscription(bot, person, prosody, tmp_path):
    alice = person("")
    frank = person("", friend=False, auto_accept=False)
    config = configure(prosody, bot, tmp_path)
    result = check(bot, alice.jid, frank.jid, config=config)
    assert (result.returncode, result.stderr) == (10, "")
    w = max(len(alice.jid), len(frank.jid))
    assert_lines(result.stdout, [
        *steps(config, prosody.port, [], 1, "1 of 2")[:2],
        "loginfo      ok               no rules: `cvsmsg loginfo` sends only to --to",
        *steps(config, prosody.port, [], 1, "1 of 2")[3:],
        "",
        f"roster of {bot.jid}: 2 contact(s), max_roster 500",
        f"  {alice.jid:<{w}}  both         available",
        f"  {frank.jid:<{w}}  none, asked  presence not visible (no subscription to their "
        "presence)",
        "",
        "recipients ([[loginfo]] rules and arguments):",
        f"  {alice.jid:<{w}}  ok {{any}}",
        f"  {frank.jid:<{w}}  NOT GATED  subscription none; cvsmsg asked them just now",
        f"  {'':<{w}}  -> {frank.jid} must add {bot.jid} to their XMPP contacts and accept "
        "its presence request in their XMPP client",
        "",
        "1 of 2 recipient(s) cannot be presence-gated: they get nothing until they do as "
        "said above",
    ])
    assert frank.subscription_requests == [bot.jid]
    # a second check does not ask again: the request is pending
    again = check(bot, frank.jid, config=config)
    assert again.returncode == 10
    assert "subscription none, asked" not in again.stdout
    assert "NOT GATED  subscription none; cvsmsg's request is pending" in again.stdout
    assert frank.settle() == [] and frank.subscription_requests == [bot.jid]


def test_recipient_who_shares_nothing_back(bot, person, prosody, tmp_path):
    """Subscribed to the bot, but never accepted the bot's request: 'from'."""
    erin = person("", friend=False, auto_accept=False)
    erin.send_presence(bot.jid, "subscribe")
    config = configure(prosody, bot, tmp_path)
    result = check(bot, erin.jid, config=config)
    assert result.returncode == 10
    assert f"  {erin.jid}  from, asked  presence not visible" in result.stdout
    assert f"-> {erin.jid} must accept the presence request from {bot.jid} in their XMPP " \
           "client" in result.stdout


def test_direct_tls(bot, person, prosody, tmp_path):
    alice = person("")
    config = configure(prosody, bot, tmp_path, tls="direct",
                       server=f"127.0.0.1:{prosody.tls_port}")
    result = check(bot, alice.jid, config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    [connect] = [line for line in result.stdout.splitlines() if line.startswith("connect+TLS")]
    assert_lines(connect, [
        f"connect+TLS  ok {{ms}}  127.0.0.1:{prosody.tls_port}, direct TLS, TLSv1.3, "
        "certificate verified"
    ])


def test_wrong_password(bot, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(tmp_path / "bad.toml", bot.jid, "not-the-pw-1")
    result = check(bot, config=config)
    assert result.returncode == 4
    assert_lines("\n".join(result.stdout.splitlines()[-2:]), [
        f"connect+TLS  ok {{ms}}  127.0.0.1:{prosody.port}, STARTTLS, TLSv1.3, "
        "certificate verified",
        "auth         FAILED {ms}",
    ])
    assert result.stderr == (
        f"cvsmsg: error: authentication failed for {bot.jid}: wrong JID or password\n"
    )


def test_bad_certificate(bot, prosody, tmp_path):
    config = tmp_path / "noca.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword = "{bot.password}"\nserver = "127.0.0.1:{prosody.port}"\n'
    )
    config.chmod(0o600)
    result = check(bot, config=config)
    assert result.returncode == 5
    assert_lines(result.stdout.splitlines()[-1], ["connect+TLS  FAILED {ms}"])
    assert result.stderr.startswith(
        "cvsmsg: error: TLS certificate of localhost not trusted: "
    ), result.stderr
    assert result.stderr.count("\n") == 1


def test_server_down(bot, prosody, tmp_path):
    port = free_port()
    config = configure(prosody, bot, tmp_path, server=f"127.0.0.1:{port}")
    result = check(bot, config=config)
    assert result.returncode == 5
    assert_lines(result.stdout.splitlines()[-1], ["connect+TLS  FAILED {ms}"])
    assert result.stderr == f"cvsmsg: error: cannot connect to 127.0.0.1:{port}: " \
                            "Connection refused\n"


def test_config_errors(bot, tmp_path):
    missing = tmp_path / "missing.toml"
    result = check(bot, config=missing)
    assert (result.returncode, result.stdout) == (3, "config       FAILED\n")
    assert result.stderr == f"cvsmsg: error: config file {missing} does not exist or is not " \
                            "a file\n"
    bot.config.chmod(0o644)
    result = check(bot)
    assert (result.returncode, result.stdout) == (3, "config       FAILED\n")
    assert "holds a password and is world-readable" in result.stderr


def test_invalid_jid_argument(bot, prosody, tmp_path):
    config = configure(prosody, bot, tmp_path)
    result = check(bot, "not a jid", config=config)
    assert result.returncode == 7
    assert result.stderr == "cvsmsg: error: invalid recipient address 'not a jid'\n"
    assert "connect+TLS" not in result.stdout


def test_permissions_and_full_roster_are_pointed_out(bot, person, prosody, tmp_path):
    alice = person("")
    secret = tmp_path / "password"
    secret.write_text(bot.password + "\n")
    secret.chmod(0o600)
    config = tmp_path / "pf.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword_file = "{secret}"\nserver = "127.0.0.1:{prosody.port}"\n'
        f'ca_file = "{prosody.ca}"\nmax_roster = 1\n'
    )
    config.chmod(0o600)
    result = check(bot, alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"config       ok               {config} (owner root, group root, mode 0600)",
        f"password     ok               password_file {secret} (owner root, group root, "
        "mode 0600)",
        f"{' ' * 30}note: only root can read the config file: CVS runs cvsmsg as each "
        f"committer, so let their group read it: chgrp <cvs-group> {config} && "
        f"chmod 640 {config}",
        f"{' ' * 30}note: only root can read the password file: CVS runs cvsmsg as each "
        f"committer, so let their group read it: chgrp <cvs-group> {secret} && "
        f"chmod 640 {secret}",
    ]
    assert (f"roster of {bot.jid}: 1 contact(s), max_roster 1 (full: new subscriptions are "
            "refused)") in lines


def test_help_lists_exit_codes():
    out = subprocess.run([*cvsmsg_command(), "check", "--help"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0
    assert "10  some recipient cannot be presence-gated" in out.stdout


# -- the pure parts -------------------------------------------------------------------------


def test_file_notes():
    assert file_notes(Info(Path("/etc/cvsmsg/c.toml"), 0o640, "root", "cvs"), "config") == []
    assert file_notes(Info(Path("/etc/cvsmsg/c.toml"), 0o604, "root", "cvs"), "config") == []
    [note] = file_notes(Info(Path("/etc/c.toml"), 0o600, "root", "root"), "config file")
    assert note.startswith("only root can read the config file")
    [note] = file_notes(Info(Path("/home/x/c.toml"), 0o640, "x", "cvs"), "config file",
                        home=Path("/home/x"))
    assert note.startswith("the config file is in your home directory")


@pytest.mark.parametrize(
    ("subscription", "pending", "asked", "second"),
    [
        ("none", False, True, "add bot@x to their XMPP contacts and accept its presence "
                              "request in their XMPP client"),
        ("none", True, False, "add bot@x to their XMPP contacts and accept its presence "
                              "request in their XMPP client"),
        ("from", True, False, "accept the presence request from bot@x in their XMPP client"),
    ],
)
def test_recipient_advice(subscription, pending, asked, second):
    contact = Contact("a@x", subscription, pending, Decision(False, "presence not visible"),
                      asked)
    first, advice = recipient_lines(contact, "bot@x", 3)
    request = "cvsmsg asked them just now" if asked else "cvsmsg's request is pending"
    assert first == f"  a@x  NOT GATED  subscription {subscription}; {request}"
    assert advice == f"       -> a@x must {second}"


def test_summary():
    ok = Contact("a@x", "to", False, Decision(True, "available"))
    assert summary_line([ok]) == "all 1 recipient(s) can be presence-gated"
    assert summary_line([]).startswith("no recipients to check")


def test_debug_never_shows_the_password(bot, person, prosody, tmp_path):
    alice = person("")
    config = configure(prosody, bot, tmp_path)
    result = check(bot, "--debug", alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert "<auth" in result.stderr and "[redacted]" in result.stderr
    assert bot.password not in result.stdout + result.stderr
