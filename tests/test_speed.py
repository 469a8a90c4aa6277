"""Speed-ups keep the guarantees: ack before exit 0, nothing lost, stdout silent.

Timings belong in `make bench` (bench/bench.py); these tests check what each trick must
not change, and guard each scale path at a small scale."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import Bot

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
