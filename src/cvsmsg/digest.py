"""Pure: which spooled messages go out together, and the digest text that lists them.

CVS runs the notify command once per watcher and file: a 100-file commit hands 100
messages for each watcher to the spool within seconds. Messages for the same recipient
(with the same subject and type) that follow each other by at most `window` seconds form
one burst, sent as one digest once the burst has been quiet for `window` seconds (or has
lasted `max_wait`, so a never-ending stream still goes out), or as soon as every CVS
process that dropped it has exited (no more is coming from them). Messages that were already
queued (withheld or failed before) are not held back again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from cvsmsg.message import wire_size
from cvsmsg.policy import shown_reason
from cvsmsg.spool import Entry

# After a refusal a digest holds at most this many notifications, a quarter as many after
# each further one (64, 16, 4, then alone): a notification the server never takes is found
# in a few refusals, while the others still go out as digests.
REFUSED_DIGEST = 64


def most_together(refused: int) -> int | None:
    """How many notifications refused `refused` times may share a digest (None: any)."""
    if refused <= 0:
        return None
    return max(REFUSED_DIGEST >> min(2 * (refused - 1), 16), 1)


def refused_level(refused: int, together: int) -> int:
    """The refusal count of each notification of a refused digest of `together`: high
    enough that the retry splits it (a refused digest of 3 goes alone at once)."""
    level = refused + 1
    while together > 1 and (most_together(level) or together) >= together:
        level += 1
    return level


@dataclass(frozen=True)
class Batch:
    """Messages for one recipient that go out together, oldest first."""

    recipient: str
    subject: str
    type: str
    entries: tuple[Entry, ...]
    ready_at: float  # when the burst is over and the batch may be sent

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)


@dataclass(frozen=True)
class Digest:
    """One message to send (split into stanza-sized parts by the caller if needed)."""

    subject: str
    body: str
    ids: tuple[str, ...]
    # When the notification was made (the oldest, for a digest), if any of it comes late:
    # the XEP-0203 <delay> stamp. None for fresh ones.
    made: float | None = None


def batches(
    entries: Iterable[Entry], window: float, max_wait: float,
    seen_at: Mapping[str, float] | None = None, over: Collection[str] = (),
) -> list[Batch]:
    """Group into bursts per (recipient, subject, type); `window` <= 0 never coalesces.
    `seen_at`: when the caller first saw each message; readiness counts from the earlier
    of that and its `time`, so a writer's clock that was ahead delays nothing. `over`:
    the dropping CVS processes (Entry.dropper) known to have exited."""
    runs: dict[tuple[str, str, str, int], list[list[Entry]]] = {}
    for entry in sorted(entries, key=lambda e: e.id):
        # refused notifications go together only with others refused as often, fewer each time
        key = (entry.recipient, entry.subject, entry.type, entry.refused)
        group = runs.setdefault(key, [])
        most = most_together(entry.refused)
        if entry.sent or most == 1:
            # the server has part of it, or refused it too often: it goes alone
            group += [[entry], []]
            continue
        if (
            group and group[-1] and window > 0
            and (most is None or len(group[-1]) < most)
            and entry.created - group[-1][-1].created <= window
            and entry.created - group[-1][0].created <= max_wait
        ):
            group[-1].append(entry)
        else:
            group.append([entry])
    result = [
        Batch(key[0], key[1], key[2], tuple(run),
              _ready_at(run, window, max_wait, seen_at or {}, over))
        for key, group in runs.items()
        for run in group
        if run
    ]
    return sorted(result, key=lambda b: b.entries[0].id)


def _ready_at(
    run: list[Entry], window: float, max_wait: float, seen_at: Mapping[str, float],
    over: Collection[str],
) -> float:
    """The burst is over once its newest fresh message is `window` old, or once every CVS
    process that dropped it has exited; messages already queued (withheld before, or
    failed) were held long enough: they are ready now."""
    fresh = [e for e in run if not e.queued]
    if not fresh:
        return 0.0

    def when(entry: Entry) -> float:
        return min(entry.created, seen_at.get(entry.id, entry.created))

    if all(e.dropper and e.dropper in over for e in fresh):
        return when(fresh[-1])
    return min(when(fresh[-1]) + max(window, 0.0), when(fresh[0]) + max_wait)


def local_time(ts: float) -> str:
    """`2024-05-01 14:03:07 +0200`: when a late message was first queued."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(ts))


def late_note(entry: Entry, fmt: Callable[[float], str] | None = local_time) -> str:
    """Why a message comes late (empty for a fresh one, or when `fmt` is None: notes
    turned off): the reader should not take a notification held for hours for something
    that just happened. Only the gate's short word (see `shown_reason`), never an error."""
    if not entry.queued or fmt is None:
        return ""
    why = shown_reason(entry.reason)
    return f"queued {fmt(entry.created)}: {why}" if why else f"queued {fmt(entry.created)}"


def made(entries: Iterable[Entry]) -> float | None:
    """The <delay> stamp for these notifications: the oldest one's time, when any of
    them comes late (withheld or failed before); None when all are fresh."""
    entries = list(entries)
    if not any(e.queued for e in entries):
        return None
    return min(e.created for e in entries)


def render(
    batch: Batch, budget: int, fmt: Callable[[float], str] | None = local_time
) -> list[Digest]:
    """The messages for a batch: the message itself when alone, else digests listing each
    notification in order (`[i/n]` headers), each digest within `budget` wire bytes.
    `fmt` None leaves the `queued …` notes out (config `late_note = false`).

    A notification that does not fit `budget` on its own goes out alone, to be split into
    numbered parts like any long message.
    """
    entries = list(batch.entries)
    if len(entries) == 1:
        return [_single(entries[0], fmt)]
    header_room = 2 * len(str(len(entries))) + 8  # "[nn/nn]" + separators
    chunks: list[list[Entry]] = []
    size = 0
    for entry in entries:
        cost = wire_size(entry.body) + wire_size(late_note(entry, fmt)) + header_room
        if cost > budget:
            chunks.append([entry])  # alone; the caller splits it
            size = budget + 1  # nothing joins it
            continue
        if chunks and size + cost <= budget:
            chunks[-1].append(entry)
            size += cost
        else:
            chunks.append([entry])
            size = cost
    digests = []
    for chunk in chunks:
        if len(chunk) == 1:
            digests.append(_single(chunk[0], fmt))
            continue
        n = len(chunk)
        blocks = []
        for i, entry in enumerate(chunk, 1):
            note = late_note(entry, fmt)
            head = f"[{i}/{n}]" + (f" {note}" if note else "")
            blocks.append(f"{head}\n{entry.body}")
        digests.append(Digest(f"{batch.subject} ({n} notifications)", "\n\n".join(blocks),
                              tuple(e.id for e in chunk), made(chunk)))
    return digests


def _single(entry: Entry, fmt: Callable[[float], str] | None) -> Digest:
    """One message; when the server already has its beginning, the rest of it."""
    note = late_note(entry, fmt)
    text = entry.body[entry.sent:]
    body = f"{text}\n\n[{note}]" if note else text
    subject = f"{entry.subject} (continued)" if entry.sent else entry.subject
    return Digest(subject, body, (entry.id,), made([entry]))
