"""What arrives, without a network: late notes a recipient may read, the <delay> stamp,
a commit watch beside the commit message, the new keys."""

from __future__ import annotations

import calendar
import time

import pytest
from slixmpp import Message
from slixmpp.plugins.xep_0203 import stanza as delay_stanza
from slixmpp.xmlstream import register_stanza_plugin

from cvsmsg.config import LoginfoRule, load_config
from cvsmsg.cvs import WatchNotice, notice_directory, parse_notify
from cvsmsg.digest import batches, late_note, made, render
from cvsmsg.errors import ConfigError
from cvsmsg.loginfo import commit_message_followers, route, route_why
from cvsmsg.policy import PresenceView, decide, shown_reason
from cvsmsg.xmpp import delay_stamp
from tests.test_spool_units import entry

DND = frozenset({"dnd", "away"})


@pytest.mark.parametrize(("view", "shown"), [
    (PresenceView({}), "offline"),
    (PresenceView({}, visible=False), "presence not shared"),
    (PresenceView({"desk": "dnd"}), "dnd"),
    (PresenceView({"phone": "away", "desk": ""}), "away"),
    (PresenceView({"desk": ""}, negative_priority=frozenset({"desk"})), "negative priority"),
])
def test_every_reason_the_gate_gives_has_a_short_word(view, shown):
    decision = decide(view, DND)
    assert not decision.deliver
    assert shown_reason(decision.reason) == shown
    assert shown_reason(decision.reason + "; asked a@x to share presence") == shown


@pytest.mark.parametrize("error", [
    "authentication failed for nosuchbot@example.org",
    "cannot connect to 127.0.0.1:1: Connection refused",
    "refused 4 times: the server closed the stream (policy-violation)",
    "offline-ish: something the gate never says",
    "timed out after 10 s waiting for the server to confirm",
    "",
])
def test_an_error_text_is_never_shown(error):
    assert shown_reason(error) == ""
    late = entry(body="x", attempts=3, reason=error)
    assert late_note(late, lambda ts: "T") == "queued T"
    [single] = render(batches([late], 2, 60)[0], 10_000, lambda ts: "T")
    assert single.body == "x\n\n[queued T]"


def test_late_notes_can_be_turned_off():
    es = [entry(body="a", attempts=1, reason="offline", n=1),
          entry(created=1000.5, body="b", attempts=2, reason="dnd (resource desk)", n=2)]
    [digest] = render(batches(es, 2, 60)[0], 10_000, None)
    assert digest.body == "[1/2]\na\n\n[2/2]\nb"
    [single] = render(batches([es[0]], 2, 60)[0], 10_000, None)
    assert single.body == "a"
    assert late_note(es[0], None) == ""


def test_the_stamp_is_the_oldest_late_notification():
    fresh = [entry(created=1000.0, body="a", n=1), entry(created=1001.0, body="b", n=2)]
    assert made(fresh) is None  # nothing late: no <delay>
    [digest] = render(batches(fresh, 2, 60)[0], 10_000)
    assert digest.made is None
    mixed = [entry(created=1000.0, body="a", n=1),
             entry(created=1001.0, body="b", attempts=1, reason="offline", n=2)]
    [digest] = render(batches(mixed, 2, 60)[0], 10_000)
    assert digest.made == 1000.0  # the oldest of the digest, even the fresh one
    [single] = render(batches([mixed[1]], 2, 60)[0], 10_000)
    assert single.made == 1001.0


def test_delay_stamp_is_xep_0082_utc_to_the_second():
    ts = calendar.timegm((2026, 12, 4, 10, 0, 5)) + 0.75
    assert delay_stamp(ts) == "2026-12-04T10:00:05Z"
    assert abs(calendar.timegm(time.strptime(delay_stamp(time.time()), "%Y-%m-%dT%H:%M:%SZ"))
               - time.time()) <= 1


def test_slixmpp_delay_plugin_writes_what_xep_0203_says():
    """What `XmppSession.send` relies on: slixmpp's xep_0203 stanza plugin puts the
    stamp and from we give it, unchanged, on <delay xmlns='urn:xmpp:delay'/>."""
    register_stanza_plugin(Message, delay_stanza.Delay)
    msg = Message()
    msg["delay"]["stamp"] = "2026-12-04T10:00:05Z"
    msg["delay"]["from"] = "bot@example.org"
    element = msg.xml.find("{urn:xmpp:delay}delay")
    assert element is not None
    assert dict(element.attrib) == {"stamp": "2026-12-04T10:00:05Z", "from": "bot@example.org"}
    assert (element.text or "") == ""


# -- a commit watch and the commit message ----------------------------------------------------


def notice_of(first_line: str, repository: str, kind: str = "commit") -> WatchNotice:
    notice = parse_notify(f"{first_line}\n---\nTriggered {kind} watch on {repository}\nBy bob\n")
    assert notice is not None
    return notice


def test_notice_directory_even_with_spaces():
    assert notice_directory(notice_of("proj a.txt", "/srv/cvs/proj")) == "proj"
    assert notice_directory(notice_of("proj/sub s t.txt", "/srv/cvs/proj/sub")) == "proj/sub"
    assert notice_directory(notice_of("my proj/x y.txt", "/srv/cvs/my proj/x")) == "my proj/x"
    assert notice_directory(notice_of("proj a.txt", "elsewhere")) == "proj"  # best effort


RULES = (LoginfoRule("^lib", ("erin@x",)), LoginfoRule("^proj(/|$)", ("alice@x", "bob@x")),
         LoginfoRule("ALL", ("dave@x",)))


@pytest.mark.parametrize("kind", ["commit", "temporary commit"])
def test_followers_of_the_directory_are_left_to_the_commit_message(kind):
    notice = notice_of("proj/sub a.txt", "/srv/cvs/proj/sub", kind)
    skipped = commit_message_followers(notice, ["Alice@X", "carol@x", "dave", "bad@@"],
                                       RULES, "x")
    assert skipped == {
        "Alice@X": "follows proj/sub through [[loginfo]] rule 2 (match ^proj(/|$)); "
                   "commit_watch_for_followers = false",
        "dave": "follows proj/sub through [[loginfo]] rule 3 (match ALL); "
                "commit_watch_for_followers = false",
    }


def test_only_commit_watches_are_left_out():
    for kind in ("edit", "unedit"):
        assert commit_message_followers(notice_of("proj a.txt", "/cvs/proj", kind),
                                        ["alice@x"], RULES, None) == {}
    assert commit_message_followers(None, ["alice@x"], RULES, None) == {}


def test_route_why_names_the_first_rule():
    assert route_why("proj", RULES) == {"alice@x": 2, "bob@x": 2, "dave@x": 3}
    assert route_why("lib/x", RULES) == {"erin@x": 1, "dave@x": 3}
    assert route("proj", RULES) == ["alice@x", "bob@x", "dave@x"]


def test_config_keys(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('jid = "a@x"\npassword = "p"\n')
    path.chmod(0o600)
    cfg = load_config(path, {})
    assert (cfg.late_note, cfg.commit_watch_for_followers) == (True, True)
    path.write_text('jid = "a@x"\npassword = "p"\nlate_note = false\n'
                    "commit_watch_for_followers = false\n")
    cfg = load_config(path, {})
    assert (cfg.late_note, cfg.commit_watch_for_followers) == (False, False)
    path.write_text('jid = "a@x"\npassword = "p"\nlate_note = "no"\n')
    with pytest.raises(ConfigError, match=r"'late_note' must be a bool"):
        load_config(path, {})
