"""One message per commit without a server: the message layout, who gets which directories,
the viewer templates, and the commit record as `cvsmsg commitinfo` and `cvsmsg loginfo`
keep it (run as CVS runs them: separate processes, the same CVS_PID)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from cvsmsg.config import LoginfoRule, load_config
from cvsmsg.errors import ConfigError
from cvsmsg.loginfo import Layout, followers, format_commit, format_message, parse_loginfo
from cvsmsg.spool import Spool
from tests.conftest import cvsmsg_command

ROOT = "/srv/cvsroot"
ENV = {"LOGNAME": "bob", "USER": "bob", "CVS_USER": "", "CVSROOT": ROOT, "CVS_PID": "4242"}


def text(directory: str, message: str = "the log") -> str:
    return (f"Update of {ROOT}/{directory}\nIn directory host:/home/bob/wc\n\n"
            f"Log Message:\n{message}\n")


def part(directory: str, *triples: str) -> tuple[list[str], str]:
    return [directory, *triples], text(directory)


PROJ = part("proj", "a.txt", "1.1", "1.2", "new.txt", "NONE", "1.1")
SUB = part("proj/sub", "s.txt", "1.4", "NONE")
OTHER = part("other", "o c.txt", "1.1", "1.2")


def commits(*parts: tuple[list[str], str]):
    return [parse_loginfo(args, body) for args, body in parts]


def test_several_directories_one_message_log_once():
    subject, body = format_commit(commits(PROJ, SUB), "bob")
    assert subject == "CVS commit: proj (2 directories) by bob"
    assert body == (
        f"Commit by bob in {ROOT}/proj, 2 directories\n\n"
        "proj:\nAdded:\n  new.txt 1.1\nModified:\n  a.txt 1.1 -> 1.2\n\n"
        "proj/sub:\nRemoved:\n  s.txt 1.4\n\n"
        "Log message:\nthe log"
    )


def test_one_directory_is_todays_message():
    [one] = commits(PROJ)
    assert format_commit([one], "bob") == format_message(one, "bob")


def test_directories_without_common_parent():
    subject, body = format_commit(commits(PROJ, OTHER), "bob")
    assert subject == "CVS commit: 2 directories by bob"
    assert body.split("\n")[0] == f"Commit by bob in {ROOT}, 2 directories"


def test_links_are_quoted_and_only_where_a_template_is_set():
    layout = Layout(viewer_url="https://v/{path}/{file}.diff?r1={old};r2={new}")
    _, body = format_commit(commits(OTHER, SUB), "bob", layout)
    assert "  o c.txt 1.1 -> 1.2\n    https://v/other/o%20c.txt.diff?r1=1.1;r2=1.2\n" in body
    assert "  s.txt 1.4\n\nLog message:" in body  # removed: no viewer_file_url, no link
    _, body = format_commit(commits(SUB), "bob", Layout(viewer_file_url="https://v/{path}/"
                                                                          "{file}?rev={rev}"))
    assert "  s.txt 1.4\n    https://v/proj/sub/s.txt?rev=1.4\n" in body


def test_long_lists_end_with_how_many_more():
    many = part("proj", *[x for n in range(7) for x in (f"f{n}", "1.1", "1.2")])
    _, body = format_commit(commits(many, SUB), "bob", Layout(max_files=3))
    assert body.split("\n")[2:9] == [
        "proj:", "Modified:", "  f0 1.1 -> 1.2", "  f1 1.1 -> 1.2", "  f2 1.1 -> 1.2", "",
        "… and 5 more files",
    ]
    _, body = format_message(commits(part("proj", "a", "1.1", "1.2", "b", "1.1", "1.2"))[0],
                             "bob", Layout(max_files=1))
    assert "  a 1.1 -> 1.2\n… and 1 more file\n" in body


def test_followers_get_each_of_their_directories_once():
    rules = [LoginfoRule("^proj/sub", ("carol@x",)), LoginfoRule("^proj", ("alice@x",)),
             LoginfoRule("^other", ("alice@x", "dave@x"))]
    proj, sub, other = commits(PROJ, SUB, OTHER)
    groups = followers([proj, sub, other], ["boss@x"], rules)
    assert [(jids, [c.directory for c in cs]) for jids, cs in groups] == [
        (["boss@x"], ["proj", "proj/sub", "other"]),
        (["alice@x"], ["proj", "other"]),
        (["carol@x"], ["proj/sub"]),
        (["dave@x"], ["other"]),
    ]


def write_config(path: Path, **extra: str) -> Path:
    lines = ['jid = "bot@localhost"', 'password = "secret"', 'server = "127.0.0.1:1"',
             "timeout = 2", *(f"{k} = {v}" for k, v in extra.items()),
             '[[loginfo]]', 'match = "^proj"', 'to = ["alice@localhost"]']
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.parametrize(("value", "shown"), [
    ('"https://v/{path}/{commit}"', "{commit}"),
    ('"https://v/{file!r}"', "{file!r}"),
    ('"https://v/{}"', "{}"),
])
def test_unknown_placeholder_is_a_config_error(tmp_path, value, shown):
    config = write_config(tmp_path / "c.toml", viewer_url=value)
    with pytest.raises(ConfigError) as err:
        load_config(config, {})
    assert str(err.value) == (f"{config}: 'viewer_url' has an unknown placeholder {shown}: "
                              "use {path}, {file}, {old}, {new}, {rev}")


def test_unknown_placeholder_exits_3_at_load_time(tmp_path):
    config = write_config(tmp_path / "c.toml", viewer_file_url='"https://v/{filename}"')
    result = run("loginfo", "--config", str(config), *PROJ[0], input=PROJ[1])
    assert (result.returncode, result.stdout) == (3, "")
    assert result.stderr == (f"cvsmsg: error: {config}: 'viewer_file_url' has an unknown "
                             "placeholder {filename}: use {path}, {file}, {old}, {new}, {rev}\n")


def run(*args: str, input: str = "", env: dict[str, str] | None = None):
    full = {**os.environ, **ENV, **(env or {})}
    return subprocess.run([*cvsmsg_command(), *args], input=input, env=full,
                          capture_output=True, text=True, timeout=30, check=False)


def test_commitinfo_then_loginfo_send_one_message_at_the_last_directory(tmp_path, spool_dir):
    """Server down on purpose: the one message is queued, and the queue shows it."""
    config = write_config(tmp_path / "c.toml", max_files="2")
    for directory in ("proj", f"{ROOT}/proj/sub"):  # `%p`, or an absolute `%r/%p`
        first = run("commitinfo", "--config", str(config), directory, "x.c")
        assert (first.returncode, first.stdout, first.stderr) == (0, "", "")
    [record] = (spool_dir / "commits").iterdir()
    assert oct(record.stat().st_mode & 0o7777) == "0o660"
    assert oct((spool_dir / "commits").stat().st_mode & 0o7777) == "0o3770"

    middle = run("loginfo", "--config", str(config), *SUB[0], input=SUB[1])
    assert (middle.returncode, middle.stderr) == (0, "")
    last = run("loginfo", "--config", str(config), *PROJ[0], input=PROJ[1])

    assert last.returncode == 5
    assert last.stderr == ("cvsmsg: error: cannot connect to 127.0.0.1:1: Connection refused; "
                           "queued for later delivery\n")
    assert not record.exists()
    [entry] = Spool(spool_dir).entries()
    assert (entry.recipient, entry.subject) == ("alice@localhost",
                                                "CVS commit: proj (2 directories) by bob")
    assert entry.body.split("\n") == [  # commitinfo's order, not loginfo's
        f"Commit by bob in {ROOT}/proj, 2 directories", "",
        "proj:", "Added:", "  new.txt 1.1", "Modified:", "  a.txt 1.1 -> 1.2", "",
        "… and 1 more file", "", "Log message:", "the log",
    ]


def test_another_commit_is_another_record(tmp_path, spool_dir):
    """A different CVS_PID (another commit) does not see this commit's record."""
    config = write_config(tmp_path / "c.toml")
    run("commitinfo", "--config", str(config), "proj")
    run("commitinfo", "--config", str(config), "proj/sub")
    alone = run("loginfo", "--config", str(config), *PROJ[0], input=PROJ[1],
                env={"CVS_PID": "4243"})
    assert alone.returncode == 5  # sent (tried) at once, on its own
    [entry] = Spool(spool_dir).entries()
    assert entry.subject == "CVS commit: proj by bob"
    assert len(list((spool_dir / "commits").iterdir())) == 1


