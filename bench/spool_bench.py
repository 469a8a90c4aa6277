"""Direct delivery beside the background hand-off, on one loopback Prosody, in one run.

1. one `cvsmsg notify` (recipient online), direct and background, and one `cvsmsg-drop`
   (the sh hand-off), alternately, N times each: wall time per call (what CVS waits for),
   and what the recipient received;
2. a real `cvs commit` of F watched files with 3 watchers (3×F notify runs) in direct
   mode, in background mode and through `cvsmsg-drop`: wall time of the commit, time until
   every watcher had every notification, notifications and messages received.

    .venv/bin/python bench/spool_bench.py [--runs 20] [--files 100]

Targets (issue 3): background hand-off <= 100 ms median; the commit >= 5x faster than in
direct mode, nothing lost. Only ratios from one run mean anything on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.cvsrepo import CvsRepo, notify_line  # noqa: E402
from tests.harness.prosody import Prosody  # noqa: E402
from tests.harness.recipient import LoopThread, Person, befriend  # noqa: E402

MODES = ("direct", "background", "drop")
MESSAGE = "proj {name}\n---\nTriggered edit watch on /srv/cvsroot/proj\nBy bob\n"


def notifications(person: Person) -> int:
    """Notifications received so far, digests counted by their entries."""
    return sum(1 for m in person.settle() for line in m.body.splitlines()
               if line.startswith("proj "))


def wait_until(predicate, timeout: float) -> float | None:
    """Seconds until `predicate()` held (polling), None if it never did."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(0.01)
    return None


def command(mode: str, config: Path) -> list[str]:
    """The CVSROOT/notify command of `mode`, without the recipient."""
    bindir = Path(sys.executable).parent
    if mode == "drop":
        return [str(bindir / "cvsmsg-drop"), "--spool", str(config.parent / mode),
                "--config", str(config)]
    return [str(bindir / "cvsmsg"), "notify", "-q", "--config", str(config)]


def one_notify(configs: dict[str, Path], alice: Person, runs: int) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {mode: [] for mode in configs}
    for i in range(runs):
        for mode, config in configs.items():
            data = MESSAGE.format(name=f"{mode}-{i}.txt").encode()
            start = time.perf_counter()
            proc = subprocess.run([*command(mode, config), alice.jid],
                                  input=data, capture_output=True, check=False)
            walls[mode].append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(f"{mode} notify failed: {proc.stderr.decode()}")
    return walls


def commit_run(work: Path, mode: str, config: Path, people: dict[str, Person], files: int
               ) -> tuple[float, float | None, int, int]:
    """(commit wall s, s until all received, notifications received, messages)."""
    repo = CvsRepo(work / f"cvs-{mode}", "local").create(
        {f"f{i:03}.txt": f"{i}\n" for i in range(files)})
    repo.checkout_all(*people, "bob")
    line = (notify_line(config, "-q") if mode != "drop"
            else "ALL " + " ".join(shlex.quote(w) for w in command(mode, config)) + " %s")
    repo.install_notify(line, {u: p.jid for u, p in people.items()})
    for user in people:
        repo.watcher(user, "commit")
    bob = repo.checkout("bob")
    for i in range(files):
        (bob.path / f"f{i:03}.txt").write_text("changed\n")
    before = {u: (notifications(p), len(p.settle())) for u, p in people.items()}
    start = time.perf_counter()
    result = bob.cvs("commit", "-m", f"{mode}: touch everything", timeout=3600, check=False)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"cvs commit failed: {result.stderr[-2000:]}")
    want = sum(n for n, _ in before.values()) + files * len(people)
    waited = wait_until(lambda: sum(notifications(p) for p in people.values()) >= want, 120)
    got = sum(notifications(p) for p in people.values()) - (want - files * len(people))
    messages = sum(len(p.settle()) for p in people.values()) - sum(m for _, m in before.values())
    return wall, (wall + waited if waited is not None else None), got, messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--files", type=int, default=100)
    args = parser.parse_args()
    # As installed: compiled bytecode (an editable install with PYTHONDONTWRITEBYTECODE
    # would recompile cvsmsg's modules on every call and measure that instead).
    import compileall
    import logging

    import cvsmsg as package

    compileall.compile_dir(str(Path(package.__file__).parent), quiet=1)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # the harness's clients' noise

    with tempfile.TemporaryDirectory(prefix="cvsmsg-spool-bench-") as tmp:
        work = Path(tmp)
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        server = Prosody(work / "prosody")
        server.start()
        loops = LoopThread()
        try:
            bot_jid = server.register("bot", "botpw")
            people = {}
            for user in ("w1", "w2", "w3"):
                p = Person(loops, server.register(user, f"{user}pw"), f"{user}pw", server.port,
                           server.ca).online("")
                befriend(loops, bot_jid, "botpw", p)
                people[user] = p
            alice = Person(loops, server.register("alice", "alicepw"), "alicepw", server.port,
                           server.ca).online("")
            befriend(loops, bot_jid, "botpw", alice)
            configs = {
                mode: server.write_cvsmsg_config(
                    work / f"{mode}.toml", bot_jid, "botpw",
                    delivery="direct" if mode == "direct" else "background",
                    spool_dir=str(work / mode))
                for mode in MODES
            }
            for mode in MODES:  # as the README tells the admin: a root run creates none
                (work / mode).mkdir(mode=0o3770)
                (work / mode).chmod(0o3770)
            env_spool = os.environ.pop("CVSMSG_SPOOL_DIR", None)  # the configs decide
            walls = one_notify(configs, alice, args.runs)
            wait_until(lambda: notifications(alice) >= len(MODES) * args.runs, 30)
            got_one = notifications(alice)
            messages_one = len(alice.settle())
            commits = {mode: commit_run(work, mode, config, people, args.files)
                       for mode, config in configs.items()}
            if env_spool is not None:
                os.environ["CVSMSG_SPOOL_DIR"] = env_spool
            report(walls, got_one, messages_one, commits, args)
        finally:
            loops.stop()
            server.stop()
    return 0


