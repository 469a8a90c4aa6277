"""The decision at the heart of cvsmsg: deliver now, or withhold. Pure, no network."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from types import MappingProxyType

from cvsmsg.config import SHOW_VALUES
from cvsmsg.record import Record


class PresenceView(Record):
    """What the session knows about one recipient when it decides.

    `resources` maps each available resource to its `show` ('' for plain available).
    `visible` is False when we hold no presence subscription to them, so silence
    means "cannot see", not "offline".
    """

    resources: Mapping[str, str] = MappingProxyType({})
    visible: bool = True
    # Resources with a negative priority: RFC 6121 §8.5.2.1 keeps messages to the bare
    # JID from them, so they do not count as "available" for delivery.
    negative_priority: frozenset[str] = frozenset()


class Decision(Record):
    deliver: bool
    reason: str


# Why `decide` withholds (the administrator's words), and what a recipient may read of it.
OFFLINE = "offline"
NOT_VISIBLE = "presence not visible (no subscription to their presence)"
NEGATIVE_ONLY = "online only with negative priority (cannot receive messages)"
_SHOWN = ((OFFLINE, "offline"), (NOT_VISIBLE, "presence not shared"),
          (NEGATIVE_ONLY, "negative priority"))
_WITHHELD_SHOW = re.compile(rf"({'|'.join(SHOW_VALUES)}) \(resource ")


def shown_reason(reason: str) -> str:
    """The gate's short word for why a queued message waited ("offline", "dnd", ...), for
    the recipient's eyes; "" for anything else: an error text (a failed login, a refused
    stanza) is the administrator's business and never goes into a message."""
    for said, shown in _SHOWN:
        if reason == said or reason.startswith(said + ";"):
            return shown
    match = _WITHHELD_SHOW.match(reason)
    return match[1] if match else ""


def decide(view: PresenceView, withhold_show: frozenset[str]) -> Decision:
    """Deliver only to someone with an available resource and no resource in a withheld show.

    An explicit `dnd` on any resource wins over availability elsewhere: the person asked
    not to be disturbed, and we cannot know which device they are looking at.
    """
    if not view.resources:
        if not view.visible:
            return Decision(False, NOT_VISIBLE)
        return Decision(False, OFFLINE)
    blocking = sorted(
        (res, show) for res, show in view.resources.items() if show in withhold_show
    )
    if blocking:
        res, show = blocking[0]
        return Decision(False, f"{show} (resource {res or '(bare)'})")
    reachable = [res for res in view.resources if res not in view.negative_priority]
    if not reachable:
        return Decision(False, NEGATIVE_ONLY)
    shows = sorted({view.resources[res] or "available" for res in reachable})
    return Decision(True, ", ".join(shows))


# -- who may subscribe to the bot's presence -----------------------------------------------


class Verdict(Record):
    """Accept a presence subscription request, or refuse it, and why."""

    accept: bool
    reason: str
    roster_full: bool = False  # the administrator's problem, not the requester's


def subscriber_allowed(jid: str, subscribers: Iterable[str]) -> bool:
    """True when the bare `jid` is listed, its domain is, or the list holds "*"."""
    jid = jid.lower()
    local, _, domain = jid.rpartition("@")
    # A domain entry covers the users at that domain, not the server (or a component).
    return any(entry == "*" or (local and entry in (jid, domain)) for entry in subscribers)


def subscription_verdict(
    jid: str,
    subscribers: Sequence[str],
    *,
    recipient: bool = False,
    in_roster: bool = False,
    roster_size: int = 0,
    max_roster: int = 500,
) -> Verdict:
    """Decide on `jid`'s request to see the bot's presence.

    A contact already in the roster costs nothing more: accepted. A recipient cvsmsg is
    configured or asked to notify needs the subscription for the gate: accepted whatever
    `subscribers` says. Anyone else must match `subscribers`. Nobody new gets in once the
    roster holds `max_roster` contacts.
    """
    if in_roster:
        return Verdict(True, "already a contact")
    if not recipient and not subscriber_allowed(jid, subscribers):
        allowed = ", ".join(subscribers) if subscribers else "nobody"
        return Verdict(False, f"not in subscribers ({allowed})")
    if roster_size >= max_roster:
        return Verdict(
            False,
            f"the roster is full (max_roster = {max_roster}); raise max_roster or remove "
            "contacts",
            roster_full=True,
        )
    return Verdict(True, "a recipient" if recipient else "allowed by subscribers")


class SubscriptionPolicy(Record):
    """Who may subscribe to the bot's presence, made once per session from the config and
    the run's recipients; every path's session answers requests through `verdict`."""

    subscribers: tuple[str, ...]
    max_roster: int
    recipients: frozenset[str]  # this run's and the [[loginfo]] rules', lower-cased

    def verdict(self, jid: str, contacts: Collection[str], *, asked: bool = False) -> Verdict:
        """Accept or refuse `jid`, given the bare JIDs already in the roster; `asked`: the
        session asked them to share presence, which makes them a recipient too."""
        return subscription_verdict(
            jid, self.subscribers, recipient=asked or jid.lower() in self.recipients,
            in_roster=jid in contacts, roster_size=len(contacts), max_roster=self.max_roster,
        )


class SessionPlan(Record):
    """How one session behaves towards others: the subscription policy, whether it sends
    initial presence (announces) or stays quiet and probes, and the bound on each step.
    Every field is required: no path gets a session without choosing them (sessions.py)."""

    policy: SubscriptionPolicy
    announce: bool
    step_timeout: float
    # Called once the session has announced (the spool's stamp), never before: a run that
    # fails to log in must not make the others believe stored requests were answered.
    announced: Callable[[], None]


# A stamp this far ahead of our clock was not written by an honest clock: ignore it.
STAMP_SKEW = 5.0


def announce_due(last: float | None, now: float, interval: float) -> bool:
    """True when no run has announced within `interval` seconds before `now`.

    Never announced (None), an unreadable time, or one in the future (a clock that was
    ahead, or a forged stamp) all count as due: a stored subscription request must not
    wait longer than the interval because of a stamp we cannot believe.
    """
    if last is None or not math.isfinite(last) or last > now + STAMP_SKEW:
        return True
    return now - last >= interval
