"""What a delivery run tells its caller: one Outcome per recipient, and the exit status
they add up to. Pure data, shared by the hand-off and the direct delivery."""

from __future__ import annotations

from dataclasses import dataclass

from cvsmsg.status import ExitStatus


@dataclass(frozen=True)
class Outcome:
    """What happened for one recipient, as the CLI reports it."""

    recipient: str
    delivered: bool
    reason: str
    failed: bool = False  # invalid address or rejected by the server
    handed_off: bool = False  # written to the spool for the deliverer or `cvsmsg serve`


@dataclass(frozen=True)
class Report:
    outcomes: list[Outcome]

    @property
    def status(self) -> ExitStatus:
        """Failures outrank withholding; 0 only when everyone got it (or the spool has it)."""
        if any(o.failed for o in self.outcomes):
            return ExitStatus.RECIPIENT
        if any(not o.delivered and not o.handed_off for o in self.outcomes):
            return ExitStatus.WITHHELD
        return ExitStatus.OK
