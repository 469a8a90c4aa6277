"""One run, same server, same message: cvsmsg notify beside go-sendxmpp and sendxmpp.

Starts its own Prosody on loopback (the tests' harness), an online recipient and an offline
one, then times each command alternately, N times each, and prints median and min–max wall
time, CPU time and peak RSS. Only ratios from one run mean anything on a shared machine.

    .venv/bin/python bench/notify_bench.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.prosody import Prosody  # noqa: E402
from tests.harness.recipient import LoopThread, Person, befriend  # noqa: E402

MESSAGE = b"proj a.txt\n---\nTriggered edit watch on /srv/cvsroot/proj\nBy bob\n"


@dataclass
class Sample:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_kb: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    received: int = 0


def timed(
    cmd: list[str], env: dict[str, str], stdin: bytes, usage_file: Path
) -> tuple[float, float, int, int]:
    """(wall s, cpu s, peak RSS KiB, exit code) of one process.

    GNU time measures CPU and RSS: a child forked from this (large) Python process would
    report our RSS as its own peak, so the measured command must be forked by something small.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%U %S %M %x", "-o", str(usage_file), *cmd],
        input=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False,
    )
    wall = time.perf_counter() - start
    fields = usage_file.read_text().split()[-4:]
    user, system, rss, code = float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])
    del proc
    return wall, user + system, rss, code


def ensure_peers() -> None:
    missing = [p for p in ("go-sendxmpp", "sendxmpp") if shutil.which(p) is None]
    if not Path("/usr/bin/time").exists():
        missing.append("time")
    if missing:
        print(f"installing {' '.join(missing)} …", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_peers()
    cvsmsg = str(Path(sys.executable).with_name("cvsmsg"))

    with tempfile.TemporaryDirectory(prefix="cvsmsg-bench-") as tmp:
        work = Path(tmp)
        server = Prosody(work / "prosody")
        server.start()
        loops = LoopThread()
        try:
            bot_jid = server.register("bot", "botpw")
            alice = Person(loops, server.register("alice", "alicepw"), "alicepw", server.port,
                           server.ca).online("")
            befriend(loops, bot_jid, "botpw", alice)
            bob = Person(loops, server.register("bob", "bobpw"), "bobpw", server.port,
                         server.ca).online("")
            befriend(loops, bot_jid, "botpw", bob)
            bob.offline()
            config = server.write_cvsmsg_config(work / "cvsmsg.toml", bot_jid, "botpw")
            env = dict(os.environ)
            # go-sendxmpp has no CA option: it trusts the test CA through SSL_CERT_FILE.
            # cvsmsg (ca_file) and sendxmpp (-a) get theirs explicitly and keep the system
            # trust store as a real installation would.
            go_env = {**os.environ, "SSL_CERT_FILE": str(server.ca)}
            host = f"localhost:{server.port}"
            commands: dict[str, list[str]] = {
                "cvsmsg notify (online)": [cvsmsg, "notify", "-q", "--config", str(config),
                                           alice.jid],
                "cvsmsg notify (offline)": [cvsmsg, "notify", "-q", "--config", str(config),
                                            bob.jid],
                "go-sendxmpp": ["go-sendxmpp", "-u", bot_jid, "-p", "botpw", "-j", host,
                                alice.jid],
                "sendxmpp": ["sendxmpp", "-t", "-a", str(server.ca), "-j", host, "-u", "bot",
                             "-p", "botpw", alice.jid],
                "cvsmsg --help": [cvsmsg, "--help"],
            }
            sends_to_alice = {"cvsmsg notify (online)", "go-sendxmpp", "sendxmpp"}
            samples = {name: Sample() for name in commands}
            for _ in range(args.runs):
                for name, cmd in commands.items():
                    before = len(alice.settle()) if name in sends_to_alice else 0
                    run_env = go_env if name == "go-sendxmpp" else env
                    wall, cpu, rss, code = timed(cmd, run_env, MESSAGE, work / "usage")
                    s = samples[name]
                    s.wall.append(wall)
                    s.cpu.append(cpu)
                    s.rss_kb.append(rss)
                    s.codes.append(code)
                    if name in sends_to_alice:
                        s.received += len(alice.settle()) - before
            report(samples, args.runs)
        finally:
            loops.stop()
            server.stop()
    return 0


def report(samples: dict[str, Sample], runs: int) -> None:
    print(f"\ncvsmsg benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().nodename}, "
          f"{os.cpu_count()} cores, {runs} alternating runs each, Prosody on loopback\n")
    head = (f"{'command':26} {'wall median':>11} {'wall min–max':>15} {'CPU median':>10} "
            f"{'peak RSS':>9} {'exit codes':>12} {'received':>9}")
    print(head)
    print("-" * len(head))
    for name, s in samples.items():
        codes = ",".join(str(c) for c in sorted(set(s.codes)))
        received = f"{s.received}/{runs}" if name != "cvsmsg --help" and "offline" not in name \
            else ("0 (gated)" if "offline" in name and s.received == 0 else "-")
        print(f"{name:26} {statistics.median(s.wall) * 1000:9.0f}ms "
              f"{min(s.wall) * 1000:6.0f}–{max(s.wall) * 1000:.0f}ms "
              f"{statistics.median(s.cpu) * 1000:8.0f}ms {max(s.rss_kb) / 1024:7.1f}MB "
              f"{codes:>12} {received:>9}")
    med = {n: statistics.median(s.wall) for n, s in samples.items()}
    online = med["cvsmsg notify (online)"]
    print(f"\ncvsmsg(online)/go-sendxmpp = {online / med['go-sendxmpp']:.2f}   "
          f"cvsmsg(online)/sendxmpp = {online / med['sendxmpp']:.2f}   "
          f"cvsmsg(offline)/cvsmsg(online) = {med['cvsmsg notify (offline)'] / online:.2f}")


if __name__ == "__main__":
    sys.exit(main())
