"""The spool and digests without a network: files, modes, locks, claims, bursts, text."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from cvsmsg.config import load_config, parse_duration
from cvsmsg.digest import Digest, batches, late_note, render
from cvsmsg.errors import ConfigError, SpoolError
from cvsmsg.spool import (
    DELIVER_LOCK,
    SERVE_LOCK,
    Entry,
    Spool,
    new_id,
    resolve_spool_dir,
    user_spool_dir,
)
from tests.spoolhelp import cvsmsg_log


def entry(recipient: str = "a@x", created: float = 1000.0, body: str = "b", *,
          attempts: int = 0, reason: str = "", subject: str = "S", n: int = 0) -> Entry:
    return Entry(f"{int(created * 1e6):013x}-{n:06x}", recipient, subject, body, "normal",
                 "bob", created, attempts, reason)


# -- config -------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text('jid = "a@x"\npassword = "p"\n' + text)
    path.chmod(0o600)
    return path


def test_spool_config_defaults(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", ""), env={})
    assert (cfg.spool_dir, cfg.withheld, cfg.delivery) == (None, "queue", "direct")
    assert cfg.queue_max_age == 7 * 86400
    assert cfg.coalesce_seconds == 2.0


def test_spool_config_values(tmp_path):
    cfg = load_config(write(tmp_path / "c.toml", (
        'spool_dir = "q"\nwithheld = "drop"\ndelivery = "background"\n'
        'queue_max_age = "12h"\ncoalesce_seconds = 0.5\n'
    )), env={})
    assert cfg.spool_dir == str(tmp_path / "q")  # relative to the config file, like password_file
    assert (cfg.withheld, cfg.delivery, cfg.queue_max_age, cfg.coalesce_seconds) == (
        "drop", "background", 43200.0, 0.5)
    env = {"CVSMSG_SPOOL_DIR": "/elsewhere"}
    assert load_config(tmp_path / "c.toml", env=env).spool_dir == "/elsewhere"


@pytest.mark.parametrize(("text", "message"), [
    ('withheld = "keep"\n', "'withheld' must be \"queue\" or \"drop\""),
    ('delivery = "later"\n', "'delivery' must be \"direct\" or \"background\""),
    ('queue_max_age = "soon"\n', "'queue_max_age' must be a number of seconds or a duration"),
    ("queue_max_age = -1\n", "'queue_max_age' must not be negative"),
    ("coalesce_seconds = -1\n", "'coalesce_seconds' must be at least 0"),
    ("spool_dir = 3\n", "'spool_dir' must be a str"),
])
def test_spool_config_errors(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.toml", text), env={})


@pytest.mark.parametrize(("value", "seconds"), [
    (30, 30.0), (1.5, 1.5), ("45", 45.0), ("90s", 90.0), ("30m", 1800.0), ("12h", 43200.0),
    ("7d", 604800.0), ("2w", 1209600.0), (" 1D ", 86400.0),
])
def test_durations(value, seconds):
    assert parse_duration(value, "k", "w") == seconds


# -- where the spool lives ----------------------------------------------------------------


def test_configured_spool_dir_wins(tmp_path):
    assert resolve_spool_dir(tmp_path / "q", {}, tmp_path / "sys") == (tmp_path / "q", True,
                                                                        None)


def test_system_spool_dir_when_writable(tmp_path):
    system = tmp_path / "var-spool-cvsmsg"  # its parent is writable: we can create it
    assert resolve_spool_dir(None, {}, system) == (system, True, None)


def test_fallback_to_private_user_dir_with_a_warning(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    blocker.chmod(0o600)
    env = {"XDG_STATE_HOME": str(tmp_path / "state")}
    # cannot be created (its parent is a file): quietly the private per-user directory
    path, shared, warning = resolve_spool_dir(None, env, blocker / "spool")
    assert (path, shared, warning) == (str(tmp_path / "state/cvsmsg/spool"), False, None)
    assert user_spool_dir({}) == str(Path.home() / ".local/state/cvsmsg/spool")
    # exists but is not ours to write (modes do not stop root: a file stands in for it)
    path, shared, warning = resolve_spool_dir(None, env, blocker)
    assert not shared
    assert warning == (f"spool {blocker} is not writable by you: using {path} "
                       "(ask the admin to add you to its group)")


# -- files ----------------------------------------------------------------------------------


def test_add_writes_one_group_shared_file_atomically(tmp_path):
    old = os.umask(0o077)  # even a strict umask must leave the spool group-shared
    try:
        spool = Spool(tmp_path / "spool")
        e = spool.add("alice@x", "CVS Watch Alarm", "proj a.txt\n---\nTriggered …",
                      mtype="chat", cvs_user="bob", attempts=1, reason="dnd (resource desk)")
    finally:
        os.umask(old)
    mode = (tmp_path / "spool").stat().st_mode
    assert stat.S_IMODE(mode) == 0o3770  # setgid + sticky: nobody renames or deletes
    # another member's files
    path = spool.file_of(e.id)
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert [p.name for p in (tmp_path / "spool").iterdir()] == [path.name]  # no temp left
    assert spool.read(e.id) == e
    assert (e.recipient, e.type, e.cvs_user, e.attempts, e.reason) == (
        "alice@x", "chat", "bob", 1, "dnd (resource desk)")
    assert e.last_attempt == e.created


def test_private_fallback_dir_is_private(tmp_path):
    spool = Spool(tmp_path / "deep" / "spool", shared=False).ensure()
    assert stat.S_IMODE(spool.path.stat().st_mode) == 0o700


def test_ids_are_in_creation_order(tmp_path):
    clock = iter([100.0, 100.5, 99.0 + 2])
    spool = Spool(tmp_path, clock=lambda: next(clock))
    ids = [spool.add("a@x", "s", str(i)).id for i in range(3)]
    assert spool.ids() == ids
    assert new_id(10**15) < new_id(10**15 + 1000)


def test_unreadable_file_is_set_aside(tmp_path, caplog):
    spool = Spool(tmp_path)
    good = spool.add("a@x", "s", "b")
    (tmp_path / "0000000000001-000000.msg").write_text("{ truncated")
    assert [e.id for e in spool.entries()] == [good.id]
    assert (tmp_path / "0000000000001-000000.bad").exists()
    assert cvsmsg_log(caplog) == [
        f"spool file {tmp_path}/0000000000001-000000.msg is invalid (no header (or no empty "
        "line after it)): renamed to 0000000000001-000000.bad"]


def test_unwritable_spool_is_a_spool_error(tmp_path):
    target = Path("/proc/self/cvsmsg-spool")
    with pytest.raises(SpoolError, match=f"cannot create spool directory {target}"):
        Spool(target).add("a@x", "s", "b")


# -- claims and locks ----------------------------------------------------------------------


def test_a_claimed_message_cannot_be_claimed_again(tmp_path):
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b")
    first = spool.claim(e.id)
    assert first is not None and first.entry == e
    assert spool.claim(e.id) is None  # another run: busy
    first.remove()
    first.release()
    assert spool.claim(e.id) is None  # gone
    assert spool.ids() == []


def _claim_in_child(path: str, entry_id: str, queue: multiprocessing.Queue) -> None:
    claim = Spool(Path(path)).claim(entry_id)
    queue.put(claim is not None)


def test_claims_exclude_other_processes(tmp_path):
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b")
    ctx = multiprocessing.get_context("fork")
    results: multiprocessing.Queue = ctx.Queue()
    with spool.claim(e.id):
        child = ctx.Process(target=_claim_in_child, args=(str(tmp_path), e.id, results))
        child.start()
        child.join(10)
        assert results.get(timeout=5) is False
    child = ctx.Process(target=_claim_in_child, args=(str(tmp_path), e.id, results))
    child.start()
    child.join(10)
    assert results.get(timeout=5) is True  # the lock died with our release


def test_rewritten_message_is_claimed_afresh(tmp_path):
    """A run that opened the old file before it was rewritten must not own the new one."""
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b")
    stale_fd = os.open(spool.file_of(e.id), os.O_RDONLY)
    with spool.claim(e.id) as claim:
        claim.update(attempts=1, reason="dnd")
    try:
        import fcntl

        fcntl.flock(stale_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the old inode: free
    finally:
        os.close(stale_fd)
    fresh = spool.claim(e.id)
    assert fresh is not None and (fresh.entry.attempts, fresh.entry.reason) == (1, "dnd")
    fresh.release()


def test_drop_by_hand(tmp_path):
    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "b")
    with spool.claim(e.id):
        assert spool.drop(e.id) is None  # being delivered
    assert spool.drop(e.id) == e
    assert spool.ids() == []


def test_locks_and_holder_pid(tmp_path):
    spool = Spool(tmp_path)
    assert not spool.serve_running()
    fd = spool.try_lock(SERVE_LOCK)
    assert fd is not None
    Spool.write_pid(fd)
    assert spool.serve_running()
    assert spool.holder(SERVE_LOCK) == os.getpid()
    assert spool.try_lock(SERVE_LOCK) is None
    os.close(fd)
    assert not spool.serve_running()
    assert stat.S_IMODE((tmp_path / "serve.lock").stat().st_mode) == 0o660
    assert spool.try_lock(DELIVER_LOCK) is not None


def test_wake_fifo(tmp_path):
    spool = Spool(tmp_path).ensure()
    spool.wake()  # nobody listens: nothing happens
    reader, keeper = spool.open_wake_fifo()
    try:
        spool.wake()
        assert os.read(reader, 10) == b"!"
        Spool.drain_wake_fifo(reader)  # empty: returns at once
    finally:
        os.close(reader)
        os.close(keeper)


def test_stale_temp_files_are_removed(tmp_path):
    spool = Spool(tmp_path)
    old = tmp_path / ".tmp-old"
    old.write_text("x")
    os.utime(old, (1, 1))
    new = tmp_path / ".tmp-new"
    new.write_text("x")
    spool.remove_stale_temp()
    assert not old.exists() and new.exists()


# -- bursts and digests ---------------------------------------------------------------------


def test_bursts_per_recipient():
    es = [
        entry("a@x", 100.0, n=1), entry("b@x", 100.1, n=2), entry("a@x", 101.0, n=3),
        entry("a@x", 103.5, n=4),  # more than the 2 s window after the previous one
        entry("a@x", 103.6, subject="Other", n=5),  # another subject: another message
    ]
    got = [(b.recipient, b.subject, [e.body for e in b.entries], b.ready_at)
           for b in batches(es, 2.0, 60.0)]
    assert [(r, s, len(x), t) for r, s, x, t in got] == [
        ("a@x", "S", 2, 103.0), ("b@x", "S", 1, 102.1), ("a@x", "S", 1, 105.5),
        ("a@x", "Other", 1, 105.6),
    ]


def test_long_burst_is_cut_at_max_wait():
    es = [entry("a@x", 100.0 + i, n=i) for i in range(10)]
    sizes = [len(b.entries) for b in batches(es, 2.0, 4.0)]
    assert sizes == [5, 5]


def test_no_coalescing_with_zero_window():
    es = [entry("a@x", 100.0, n=i) for i in range(3)]
    assert [len(b.entries) for b in batches(es, 0.0, 60.0)] == [1, 1, 1]


def test_queued_messages_are_ready_at_once():
    es = [entry("a@x", 100.0, attempts=1, reason="dnd", n=1),
          entry("a@x", 100.5, attempts=1, reason="dnd", n=2)]
    [batch] = batches(es, 2.0, 60.0)
    assert batch.ready_at == 0.0
    es.append(entry("a@x", 101.0, n=3))  # a fresh one joins: wait for the burst to end
    [batch] = batches(es, 2.0, 60.0)
    assert batch.ready_at == 103.0


def test_render_single_and_digest():
    fmt = lambda ts: f"T{ts:g}"  # noqa: E731
    [single] = render(batches([entry(body="one")], 2, 60)[0], 10_000, fmt)
    assert single == Digest("S", "one", (entry().id,))
    es = [entry(body="proj a.txt\n---\nBy bob", n=1),
          entry(created=1000.5, body="proj b.txt", attempts=2, reason="dnd (resource desk)", n=2)]
    [digest] = render(batches(es, 2, 60)[0], 10_000, fmt)
    assert digest.subject == "S (2 notifications)"
    assert digest.body == "[1/2]\nproj a.txt\n---\nBy bob\n\n[2/2] queued T1000.5: dnd\nproj b.txt"
    assert digest.ids == tuple(e.id for e in es)
    late = entry(body="x", attempts=1, reason="cannot connect")
    assert render(batches([late], 2, 60)[0], 10_000, fmt)[0].body == (
        "x\n\n[queued T1000]")  # an error text is the administrator's, never the reader's
    assert late_note(entry()) == ""


def test_render_splits_digests_to_fit():
    es = [entry(created=1000 + i / 10, body="x" * 300, n=i) for i in range(10)]
    digests = render(batches(es, 2, 60)[0], 1000, lambda ts: "")
    assert [len(d.ids) for d in digests] == [3, 3, 3, 1]
    assert all(len(d.body) <= 1000 for d in digests)
    assert [i for d in digests for i in d.ids] == [e.id for e in es]  # all, in order
    assert digests[-1].subject == "S" and digests[0].subject == "S (3 notifications)"
    huge = [entry(body="y" * 5000, n=1), entry(created=1000.1, body="z", n=2)]
    assert [len(d.ids) for d in render(batches(huge, 2, 60)[0], 1000)] == [1, 1]


# -- the parsed-config cache (hand-off start-up) ----------------------------------------------


def test_config_cache_is_used_only_while_the_file_is_unchanged(tmp_path, monkeypatch):
    import marshal

    from cvsmsg import tomlcache

    config = tmp_path / "c.toml"
    config.write_text('jid = "a@x"\npassword_file = "secret"\nsubject = "one"\n')
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert tomlcache.load_toml(config, env)["subject"] == "one"
    found = tomlcache.cache_file(config, env)
    assert found is not None
    cached = Path(found)
    assert cached.parent == tmp_path / "cache" / "cvsmsg"
    assert stat.S_IMODE(cached.stat().st_mode) == 0o600
    assert stat.S_IMODE(cached.parent.stat().st_mode) == 0o700
    # a hit does not parse: prove it by planting a different value under the same identity
    identity, data = marshal.loads(cached.read_bytes())
    cached.write_bytes(marshal.dumps((identity, {**data, "subject": "from cache"})))
    assert tomlcache.load_toml(config, env)["subject"] == "from cache"
    # any change of the file (even the same size) is a miss
    config.write_text(config.read_text().replace("one", "two"))
    assert tomlcache.load_toml(config, env)["subject"] == "two"
    # a cache file others could have written is ignored
    identity, data = marshal.loads(cached.read_bytes())
    cached.write_bytes(marshal.dumps((identity, {**data, "subject": "planted"})))
    cached.chmod(0o620)
    assert tomlcache.load_toml(config, env)["subject"] == "two"


def test_config_cache_never_copies_an_inline_password(tmp_path):
    from cvsmsg import tomlcache

    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    config = write(tmp_path / "c.toml", 'subject = "one"\n')  # holds password = "p"
    assert tomlcache.load_toml(config, env)["password"] == "p"
    cached = tomlcache.cache_file(config, env)
    assert cached is not None and not Path(cached).exists()


def test_config_cache_needs_no_home_and_keeps_errors(tmp_path):
    from cvsmsg import tomlcache

    config = write(tmp_path / "c.toml", "")
    assert tomlcache.cache_file(config, {}) is None
    assert tomlcache.load_toml(config, {})["jid"] == "a@x"
    bad = tmp_path / "bad.toml"
    bad.write_text("jid = ")
    bad.chmod(0o600)
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(bad, env={"XDG_CACHE_HOME": str(tmp_path / "cache")})


def test_drainer_forgets_messages_that_are_gone(tmp_path):
    """serve runs for months: what it remembers must not grow with every message."""
    from cvsmsg.drain import Drainer

    cfg = load_config(write(tmp_path / "c.toml", ""), env={})
    spool = Spool(tmp_path / "spool")
    first, second = spool.add("a@x", "s", "1"), spool.add("a@x", "s", "2")
    drainer = Drainer(cfg, spool)
    assert drainer.refresh() == [first.id, second.id]
    assert drainer.refresh() == [] and not drainer.unseen()
    spool.drop(first.id)
    third = spool.add("a@x", "s", "3")
    assert drainer.unseen()
    assert drainer.refresh() == [third.id]
    assert drainer.seen == {second.id, third.id}
    assert list(drainer.pending) == [second.id, third.id]


def test_reading_a_message_asks_for_about_its_size(tmp_path, monkeypatch):
    """serve reads every message twice: a fixed 1 MiB request per read (allocated before
    the read, then shrunk) grew its heap ~1 MB every ~9,000 messages. A read asks for
    the file's size + 1 at most; a message bigger than one chunk is still read whole."""
    import cvsmsg.spool as spool_module

    asked: list[int] = []
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        asked.append(n)
        return real_read(fd, n)

    spool = Spool(tmp_path)
    small = spool.add("a@x", "s", "a short notification")
    big = spool.add("a@x", "s", "x" * (spool_module.READ_CHUNK * 2 + 10))
    monkeypatch.setattr(spool_module.os, "read", read)
    assert spool.read(small.id) == small
    size = spool.file_of(small.id).stat().st_size
    assert asked and max(asked) == size + 1
    asked.clear()
    assert spool.read(big.id) == big
    assert max(asked) == spool_module.READ_CHUNK
    asked.clear()
    claim = spool.claim(small.id)
    assert claim is not None and claim.entry == small
    claim.release()
    assert max(asked) == size + 1


