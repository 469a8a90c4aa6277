"""Every failure a CVS admin can meet: one clear line on stderr, a documented exit code."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

import pytest

from tests.harness.prosody import free_port


def only_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_wrong_password(bot, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(tmp_path / "bad.toml", bot.jid, "not-the-password")
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 4
    assert only_line(result.stderr) == (
        f"cvsmsg: error: authentication failed for {bot.jid}: wrong JID or password; "
        "queued for later delivery"
    )
    assert result.stdout == ""


def test_unknown_account_is_auth_failure(bot, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(tmp_path / "nobody.toml", "nobody@localhost", "pw")
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 4
    assert "authentication failed for nobody@localhost" in only_line(result.stderr)


def test_server_down(bot, prosody, tmp_path):
    port = free_port()  # nothing listens there
    config = prosody.write_cvsmsg_config(
        tmp_path / "down.toml", bot.jid, bot.password, server=f"127.0.0.1:{port}"
    )
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 5
    assert only_line(result.stderr) == (
        f"cvsmsg: error: cannot connect to 127.0.0.1:{port}: Connection refused; "
        "queued for later delivery"
    )


def test_untrusted_certificate(bot, prosody, tmp_path):
    config = tmp_path / "noca.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword = "{bot.password}"\nserver = "127.0.0.1:{prosody.port}"\n'
    )
    config.chmod(0o600)
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 5
    line = only_line(result.stderr)
    assert line.startswith("cvsmsg: error: TLS certificate of localhost not trusted: ")
    assert "set ca_file" in line


def test_untrusted_certificate_direct_tls(bot, prosody, tmp_path):
    config = tmp_path / "direct.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword = "{bot.password}"\n'
        f'server = "127.0.0.1:{prosody.tls_port}"\ntls = "direct"\n'
    )
    config.chmod(0o600)
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 5
    assert only_line(result.stderr).startswith(
        f"cvsmsg: error: TLS failed with 127.0.0.1:{prosody.tls_port}: "
    )


def test_direct_tls_delivers(bot, person, prosody, tmp_path):
    alice = person("")
    config = prosody.write_cvsmsg_config(
        tmp_path / "d.toml", bot.jid, bot.password, tls="direct",
        server=f"127.0.0.1:{prosody.tls_port}",
    )
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert len(alice.settle()) == 1


def test_tls_verification_opt_out_is_loud(bot, person, prosody, tmp_path):
    alice = person("")
    config = tmp_path / "insecure.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword = "{bot.password}"\n'
        f'server = "127.0.0.1:{prosody.port}"\ntls_verify = false\n'
    )
    config.chmod(0o600)
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    assert "TLS certificate verification is OFF" in result.stderr


@pytest.fixture
def silent_server():
    """Accepts TCP connections and never says a word: a hung server."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join(2)
    for c in conns:
        c.close()
    sock.close()


def test_hung_server_times_out(bot, prosody, tmp_path, silent_server):
    config = prosody.write_cvsmsg_config(
        tmp_path / "hung.toml", bot.jid, bot.password, timeout=1,
        server=f"127.0.0.1:{silent_server}",
    )
    result = bot.run("x@localhost", config=config, timeout=10)
    assert result.returncode == 6
    assert only_line(result.stderr) == (
        "cvsmsg: error: timed out after 1 s while negotiating TLS and authenticating; "
        "queued for later delivery"
    )


def test_timeout_option_overrides_config(bot, prosody, tmp_path, silent_server):
    config = prosody.write_cvsmsg_config(
        tmp_path / "hung.toml", bot.jid, bot.password, server=f"127.0.0.1:{silent_server}"
    )
    result = bot.run("--timeout", "0.5", "x@localhost", config=config, timeout=10)
    assert result.returncode == 6
    assert "timed out after 0.5 s" in result.stderr


def test_unresolvable_server(bot, prosody, tmp_path):
    config = prosody.write_cvsmsg_config(
        tmp_path / "nx.toml", bot.jid, bot.password, server="no-such-host.invalid:5222"
    )
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 5
    assert only_line(result.stderr).startswith(
        "cvsmsg: error: cannot connect to no-such-host.invalid:5222: "
    )


# -- configuration errors: exit 3 -------------------------------------------------------


def test_missing_config_file(bot, tmp_path):
    result = bot.run("x@localhost", config=tmp_path / "nope.toml")
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        f"cvsmsg: error: config file {tmp_path / 'nope.toml'} does not exist or is not a file"
    )


def test_no_config_anywhere(tmp_path):
    import subprocess

    from tests.conftest import cvsmsg_command

    env = {k: v for k, v in os.environ.items() if not k.startswith("CVSMSG_")}
    env["HOME"] = str(tmp_path)
    if Path("/etc/cvsmsg/config.toml").exists():
        pytest.fail("/etc/cvsmsg/config.toml exists on this machine; this test needs it absent")
    result = subprocess.run(
        [*cvsmsg_command(), "notify", "x@localhost"], input=b"hi", capture_output=True, env=env
    )
    assert result.returncode == 3
    assert result.stderr.decode().startswith("cvsmsg: error: no configuration found: ")


def test_world_readable_config_with_password_refused(bot):
    bot.config.chmod(0o644)
    result = bot.run("x@localhost")
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        f"cvsmsg: error: config file {bot.config} holds a password and is world-readable: "
        f"run 'chmod o-rwx {bot.config}'"
    )


