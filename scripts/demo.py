"""`make demo`: cvsmsg end to end on loopback, with real Prosody, real CVS, a real recipient.

1. a throwaway Prosody on a free loopback port (own config and CA, in ./demo-run);
2. the bot's account and alice's; alice logs in and adds the bot to her contacts;
3. a CVS repository whose CVSROOT/notify runs cvsmsg, alice watches the module;
4. bob runs `cvs edit a.txt`: alice (available) gets the notification;
5. alice switches to "do not disturb", bob runs `cvs unedit a.txt`: withheld.

Everything is stopped at the end; ./demo-run keeps the config, logs and repository.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.cvsrepo import CvsRepo, notify_line  # noqa: E402
from tests.harness.prosody import Prosody  # noqa: E402
from tests.harness.recipient import LoopThread, Person  # noqa: E402


def say(text: str) -> None:
    bold, plain = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{bold}== {text}{plain}", flush=True)


def show(label: str, text: str) -> None:
    body = text.rstrip("\n") or "(nothing)"
    print(f"   {label}:")
    print(textwrap.indent(body, "     | "), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="cvsmsg end to end on loopback")
    parser.add_argument("--dir", type=Path, default=ROOT / "demo-run",
                        help="where to keep the run (replaced each time; default ./demo-run)")
    run = parser.parse_args().dir.resolve()
    if run.exists():
        shutil.rmtree(run)
    run.mkdir(parents=True)
    server = Prosody(run / "prosody")
    loops = LoopThread()
    try:
        say("1. A throwaway Prosody on loopback (its own config, data and CA)")
        server.start()
        print(f"   listening on 127.0.0.1:{server.port}, config {server.config}")

        say("2. Accounts: the bot and a watcher; alice adds the bot to her contacts")
        bot_jid = server.register("cvsmsg", "demo-bot-password")
        config = server.write_cvsmsg_config(run / "cvsmsg.toml", bot_jid, "demo-bot-password")
        alice = Person(loops, server.register("alice", "alice-pw"), "alice-pw", server.port,
                       server.ca).online("")
        alice.send_presence(bot_jid, "subscribe")
        print(f"   bot {bot_jid} (config {config}, mode 0600)")
        print(f"   {alice.jid} is online and asked to see {bot_jid}; cvsmsg is not running,")
        print("   so the server keeps the request until cvsmsg next logs in")

        say("3. A CVS repository that notifies watchers with cvsmsg")
        repo = CvsRepo(run / "cvs", "fork").create()
        repo.checkout_all("alice", "bob")
        line = notify_line(config)
        repo.install_notify(line, {"alice": alice.jid})
        print(f"   CVSROOT={repo.cvsroot} (client/server, like :ext: or pserver)")
        show("CVSROOT/notify (added line)", line)
        show("CVSROOT/users", f"alice:{alice.jid}")
        repo.watcher("alice")
        print("   alice ran `cvs watch on` and `cvs watch add` in her working copy")

        say("4. bob runs `cvs edit a.txt` while alice is available")
        bob = repo.checkout("bob")
        result = bob.cvs("edit", "a.txt", check=False)
        print(f"   cvs edit exit code: {result.returncode}")
        show("cvs edit stdout (the CVS protocol channel: must stay clean)", result.stdout)
        show("cvs edit stderr (cvsmsg's one line)", result.stderr)
        received = alice.settle()
        for msg in received:
            show(f"alice received from {msg.sender}, subject {msg.subject!r}", msg.body)
        print(f"   alice's contact list: {bot_jid} subscription "
              f"'{alice.roster_subscription(bot_jid)}' (cvsmsg accepted her and asked back)")

        say("5. alice switches to 'do not disturb'; bob runs `cvs unedit a.txt`")
        alice.online("dnd")
        result = bob.cvs("unedit", "a.txt", check=False)
        print(f"   cvs unedit exit code: {result.returncode}")
        show("cvs unedit stderr", result.stderr)
        after = alice.settle()
        print(f"   alice received {len(after) - len(received)} new message(s): withheld, "
              "as she asked")

        ok = len(received) == 1 and len(after) == len(received)
        say("Done: " + ("delivered when available, withheld in dnd" if ok else "UNEXPECTED"))
        print(f"   config, Prosody log and CVS repository are kept in {run}")
        return 0 if ok else 1
    finally:
        loops.stop()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
