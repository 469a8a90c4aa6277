"""Speed-ups keep the guarantees: ack before exit 0, nothing lost, stdout silent.

Timings belong in `make bench` (bench/bench.py); these tests check what each trick must
not change, and guard each scale path at a small scale."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from cvsmsg import rostercache
from tests.conftest import Bot, unique
from tests.harness.prosody import Prosody

NOTICE = "proj a.txt\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"

# The console script's own call, plus an exit handler that only a normal interpreter
# shutdown runs: os._exit skips it (and the final garbage collection with it).
ENTRY = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('interpreter shutdown\\n'))\n"
    "from cvsmsg.main import main\n"
    "sys.argv = ['cvsmsg', *sys.argv[1:]]\n"
    "sys.exit(main())\n"
)


def run_entry(bot: Bot, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", ENTRY, "notify", "--config", str(bot.config), *args],
        input=NOTICE, capture_output=True, text=True, timeout=30, check=False,
    )


def test_notify_exits_without_the_final_gc_after_the_ack(bot, person):
    alice = person("")
    result = run_entry(bot, alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"  # no shutdown
    assert result.stdout == ""
    assert [m.body for m in alice.settle()] == [NOTICE.rstrip("\n")]


def test_a_withheld_notify_exits_early_too_and_keeps_its_status(bot, person):
    alice = person("dnd")
    result = run_entry(bot, alice.jid)
    assert result.returncode == 10, result.stderr
    assert result.stderr == f"cvsmsg: withheld from {alice.jid}: dnd (resource desk); queued\n"
    assert alice.settle() == []


def test_an_error_exits_the_normal_way(bot, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", ENTRY, "notify", "--config", str(tmp_path / "none.toml"),
         "alice@localhost"],
        input=NOTICE, capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.returncode == 3
    assert result.stderr.endswith("interpreter shutdown\n")


# -- XEP-0237: the cached roster -------------------------------------------------------------


def roster_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "cvsmsg").glob("roster-*.marshal"))


def write_roster(prosody: Prosody, owner: str, contacts: list[str], version: int) -> None:
    """Write an offline account's roster straight into Prosody's storage (mutual items):
    a large roster in milliseconds instead of a subscription dance per contact."""
    def lua(jids: list[str]) -> str:
        items = "".join(f'\t["{j}"] = {{ ["subscription"] = "both"; ["groups"] = {{}}; }};\n'
                        for j in jids)
        return (f'return {{\n\t[false] = {{ ["pending"] = {{}}; ["version"] = {version}; }};\n'
                f"{items}}};\n")

    directory = prosody.workdir / "data" / prosody.domain / "roster"
    (directory / f"{owner.partition('@')[0]}.dat").write_text(lua(contacts))
    for jid in contacts:
        path = directory / f"{jid.partition('@')[0]}.dat"
        if not path.exists():
            path.write_text(lua([owner]))


def test_the_second_run_starts_from_the_cached_roster(bot, person, tmp_path):
    alice = person("")
    assert bot.run(alice.jid).returncode == 0
    [cache] = roster_files(tmp_path)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    before = cache.stat().st_mtime_ns
    second = bot.run(alice.jid)  # the server answers "unchanged": the cache is the roster
    assert second.returncode == 0, second.stderr
    assert second.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert [m.body for m in alice.settle()] == [NOTICE.rstrip("\n")] * 2
    assert cache.stat().st_mtime_ns == before  # same version: not rewritten


def test_a_roster_of_30_contacts_delivers_and_is_cached(bot, person, prosody, tmp_path):
    """The roster scale path at small scale (bench/bench.py group 4 runs 1000)."""
    alice = person("")
    others = [f"{unique('c')}@{prosody.domain}" for _ in range(29)]
    write_roster(prosody, bot.jid, [alice.jid, *others], version=100)
    for _ in range(2):
        result = bot.run(alice.jid)
        assert result.returncode == 0, result.stderr
    cached = rostercache.load(roster_files(tmp_path)[0], bot.jid,
                              f"127.0.0.1:{prosody.port}")
    assert cached is not None
    assert cached[0] == "100"
    assert sorted(cached[1]) == sorted([alice.jid, *others])
    assert len(alice.settle()) == 2


def test_the_roster_cache_is_never_read_through_a_link_or_when_others_can_read_it(tmp_path):
    path = tmp_path / "cvsmsg" / "roster-x.marshal"
    items = {"alice@example.org": (True, True, False, "", [])}
    rostercache.save(path, "bot@example.org", "h:5222", "7", items)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert rostercache.load(path, "bot@example.org", "h:5222") == ("7", items)
    assert rostercache.load(path, "bot@example.org", "other:5222") is None  # other server
    link = tmp_path / "cvsmsg" / "roster-link.marshal"
    link.symlink_to(path)
    assert rostercache.load(link, "bot@example.org", "h:5222") is None
    path.chmod(0o640)
    assert rostercache.load(path, "bot@example.org", "h:5222") is None


def test_a_cached_roster_is_checked_before_a_recipient_is_taken_as_invisible(
        bot, person, prosody, tmp_path):
    """Prosody's roster versions are counters that start again for a recreated account:
    an old cache can carry the current version with other contents. Before a recipient is
    taken as not visible on the cache's word, the whole roster is fetched once."""
    alice = person("")
    assert bot.run(alice.jid).returncode == 0
    [cache] = roster_files(tmp_path)
    server = f"127.0.0.1:{prosody.port}"
    version, items = rostercache.load(cache, bot.jid, server)
    items[alice.jid] = (True, False, True, "", [])  # as if she had not approved us yet
    rostercache.save(cache, bot.jid, server, version, items)
    result = bot.run(alice.jid)
    assert result.returncode == 0, result.stderr
    assert result.stderr == f"cvsmsg: delivered to {alice.jid}: available\n"
    assert len(alice.settle()) == 2
    # and the cache holds what the server said
    assert rostercache.load(cache, bot.jid, server)[1][alice.jid][:3] == (True, True, False)