def test_world_readable_password_refused_even_with_env_override(bot):
    # $CVSMSG_PASSWORD set or not, the file still gives the password away
    bot.config.chmod(0o644)
    result = bot.run("x@localhost", env={"CVSMSG_PASSWORD": bot.password})
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        f"cvsmsg: error: config file {bot.config} holds a password and is world-readable: "
        f"run 'chmod o-rwx {bot.config}'"
    )


@pytest.mark.parametrize(("mode", "who"), [(0o660, "group"), (0o602, "world"),
                                           (0o666, "group- and world")])
def test_writable_config_refused(bot, mode, who):
    # whoever can write the config can set password_command: code run as every CVS user
    bot.config.chmod(mode)
    result = bot.run("x@localhost", env={"CVSMSG_PASSWORD": bot.password})
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        f"cvsmsg: error: config file {bot.config} is {who}-writable: whoever can write it "
        f"runs code as every CVS user; run 'chmod go-w {bot.config}'"
    )


def test_group_readable_config_is_fine(bot, person):
    # CVS runs cvsmsg as whoever ran `cvs edit`: a group-readable config is the normal setup
    alice = person("")
    bot.config.chmod(0o640)
    assert bot.run(alice.jid).returncode == 0


def test_password_file(bot, person, prosody, tmp_path):
    alice = person("")
    secret = tmp_path / "secret"
    secret.write_text(bot.password + "\n")
    secret.chmod(0o600)
    config = tmp_path / "pf.toml"
    config.write_text(
        f'jid = "{bot.jid}"\npassword_file = "{secret}"\nserver = "127.0.0.1:{prosody.port}"\n'
        f'ca_file = "{prosody.ca}"\n'
    )
    config.chmod(0o644)  # no password inside: may be world-readable
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    secret.chmod(0o604)
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 3
    assert f"password file {secret} holds a password and is world-readable" in result.stderr


def test_password_command(bot, person, prosody, tmp_path):
    alice = person("")
    config = tmp_path / "pc.toml"
    base = f'jid = "{bot.jid}"\nserver = "127.0.0.1:{prosody.port}"\nca_file = "{prosody.ca}"\n'
    config.write_text(base + f"password_command = \"printf '%s\\\\n' '{bot.password}'\"\n")
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 0, result.stderr
    config.write_text(base + 'password_command = "echo vault locked >&2; exit 3"\n')
    result = bot.run(alice.jid, config=config)
    assert result.returncode == 3
    assert only_line(result.stderr) == (
        "cvsmsg: error: password_command exited with status 3: vault locked"
    )


def test_password_from_environment(bot, person, prosody, tmp_path):
    alice = person("")
    config = tmp_path / "env.toml"
    config.write_text(f'server = "127.0.0.1:{prosody.port}"\nca_file = "{prosody.ca}"\n')
    env = {"CVSMSG_JID": bot.jid, "CVSMSG_PASSWORD": bot.password}
    result = bot.run(alice.jid, config=config, env=env)
    assert result.returncode == 0, result.stderr


def test_no_password_anywhere(bot, prosody, tmp_path):
    config = tmp_path / "nopw.toml"
    config.write_text(f'jid = "{bot.jid}"\nserver = "127.0.0.1:{prosody.port}"\n')
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 3
    assert "no password: set password, password_file or password_command" in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("jid = ", "is not valid TOML"),
        ('jid = "a@b"\npassword = "x"\ncolour = "red"\n', "unknown setting 'colour'"),
        ('jid = "a@b"\npassword = "x"\ntimeout = "soon"\n', "'timeout' must be a"),
        ('jid = "a@b"\npassword = "x"\nwithhold_show = ["busy"]\n', "'busy' is not one of"),
        ('jid = "a@b"\npassword = "x"\ntype = "groupchat"\n', "'type' must be one of"),
        ('jid = "not a jid"\npassword = "x"\n', "invalid jid 'not a jid'"),
    ],
)
def test_invalid_config(bot, tmp_path, content, message):
    config = tmp_path / "invalid.toml"
    config.write_text(content)
    config.chmod(0o600)
    result = bot.run("x@localhost", config=config)
    assert result.returncode == 3, result.stderr
    assert message in only_line(result.stderr)


def test_no_recipient_is_usage_error(bot):
    result = bot.run()
    assert result.returncode == 2
    assert "Missing argument 'RECIPIENT...'" in result.stderr


@pytest.fixture(scope="module")
def plaintext_server(tmp_path_factory: pytest.TempPathFactory):
    """A server that offers no TLS at all and would accept PLAIN in the clear."""
    from tests.harness.prosody import Prosody

    server = Prosody(
        tmp_path_factory.mktemp("plaintext-prosody"),
        modules=("roster", "saslauth", "disco", "ping", "posix"),
        require_encryption=False,
        extra_config="allow_unencrypted_plain_auth = true\n",
    )
    server.start()
    yield server
    server.stop()


def test_no_tls_offered_refuses_to_send_password(plaintext_server, tmp_path):
    from tests.conftest import Bot

    jid = plaintext_server.register("plainbot", "plain-secret")
    config = plaintext_server.write_cvsmsg_config(tmp_path / "p.toml", jid, "plain-secret")
    bot = Bot(jid, "plain-secret", config, plaintext_server)
    result = bot.run("x@localhost")
    assert result.returncode == 5
    assert only_line(result.stderr) == (
        f"cvsmsg: error: 127.0.0.1:{plaintext_server.port} offered no TLS; "
        "refusing to send the password in plaintext; queued for later delivery"
    )
    debug = bot.run("--debug", "x@localhost")
    assert debug.returncode == 5
    assert "<mechanism>PLAIN</mechanism>" in debug.stderr  # offered in the clear...
    assert "SEND: <auth" not in debug.stderr  # ...and the password never went on the wire