def test_delivering_a_message_makes_no_path_of_its_name(tmp_path, monkeypatch):
    """Python 3.11's pathlib interns every part of a path: a Path per message file made
    serve's interned-string table grow after its first thousand deliveries. Reading,
    claiming, rewriting and removing a message must not build one."""
    import sys

    spool = Spool(tmp_path)
    e = spool.add("a@x", "s", "body")
    interned: list[str] = []
    real_intern = sys.intern

    def intern(text: str) -> str:
        interned.append(text)
        return real_intern(text)

    monkeypatch.setattr(sys, "intern", intern)
    assert spool.read(e.id) == e
    claim = spool.claim(e.id)
    assert claim is not None
    again = claim.update(attempts=1)
    claim.release()
    claim = spool.claim(again.id)
    assert claim is not None
    claim.remove()
    claim.release()
    assert spool.ids() == []
    assert not [s for s in interned if e.id in s or again.id in s]
    spool.file_of(e.id)  # the Path API (for people and tests) still interns: the check works
    assert [s for s in interned if e.id in s] == [f"{e.id}.msg"]


def test_a_spool_named_with_a_trailing_slash_is_created_shared(tmp_path):
    """`/srv/spool/` is the spool itself: created setgid, sticky and group-writable, never
    by the making of its parent."""
    spool = Spool(f"{tmp_path}/q/", shared=True).ensure()
    assert spool.directory == f"{tmp_path}/q"
    assert stat.S_IMODE((tmp_path / "q").stat().st_mode) == 0o3770