def report(walls, got_one, messages_one, commits, args) -> None:
    print(f"\ncvsmsg spool benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().nodename}, "
          f"{os.cpu_count()} cores, Prosody on loopback\n")
    print(f"one notify, recipient online, {args.runs} alternating runs per mode")
    head = f"{'mode':12} {'wall median':>11} {'min–max':>15}"
    print(head)
    print("-" * len(head))
    for mode, w in walls.items():
        print(f"{mode:12} {statistics.median(w) * 1000:9.0f}ms "
              f"{min(w) * 1000:6.0f}–{max(w) * 1000:.0f}ms")
    print(f"received: {got_one}/{len(MODES) * args.runs} notifications in {messages_one} "
          "messages (direct: one each; background and drop: coalesced)")
    n = args.files * 3
    print(f"\ncvs commit of {args.files} watched files × 3 watchers ({n} notify runs)")
    head = (f"{'mode':12} {'commit wall':>11} {'all received at':>16} {'notifications':>14} "
            f"{'messages':>9}")
    print(head)
    print("-" * len(head))
    for mode, (wall, done, got, messages) in commits.items():
        done_text = f"{done:.1f}s" if done is not None else "never"
        print(f"{mode:12} {wall:10.1f}s {done_text:>16} {got:>9}/{n:<4} {messages:>9}")
    hand_off = statistics.median(walls["background"]) * 1000
    speedup = commits["direct"][0] / commits["background"][0]
    end_to_end = (commits["direct"][1] or 0) / (commits["background"][1] or float("inf"))
    # No commit target for background mode: the hand-off the README recommends for
    # CVSROOT/notify is cvsmsg-drop (`make bench`, issue 11); a Python hand-off pays a
    # bare interpreter's start (~13 ms) per call, ~4 s of a 300-notification commit.
    print(f"\nbackground hand-off median {hand_off:.0f} ms (target <= 100 ms); commit "
          f"{speedup:.1f}x faster in background mode, {end_to_end:.1f}x "
          "until everything was received (no target: cvsmsg-drop is the recommended hand-off)")
    drop_off = statistics.median(walls["drop"]) * 1000
    speedup = commits["direct"][0] / commits["drop"][0]
    end_to_end = (commits["direct"][1] or 0) / (commits["drop"][1] or float("inf"))
    print(f"cvsmsg-drop hand-off median {drop_off:.0f} ms; commit {speedup:.1f}x faster "
          f"through cvsmsg-drop than in direct mode (target >= 10x), {end_to_end:.1f}x "
          "until everything was received")


if __name__ == "__main__":
    sys.exit(main())
