"""Pure parsing of the text CVS pipes to a CVSROOT/notify command."""

from __future__ import annotations

from cvsmsg.record import Record


class WatchNotice(Record):
    """What a `CVSROOT/notify` text says; fields are empty when CVS's format is not matched."""

    path: str
    kind: str  # edit, unedit, commit, temporary commit
    repository: str
    by: str


# CVS's notify text (notify.c), line by line:
#   DIR FILE / --- / Triggered KIND watch on REPOSITORY/DIR / By USER
# Parsed with str methods: `re` (and the `enum` it needs) costs every hand-off ~4 ms.
_TRIGGERED = "Triggered "
_WATCH_ON = " watch on "
_BY = "By "


# The watch kinds a commit triggers (besides the loginfo message it gives).
COMMIT_WATCHES = ("commit", "temporary commit")


def notice_directory(notice: WatchNotice) -> str:
    """The repository-relative directory of the file a notice is about: line 1 is
    `DIR FILE` and the `watch on` path ends with DIR (either may hold spaces)."""
    for i, char in enumerate(notice.path):
        if char == " " and notice.repository.endswith("/" + notice.path[:i]):
            return notice.path[:i]
    return notice.path.partition(" ")[0]


def parse_notify(text: str) -> WatchNotice | None:
    """Recognise CVS's notify text; None for anything else (it is still sent verbatim)."""
    lines = text.split("\n", 4)
    if len(lines) < 4:
        return None
    path, dashes, triggered, by_line = lines[:4]
    if not path or dashes != "---" or not triggered.startswith(_TRIGGERED):
        return None
    rest = triggered[len(_TRIGGERED):]
    at = rest.find(_WATCH_ON, 1)  # KIND is at least one character, the first such cut
    repository = rest[at + len(_WATCH_ON):] if at > 0 else ""
    by = by_line[len(_BY):].split(maxsplit=1) if by_line.startswith(_BY) else []
    if not repository or not by or by_line[len(_BY)].isspace():
        return None
    return WatchNotice(path, rest[:at], repository, by[0])