@pytest.mark.parametrize("args", [(), ("--bogus", "proj")])
def test_commitinfo_always_exits_0(tmp_path, args):
    result = run("commitinfo", *args)
    assert (result.returncode, result.stdout) == (0, "")
    if args:
        assert "Error: No such option '--bogus'" in result.stderr
    else:
        assert result.stderr == ("cvsmsg: error: no directory from CVS: use "
                                 "'ALL cvsmsg commitinfo %p' in CVSROOT/commitinfo\n")


def test_planted_link_is_refused_and_loginfo_sends_alone(tmp_path, spool_dir):
    config = write_config(tmp_path / "c.toml")
    run("commitinfo", "--config", str(config), "proj")
    [record] = (spool_dir / "commits").iterdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    record.unlink()
    record.symlink_to(victim)

    again = run("commitinfo", "--config", str(config), "proj/sub")
    assert again.returncode == 0
    assert again.stderr == (f"cvsmsg: error: {record} is a symbolic link: refusing to follow "
                            "it (someone planted it in the spool: remove it)\n")
    alone = run("loginfo", "--config", str(config), *PROJ[0], input=PROJ[1])
    assert alone.returncode == 5
    assert alone.stderr.startswith(f"cvsmsg: {record} is a symbolic link")
    assert victim.read_text() == "precious\n"
    assert [e.subject for e in Spool(spool_dir).entries()] == ["CVS commit: proj by bob"]


