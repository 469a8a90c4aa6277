"""What a delivery run tells its caller (one Outcome per recipient, and the exit status
they add up to) and every line a run prints about its recipients and its queue.

`notify` and `loginfo` report on stderr (under client/server CVS stdout is the CVS
protocol); `flush` and `queue` print their results on stdout.
"""

from __future__ import annotations

from cvsmsg.logs import get_logger
from cvsmsg.record import Record
from cvsmsg.status import ExitStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import TextIO

    from cvsmsg.config import Config
    from cvsmsg.drain import DrainStats
    from cvsmsg.spool import Entry, Spool

log = get_logger("cvsmsg")


class Outcome(Record):
    """What happened for one recipient, as the CLI reports it."""

    recipient: str
    delivered: bool
    reason: str
    failed: bool = False  # invalid address or rejected by the server
    handed_off: bool = False  # written to the spool for the deliverer or `cvsmsg serve`
    room: bool = False  # a group-chat room (failed: it could not be joined; queued)
    earlier: bool = False  # messages queued by earlier runs, not this run's message


class Report(Record):
    outcomes: list[Outcome]

    @property
    def status(self) -> ExitStatus:
        """Failures outrank withholding; 0 only when everyone got it (or the spool has it)."""
        if any(o.failed and not o.room for o in self.outcomes):
            return ExitStatus.RECIPIENT
        if any(o.failed for o in self.outcomes):
            return ExitStatus.ROOM
        if any(not o.delivered and not o.handed_off for o in self.outcomes):
            return ExitStatus.WITHHELD
        return ExitStatus.OK


def print_report(report: Report, quiet: bool, err: TextIO, label: str = "") -> ExitStatus:
    """One line per recipient on stderr (failures even with -q); the run's exit code.
    `label` says which message this run's lines are about: `delivered (commit) to X`
    (loginfo) and `delivered (watch) to X` (a commit watch) tell the two apart."""
    for outcome in report.outcomes:
        if outcome.failed:
            log.error("error: %s", outcome.reason)
        elif not quiet:
            verb, prep = ("delivered", "to") if outcome.delivered else ("withheld", "from")
            if outcome.handed_off:
                verb, prep = "queued", "for"
            if label and not outcome.earlier:
                verb += f" ({label})"
            if outcome.room:
                prep += " room"
            reason = f": {outcome.reason}" if outcome.reason else ""
            err.write(f"cvsmsg: {verb} {prep} {outcome.recipient}{reason}\n")
    err.flush()
    return report.status


def print_skipped(skipped: Mapping[str, str], label: str, quiet: bool, err: TextIO) -> None:
    """`cvsmsg: skipped (watch) for X: why`: recipients this run leaves out on purpose."""
    if not quiet:
        for value, why in skipped.items():
            err.write(f"cvsmsg: skipped ({label}) for {value}: {why}\n")
        err.flush()


def print_flush(stats: DrainStats, out: TextIO) -> None:
    """`cvsmsg flush`: who got how many notifications, and who still waits."""
    for jid, n in stats.delivered.items():
        out.write(f"delivered to {jid}: {n} notification{'s' if n != 1 else ''}\n")
    for jid, reason in stats.withheld.items():
        out.write(f"still queued for {jid}: {reason}\n")


def print_dropped(entry: Entry, out: TextIO) -> None:
    out.write(f"dropped {shown(entry.id)} for {shown(entry.recipient)}\n")


def print_queue(spool: Spool, out: TextIO, now: float) -> None:
    """`cvsmsg queue`: a table of the waiting messages, then who is delivering them."""
    from cvsmsg.spool import BAD_SUFFIX, DELIVER_LOCK, SERVE_LOCK

    entries = spool.entries()
    if entries:
        rows = [("ID", "RECIPIENT", "AGE", "ATTEMPTS", "REASON")]
        for e in entries:
            reason = e.reason or "waiting for delivery"
            rows.append((shown(e.id), shown(e.recipient), age(now - e.created),
                         str(e.attempts), shown(reason)))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for r in rows:
            out.write("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True))
                      + "  " + r[4] + "\n")
        noun = "message" if len(entries) == 1 else "messages"
        out.write(f"{len(entries)} {noun} queued in {spool.path}\n")
    else:
        out.write(f"no messages queued in {spool.path}\n")
    bad = sorted(spool.path.glob(f"*{BAD_SUFFIX}")) if spool.exists() else []
    if bad:
        names = ", ".join(shown(p.name) for p in bad)
        out.write(f"{len(bad)} file(s) set aside, never sent: {names}\n")
    serve_pid = spool.holder(SERVE_LOCK) if spool.serve_running() else None
    if serve_pid:
        out.write(f"cvsmsg serve is running (pid {serve_pid})\n")
    elif (pid := spool.holder(DELIVER_LOCK)) is not None:
        out.write(f"the background deliverer is running (pid {pid})\n")


def age(seconds: float) -> str:
    """3d, 5h, 12m, 40s: the largest whole unit."""
    from cvsmsg.config import format_duration

    return format_duration(seconds, exact=False)


def shown(text: str) -> str:
    """Text from the spool (file names, headers: anyone in the group wrote them) as safe to
    print on a terminal: every non-printable character as its escape (ESC → `\\x1b`)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def print_preview(cfg: Config, values: list[str], why: Mapping[str, str], subject: str,
                  text: str, out: TextIO, skipped: Mapping[str, str] | None = None) -> ExitStatus:
    """--dry-run: to whom (and why each one), when, and the message itself, on stdout;
    exit 7 when a recipient is invalid, as the real run would."""
    from cvsmsg.message import split_message
    from cvsmsg.recipients import resolve_recipients

    out.write("dry run: nothing sent, nothing queued\n")
    seen: set[str] = set()
    status = ExitStatus.OK
    for value in values:
        valid, invalid = resolve_recipients([value], cfg.default_domain, cfg.jid)
        for outcome in invalid:
            out.write(f"invalid {outcome.recipient}: {outcome.reason}\n")
            status = ExitStatus.RECIPIENT
        for jid in valid:
            if jid not in seen:
                seen.add(jid)
                out.write(f"to {jid}: {why.get(value, 'given on the command line')}\n")
    for value, reason in (skipped or {}).items():
        out.write(f"skipped {value}: {reason}\n")
    gate = " or ".join(sorted(cfg.withhold_show))
    later = "queued" if cfg.withheld == "queue" else "dropped"
    out.write(f"when: at once to each one available{f' and not {gate}' if gate else ''}; "
              f"{later} for the others\n")
    parts = split_message(subject, text, cfg.max_stanza_bytes, cfg.max_parts)
    out.write(f"subject: {subject}\ntype: {cfg.message_type}\n")
    if len(parts) > 1:
        out.write(f"parts: {len(parts)} (max_stanza_bytes = {cfg.max_stanza_bytes})\n")
    out.write(f"\n{text}\n")
    out.flush()
    return status
