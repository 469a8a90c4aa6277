"""A message the server refuses never holds the others back (issue 9, items 2-4).

One Prosody for the file, with `c2s_stanza_size_limit = 65536` (not advertised: cvsmsg
learns it from the refusal) and a test module that closes the stream with policy-violation
for any body containing MARKER (a message that can never go).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cvsmsg.config import load_config
from cvsmsg.digest import batches, most_together, refused_level
from cvsmsg.drain import Drainer
from cvsmsg.message import Part, fit_subject, split_message, subject_room, wire_size
from cvsmsg.spool import Entry, Spool
from tests.conftest import Bot, unique
from tests.harness.prosody import Prosody
from tests.harness.recipient import LoopThread, Person, befriend
from tests.spoolhelp import (
    cvsmsg,
    first_lines,
    lock_pid,
    notice,
    pid_alive,
    queue_rows,
    spool_files,
    wait_for,
)
from tests.test_serve import Serve

LIMIT = 65536
MARKER = "CVSMSG-REFUSE-ME"
SUBJECT = "CVS Watch Alarm"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prosody]:
    modules_dir = Path(__file__).parent / "harness" / "prosody_modules"
    server = Prosody(
        tmp_path_factory.mktemp("limited-prosody"),
        modules=(*Prosody.modules, "refuse_marker"),
        extra_config=(f"c2s_stanza_size_limit = {LIMIT}\n"
                      f'plugin_paths = {{ "{modules_dir}" }}\nrefuse_marker = "{MARKER}"\n'),
    )
    server.start()
    yield server
    server.stop()


@dataclass
class Pair:
    bot: Bot
    alice: Person
    server: Prosody
    tmp: Path

    def config(self, name: str, **extra: object) -> Path:
        return self.server.write_cvsmsg_config(self.tmp / f"{name}.toml", self.bot.jid,
                                               self.bot.password, **extra)

    def logins(self) -> int:
        """How many times the bot logged in, as the server saw it."""
        return self.server.log.read_text().count(f"Authenticated as {self.bot.jid}\n")


@pytest.fixture
def pair(limited: Prosody, loops: LoopThread, tmp_path: Path) -> Iterator[Pair]:
    name, user = unique("bot"), unique("user")
    bot_jid = limited.register(name, "pw-" + name)
    config = limited.write_cvsmsg_config(tmp_path / "c.toml", bot_jid, "pw-" + name)
    alice = Person(loops, limited.register(user, "pw-" + user), "pw-" + user, limited.port,
                   limited.ca).online("")
    befriend(loops, bot_jid, "pw-" + name, alice)
    yield Pair(Bot(bot_jid, "pw-" + name, config, limited), alice, limited, tmp_path)
    alice.offline()


def queue_many(spool_dir: Path, jid: str, count: int, prefix: str = "f") -> list[str]:
    """`count` small notifications queued fast, as 300 hand-offs of one commit would."""
    spool = Spool(spool_dir)
    for i in range(count):
        spool.add(jid, SUBJECT, big_notice(f"{prefix}{i:03}.txt"))
    return [f"proj {prefix}{i:03}.txt" for i in range(count)]


def big_notice(name: str) -> str:
    """A notification of about 520 bytes (a long repository path): 300 make ~156 KB."""
    return notice(name).replace("/cvs/proj", "/srv/" + "deep/" * 90 + "proj").rstrip("\n")


def deliverer_idle(spool_dir: Path) -> bool:
    pid = lock_pid(spool_dir, "deliver")
    return pid is None or not pid_alive(pid)


# -- 1. 300 coalesced notifications over a 64 KiB limit -----------------------------------


def test_three_hundred_coalesced_all_arrive_then_a_small_one_at_once(pair, spool_dir):
    bg = pair.config("bg", delivery="background", coalesce_seconds=2)
    expected = queue_many(spool_dir, pair.alice.jid, 299)
    last = pair.bot.run(pair.alice.jid, config=bg, input=big_notice("f299.txt"))
    assert last.returncode == 0, last.stderr
    expected.append("proj f299.txt")
    assert wait_for(lambda: len(first_lines(pair.alice.settle())) >= 300, 60), \
        (spool_dir / "deliver.log").read_text()[-3000:]
    msgs = pair.alice.settle()
    assert first_lines(msgs) == expected  # every one, once, in order
    assert len(msgs) <= 12, [m.subject for m in msgs]  # still digests, not 300 messages
    assert wait_for(lambda: spool_files(spool_dir) == [], 10), spool_files(spool_dir)
    log = (spool_dir / "deliver.log").read_text()
    assert "the server refused a " in log

    # a later 13-byte message to the same person goes within seconds
    before = len(msgs)
    started = time.monotonic()
    small = pair.bot.run(pair.alice.jid, config=bg, input="hello, alice\n")
    assert small.returncode == 0, small.stderr
    got = pair.alice.wait_messages(before + 1, 10)
    assert [m.body for m in got[before:]] == ["hello, alice"]
    print(f"\n13-byte message after the 300: {time.monotonic() - started:.2f} s")


def test_flush_delivers_three_hundred_over_the_limit(pair, spool_dir):
    expected = queue_many(spool_dir, pair.alice.jid, 300)
    started = time.monotonic()
    result = cvsmsg("flush", "--config", str(pair.config("fl", coalesce_seconds=2)))
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert "the server refused a " in result.stderr
    assert spool_files(spool_dir) == []
    msgs = pair.alice.settle()
    assert first_lines(msgs) == expected
    assert len(msgs) <= 12, [m.subject for m in msgs]
    print(f"\nflush of 300 over a 64 KiB limit: {elapsed:.1f} s, {len(msgs)} messages")


# -- 2. serve keeps running -----------------------------------------------------------------


def test_serve_splits_a_100_kb_message_and_keeps_running(pair, spool_dir, tmp_path):
    server = Serve(pair.config("serve"), tmp_path / "serve.log")
    try:
        server.wait_connected()
        text = "\n".join(f"{i:05d} " + "y" * 93 for i in range(1000))  # 100 KB
        result = pair.bot.run(pair.alice.jid, input=text)
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"cvsmsg: queued for {pair.alice.jid}: handed to cvsmsg serve\n"
        assert wait_for(lambda: "".join(m.body for m in pair.alice.settle()).startswith(text),
                        30), server.text()
        msgs = pair.alice.settle()
        total = len(msgs)
        assert total >= 2
        assert [m.subject for m in msgs] == [f"{SUBJECT} (part {i}/{total})"
                                             for i in range(1, total + 1)]
        assert server.proc.poll() is None, server.text()
        # and it still delivers the next one
        assert pair.bot.run(pair.alice.jid, input="after\n").returncode == 0
        assert [m.body for m in pair.alice.wait_messages(total + 1, 15)[total:]] == ["after"]
        assert server.proc.poll() is None
    finally:
        assert server.stop() == 0, server.text()
    print(f"\nserve: 100 KB in {total} parts")


# -- 3. a message that can never go ---------------------------------------------------------


def test_a_message_refused_every_time_is_set_aside_and_logins_stay_bounded(pair, spool_dir):
    bg = pair.config("bg", delivery="background", coalesce_seconds=2)
    spool = Spool(spool_dir)
    spool.add(pair.alice.jid, SUBJECT, notice("before.txt").rstrip("\n"))
    poison = spool.add(pair.alice.jid, SUBJECT, f"proj poison.txt\n{MARKER}")
    logins_before = pair.logins()
    started = time.monotonic()
    assert pair.bot.run(pair.alice.jid, config=bg, input=notice("after.txt")).returncode == 0
    assert wait_for(lambda: sorted(first_lines(pair.alice.settle())) == [
        "proj after.txt", "proj before.txt"], 30), (spool_dir / "deliver.log").read_text()
    assert wait_for(lambda: (spool_dir / f"{poison.id}.bad").exists(), 40), \
        (spool_dir / "deliver.log").read_text()
    aside = time.monotonic() - started
    # a delivered file goes once the server's ack is in: just after the recipient has it
    assert wait_for(lambda: spool_files(spool_dir) == [], 10), spool_files(spool_dir)
    # the reconnect loop stays bounded while it keeps failing, and stops once it is aside
    time.sleep(max(0.0, 12 - (time.monotonic() - started)))
    logins = pair.logins() - logins_before
    assert logins <= 6, logins  # a handful: the deliverer's back-off, then nothing
    log = (spool_dir / "deliver.log").read_text()
    [line] = [line for line in log.splitlines() if "set aside" in line]
    assert re.search(rf"ERROR: message {poison.id} for {re.escape(pair.alice.jid)} refused "
                     rf"by the server 6 times: set aside as {poison.id}.bad \(the server "
                     r"rejected the message and closed the stream \(policy-violation", line), line
    listing = cvsmsg("queue", "--config", str(bg))
    assert listing.returncode == 0
    assert f"{poison.id}.bad" in listing.stdout
    assert queue_rows(bg) == []
    assert "proj poison.txt" not in first_lines(pair.alice.settle())
    print(f"\nset aside after {aside:.1f} s; {logins} logins in 12 s")


# -- 4. 40 MB on one line -------------------------------------------------------------------


def test_forty_megabytes_on_one_line_bounded_and_never_resent(pair, spool_dir):
    cfg = pair.config("big", timeout=10)
    line = "z" * (40 * 1024 * 1024)
    started = time.monotonic()
    first = pair.bot.run(pair.alice.jid, config=cfg, input=line, timeout=60)
    elapsed = time.monotonic() - started
    assert elapsed <= 10 + 1 + 2, f"{elapsed:.1f} s"  # timeout + 1 s, and a start-up margin
    # 256 KiB parts are over the server's 64 KiB: refused, queued to go smaller
    assert first.returncode == 7, first.stderr
    assert first.stderr.rstrip("\n").endswith("; queued for later delivery"), first.stderr
    for _ in range(3):  # later runs to the same person, then flush
        again = pair.bot.run(pair.alice.jid, config=cfg, input="small\n", timeout=60)
        assert again.returncode == 0, again.stderr
    flushed = cvsmsg("flush", "--config", str(cfg), timeout=60)
    assert flushed.returncode == 0, flushed.stderr
    msgs = pair.alice.settle()
    assert [m.body for m in msgs].count("small") == 3
    parts = [m for m in msgs if m.body != "small"]
    # at most max_parts, each exactly once, nothing resent or "(continued)"
    assert [m.subject for m in parts] == [f"{SUBJECT} (part {i}/10)" for i in range(1, 11)]
    assert all(set(m.body[:1000]) == {"z"} for m in parts)
    assert "more bytes not sent; the message exceeded 10 parts]" in parts[-1].body
    assert spool_files(spool_dir) == []
    print(f"\n40 MB: first run {elapsed:.1f} s, exit {first.returncode}")


# -- 5. a subject longer than max_stanza_bytes -----------------------------------------------


def test_a_subject_longer_than_a_stanza_is_cut_not_fatal(pair, spool_dir):
    bg = pair.config("bg", delivery="background", coalesce_seconds=0, max_stanza_bytes=4096)
    subject = "S" * 5000
    for name in ("a.txt", "b.txt"):  # the deliverer survives: every run delivers
        result = pair.bot.run("--subject", subject, pair.alice.jid, config=bg,
                              input=notice(name))
        assert result.returncode == 0, result.stderr
        assert wait_for(lambda: deliverer_idle(spool_dir), 20)
    msgs = pair.alice.wait_messages(2, 10)
    assert first_lines(msgs) == ["proj a.txt", "proj b.txt"]
    assert [m.subject for m in msgs] == ["S" * 989 + "\u2026"] * 2
    # (the deliverer removes a file once acked: alice may have the message a moment before)
    assert wait_for(lambda: spool_files(spool_dir) == [], 10)
    log = (spool_dir / "deliver.log").read_text()
    assert log.count("WARNING: subject longer than 992 bytes (half a stanza of "
                     "max_stanza_bytes 4096): cut\n") == 2, log
    # direct delivery cuts it the same way, with the same line
    direct = pair.config("direct", max_stanza_bytes=4096)
    result = pair.bot.run("--subject", subject, pair.alice.jid, config=direct)
    assert result.returncode == 0, result.stderr
    assert "cvsmsg: subject longer than 992 bytes (half a stanza of max_stanza_bytes 4096): " \
        "cut\n" in result.stderr
    assert pair.alice.wait_messages(3, 10)[2].subject == "S" * 989 + "\u2026"


# -- pure parts: which notifications go together after a refusal; a clock that was ahead ----


def _entry(i: int, created: float, refused: int = 0, **kw: object) -> Entry:
    return Entry(f"{i:04d}", "alice@localhost", SUBJECT, f"proj f{i}.txt", created=created,
                 refused=refused, **kw)  # type: ignore[arg-type]


def test_refused_digests_shrink_until_alone():
    assert [most_together(r) for r in range(6)] == [None, 64, 16, 4, 1, 1]
    assert refused_level(0, 300) == 1  # 300 → digests of at most 64
    assert refused_level(1, 64) == 2  # 64 → 16
    assert refused_level(0, 3) == 4  # a small digest refused: each goes alone at once
    assert refused_level(4, 1) == 5
    now = 1000.0
    entries = [_entry(i, now + i * 0.01, refused=1) for i in range(150)]
    entries += [_entry(200, now + 2, refused=0), _entry(201, now + 2.01, refused=4)]
    sizes = sorted(len(b.entries) for b in batches(entries, 2.0, 60.0))
    assert sizes == [1, 1, 22, 64, 64]  # fresh and alone ones never join the refused


def test_a_clock_ahead_does_not_delay_readiness(tmp_path):
    now = 1_000_000.0
    ahead = _entry(1, now + 3600)  # written by a clock an hour ahead (kept: under a day)
    [skewed] = batches([ahead], 2.0, 60.0)
    assert skewed.ready_at == now + 3602  # what the time field alone would say
    [seen] = batches([ahead], 2.0, 60.0, {ahead.id: now})
    assert seen.ready_at == now + 2

    cfg = load_config(_write(tmp_path / "c.toml"), env={})
    spool = Spool(tmp_path / "spool", shared=False)
    entry = spool.add("alice@localhost", SUBJECT, "proj a.txt", created=now + 3600)
    clock = [now]
    drainer = Drainer(cfg, spool, clock=lambda: clock[0])
    assert drainer.refresh() == [entry.id]
    clock[0] = now + 5
    drainer.refresh()  # seen again later: still counted from the first look
    [batch] = batches(drainer.pending.values(), cfg.coalesce_seconds, 60.0,
                      drainer.first_seen)
    assert batch.ready_at == now + cfg.coalesce_seconds


def _write(path: Path) -> Path:
    path.write_text('jid = "bot@example.org"\npassword = "p"\n')
    path.chmod(0o600)
    return path


def test_fit_subject_cuts_only_what_does_not_fit(caplog):
    assert fit_subject("CVS \x07 alarm", 4096) == "CVS alarm"
    assert subject_room(4096) == 992
    cut = fit_subject("é" * 1000, 4096)
    assert cut == "é" * 494 + "\u2026" and wire_size(cut) <= 992
    assert "subject longer than 992 bytes" in caplog.text
    [part] = split_message("S" * 5000, "body", 4096, 10)
    assert part == Part("S" * 989 + "\u2026", "body")