def test_records_of_aborted_commits_go_after_an_hour(tmp_path, spool_dir):
    config = write_config(tmp_path / "c.toml")
    commits_dir = spool_dir / "commits"
    run("commitinfo", "--config", str(config), "proj", env={"CVS_PID": "1"})
    run("commitinfo", "--config", str(config), "proj", env={"CVS_PID": "2"})
    old, recent = sorted(commits_dir.iterdir(), key=lambda p: p.stat().st_ino)
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    run("commitinfo", "--config", str(config), "proj", env={"CVS_PID": "3"})
    left = set(commits_dir.iterdir())
    assert old not in left and recent in left and len(left) == 2


def test_example_viewer_templates_load(tmp_path):
    """Each viewer line of examples/config.toml, uncommented, is a valid template."""
    example = Path(__file__).resolve().parent.parent / "examples" / "config.toml"
    lines = [line[2:] for line in example.read_text().splitlines()
             if line.startswith(("# viewer_url =", "# viewer_file_url ="))]
    assert len(lines) == 4
    for line in lines:
        key, _, value = line.partition(" = ")
        cfg = load_config(write_config(tmp_path / "c.toml", **{key: value}), {})
        assert getattr(cfg, key) == value.strip('"')


def test_diffstat_out_of_time_says_so():
    """The diffstat has one time bound for the whole commit: files it had no time for get
    no figures, and the message says how many."""
    from cvsmsg.diffstat import diffstat
    from cvsmsg.loginfo import Layout, format_message, parse_loginfo

    commit = parse_loginfo(["proj", "a.txt", "1.1", "1.2"], "Log Message:\nx\n")
    stats, skipped = diffstat([commit], "/nonexistent", {}, budget=0)
    assert (stats, skipped) == ({}, 1)
    _, body = format_message(commit, "bob", Layout(stats=stats, stats_skipped=skipped))
    assert "  a.txt 1.1 -> 1.2" in body.split("\n")
    assert "(no diffstat for 1 file(s): it ran out of time)" in body.split("\n")
