"""The decision at the heart of cvsmsg: deliver now, or withhold. Pure, no network."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PresenceView:
    """What the session knows about one recipient when it decides.

    `resources` maps each available resource to its `show` ('' for plain available).
    `visible` is False when we hold no presence subscription to them, so silence
    means "cannot see", not "offline".
    """

    resources: Mapping[str, str] = field(default_factory=dict)
    visible: bool = True
    # Resources with a negative priority: RFC 6121 §8.5.2.1 keeps messages to the bare
    # JID from them, so they do not count as "available" for delivery.
    negative_priority: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Decision:
    deliver: bool
    reason: str


def decide(view: PresenceView, withhold_show: frozenset[str]) -> Decision:
    """Deliver only to someone with an available resource and no resource in a withheld show.

    An explicit `dnd` on any resource wins over availability elsewhere: the person asked
    not to be disturbed, and we cannot know which device they are looking at.
    """
    if not view.resources:
        if not view.visible:
            return Decision(False, "presence not visible (no subscription to their presence)")
        return Decision(False, "offline")
    blocking = sorted(
        (res, show) for res, show in view.resources.items() if show in withhold_show
    )
    if blocking:
        res, show = blocking[0]
        return Decision(False, f"{show} (resource {res or '(bare)'})")
    reachable = [res for res in view.resources if res not in view.negative_priority]
    if not reachable:
        return Decision(False, "online only with negative priority (cannot receive messages)")
    shows = sorted({view.resources[res] or "available" for res in reachable})
    return Decision(True, ", ".join(shows))
