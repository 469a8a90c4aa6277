"""The delivery guarantee, measured: kill -9 the background deliverer in the middle of a
drain, again and again, and count what the recipient got (README "The delivery guarantee":
at least once; at most the one message in flight twice after a kill -9).

Each trial queues N messages for an online recipient, starts the deliverer through a real
`cvsmsg notify` hand-off (coalesce_seconds = 0: one message in flight at a time), kills it
with SIGKILL after a random share of the queue is gone, lets the next hand-off finish the
job, and counts lost and duplicated notifications.

    .venv/bin/python bench/guarantee_bench.py [--trials 10] [--messages 200]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.prosody import Prosody  # noqa: E402
from tests.harness.recipient import LoopThread, Person, befriend  # noqa: E402
from tests.spoolhelp import first_lines, lock_pid, wait_for  # noqa: E402

from cvsmsg.spool import Spool  # noqa: E402

NOTICE = "proj {name}\n---\nTriggered edit watch on /cvs/proj\nBy bob\n"


def trial(cvsmsg: str, config: Path, spool_dir: Path, alice: Person, total: int,
          rng: random.Random, tag: str) -> tuple[int, int, int]:
    """(queued, lost, duplicated) of one kill -9 trial; `tag` marks its file names."""
    spool = Spool(spool_dir)
    for i in range(total):
        spool.add(alice.jid, "CVS Watch Alarm", NOTICE.format(name=f"{tag}-f{i:04}.txt").rstrip(),
                  attempts=1, reason="dnd (resource desk)")
    alice.settle()
    env = {**os.environ, "CVSMSG_SPOOL_DIR": str(spool_dir)}

    def hand_off(name: str) -> None:
        subprocess.run([cvsmsg, "notify", "-q", "--config", str(config), alice.jid],
                       input=NOTICE.format(name=name).encode(), env=env, check=True)

    def files() -> int:
        count = 0
        for path in spool_dir.iterdir():
            with contextlib.suppress(FileNotFoundError):  # delivered while we looked
                count += path.name.endswith(".msg") and path.stat().st_size > 0
        return count

    hand_off(f"{tag}-first.txt")
    cut = rng.randint(total // 10, total * 9 // 10)
    wait_for(lambda: files() <= total - cut, 30, step=0.002)
    pid = lock_pid(spool_dir, "deliver")
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    hand_off(f"{tag}-next.txt")
    wait_for(lambda: files() == 0, 60, step=0.05)
    expected = {f"proj {tag}-f{i:04}.txt" for i in range(total)}
    expected |= {f"proj {tag}-first.txt", f"proj {tag}-next.txt"}
    wait_for(lambda: expected <= set(first_lines(alice.settle())), 30, step=0.05)
    counts = collections.Counter(line for line in first_lines(alice.settle())
                                 if line.startswith(f"proj {tag}-"))
    lost = len(expected - set(counts))
    duplicated = sum(n - 1 for n in counts.values() if n > 1)
    return len(expected), lost, duplicated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    cvsmsg = str(Path(sys.executable).with_name("cvsmsg"))
    with tempfile.TemporaryDirectory(prefix="cvsmsg-guarantee-") as tmp:
        work = Path(tmp)
        server = Prosody(work / "prosody")
        server.start()
        loops = LoopThread()
        rows = []
        try:
            bot_jid = server.register("bot", "botpw")
            alice = Person(loops, server.register("alice", "alicepw"), "alicepw", server.port,
                           server.ca).online("")
            befriend(loops, bot_jid, "botpw", alice)
            config = server.write_cvsmsg_config(
                work / "c.toml", bot_jid, "botpw", delivery="background", coalesce_seconds=0,
            )
            for n in range(args.trials):
                spool_dir = work / f"spool{n}"
                spool_dir.mkdir(mode=0o3770)
                rows.append(trial(cvsmsg, config, spool_dir, alice, args.messages, rng, f"t{n}"))
        finally:
            loops.stop()
            server.stop()
    print(f"\ndelivery guarantee under kill -9 of the deliverer, "
          f"{time.strftime('%Y-%m-%d %H:%M')}, {os.uname().nodename}, {args.trials} trials\n")
    print(f"{'trial':>5} {'notifications':>13} {'lost':>5} {'twice':>6}")
    for i, (queued, lost, duplicated) in enumerate(rows, 1):
        print(f"{i:>5} {queued:>13} {lost:>5} {duplicated:>6}")
    print(f"\ntotal: {sum(r[0] for r in rows)} notifications, {sum(r[1] for r in rows)} lost, "
          f"{sum(r[2] for r in rows)} delivered twice (at most one per kill is promised)")
    return 1 if any(r[1] or r[2] > 1 for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
