"""What a new administrator reads: the shipped example config, the man page, the help
text and the errors that point somewhere (issue 10, "How an admin gets there")."""

from __future__ import annotations

import importlib.util
import re
import subprocess
from pathlib import Path

import pytest

from cvsmsg import config as config_module
from cvsmsg import options
from tests.conftest import cvsmsg_command
from tests.harness.cvsrepo import ADMIN, CvsRepo

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "config.toml"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*cvsmsg_command(), *args], capture_output=True, text=True,
                          env=env, timeout=30, check=False, stdin=subprocess.DEVNULL)


def empty_env(tmp_path: Path) -> dict[str, str]:
    """No config anywhere: a fresh home, no $CVSMSG_CONFIG."""
    home = tmp_path / "home"
    home.mkdir()
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "CVSMSG_SPOOL_DIR": str(tmp_path)}


def manpage_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_manpage",
                                                  ROOT / "scripts" / "make_manpage.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the example config ---------------------------------------------------------------

def test_config_example_prints_the_shipped_example():
    result = run("config", "--example")
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXAMPLE.read_text(encoding="utf-8")
    assert result.stderr == ""


def test_packaged_example_is_a_copy_of_examples_config():
    packaged = ROOT / "src" / "cvsmsg" / "data" / "config.toml"
    assert packaged.read_text() == EXAMPLE.read_text(), (
        "cp examples/config.toml src/cvsmsg/data/config.toml")


def test_no_config_points_at_config_example(tmp_path):
    env = empty_env(tmp_path)
    result = subprocess.run([*cvsmsg_command(), "notify", "dj@example.org"], input="hello\n",
                            capture_output=True, text=True, env=env, timeout=30, check=False)
    assert result.returncode == 3
    assert result.stderr == (
        "cvsmsg: error: no configuration found: create /etc/cvsmsg/config.toml or "
        "~/.config/cvsmsg/config.toml, or pass --config "
        "('cvsmsg config --example' prints a commented example)\n")


def test_config_without_a_file_lists_where_it_looked(tmp_path):
    env = empty_env(tmp_path)
    result = run("config", env=env)
    assert result.returncode == 3
    assert result.stdout == (f"  {tmp_path}/home/.config/cvsmsg/config.toml\n"
                             "  /etc/cvsmsg/config.toml\n")
    assert result.stderr == ("cvsmsg: error: no configuration found: 'cvsmsg config "
                             "--example' prints one to start from\n")


def test_config_names_the_file_it_reads(tmp_path):
    env = empty_env(tmp_path)
    user_config = tmp_path / "home" / ".config" / "cvsmsg" / "config.toml"
    user_config.parent.mkdir(parents=True)
    user_config.write_text(EXAMPLE.read_text())
    result = run("config", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"* {user_config}\n  /etc/cvsmsg/config.toml\n"
                             f"cvsmsg reads {user_config}\n")
    explicit = tmp_path / "other.toml"
    explicit.write_text("")
    result = run("config", "--config", str(explicit), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith(f"* {explicit}\ncvsmsg reads {explicit}\n")


# -- config errors that say what was meant --------------------------------------------

@pytest.mark.parametrize(("line", "said"), [
    ('sever = "x"\n', "unknown setting 'sever' (did you mean 'server'?)"),
    ("timout = 3\n", "unknown setting 'timout' (did you mean 'timeout'?)"),
    ('colour = "red"\n', "unknown setting 'colour'"),
    ('[[loginfo]]\nmach = "x"\n', "[[loginfo]] number 1: unknown setting 'mach' "
                                  "(did you mean 'match'?)"),
])
def test_unknown_key_suggests_the_known_one(tmp_path, line, said):
    path = tmp_path / "c.toml"
    path.write_text('jid = "bot@example.org"\npassword = "x"\n' + line)
    path.chmod(0o600)
    result = run("notify", "--config", str(path), "dj@example.org")
    assert result.returncode == 3
    assert result.stderr == f"cvsmsg: error: {path}: {said}\n"


def test_direct_tls_on_a_starttls_port_says_so(bot, prosody):
    bot.config.write_text(bot.config.read_text() + 'tls = "direct"\n')
    result = bot.run("dj@localhost")
    assert result.returncode == 5
    assert result.stderr == (
        f"cvsmsg: error: TLS failed with 127.0.0.1:{prosody.port}: WRONG_VERSION_NUMBER "
        '(is the port a STARTTLS port? set tls = "starttls"); queued for later delivery\n')


# -- help text ------------------------------------------------------------------------

# Capitalised words an option's help may use that are not a placeholder.
NOT_PLACEHOLDERS = {"DNS", "SRV", "JID", "XML", "SASL", "CVS"}


@pytest.mark.parametrize("option", sorted(
    {o for c in options.COMMANDS.values() for o in c.options}, key=lambda o: o.names))
def test_option_help_names_its_own_placeholder(option):
    """`--file PATH  Read the message from PATH`, never from FILE."""
    placeholders = set(re.findall(r"\b[A-Z]{2,}\b", option.help)) - NOT_PLACEHOLDERS
    assert placeholders <= {option.metavar}, (option.names, option.help)


def test_notify_help_file_line():
    result = run("notify", "--help")
    assert result.returncode == 0
    assert re.search(r"^  --file PATH +Read the message from PATH instead of stdin\.$",
                     result.stdout, re.M), result.stdout


def test_loginfo_help_regex_matches_the_module_and_its_subdirectories(tmp_path):
    """The CVSROOT/loginfo line `cvsmsg loginfo --help` shows, in a real repository:
    its regex must match `proj` itself as well as `proj/sub` (CVS's regex syntax)."""
    help_text = run("loginfo", "--help").stdout
    line = re.search(r"With fixed people: +(\S+) cvsmsg loginfo ", help_text)
    assert line is not None, help_text
    regex = line.group(1)
    log = tmp_path / "matched"
    repo = CvsRepo(tmp_path / "cvs").create()
    loginfo = repo.checkout(ADMIN, module="CVSROOT", name="admin-CVSROOT").path / "loginfo"
    repo.admin_commit({"loginfo": loginfo.read_bytes() + (
        f'{regex} /bin/sh -c "cat >/dev/null; echo %p >> {log}"\n').encode()}, "route")
    wc = repo.checkout(ADMIN)
    (wc.path / "a.txt").write_text("changed\n")
    (wc.path / "sub" / "s.txt").write_text("changed\n")
    wc.cvs("commit", "-m", "both directories")
    assert log.read_text().split() == ["proj", "proj/sub"]


# -- the man page ---------------------------------------------------------------------

def test_man_page_is_up_to_date():
    page = ROOT / "man" / "cvsmsg.1"
    assert page.read_text() == manpage_script().render(), (
        "man/cvsmsg.1 is stale: run python scripts/make_manpage.py")


def test_every_config_key_is_in_the_readme_tables_and_the_man_page():
    script = manpage_script()
    documented = set()
    for key, _default, _meaning in script.config_keys((ROOT / "README.md").read_text()):
        documented |= set(re.findall(r"[a-z_]+", key))
    missing = sorted(config_module._KNOWN_KEYS - documented)
    assert not missing, f"config keys missing from README's key tables: {missing}"
    page = (ROOT / "man" / "cvsmsg.1").read_text()
    assert ".SH CONFIGURATION" in page
    assert "\n.B withhold_show\n" in page
