"""Pure parsing of the text CVS pipes to a CVSROOT/notify command."""

from __future__ import annotations

import re

from cvsmsg.record import Record


class WatchNotice(Record):
    """What a `CVSROOT/notify` text says; fields are empty when CVS's format is not matched."""

    path: str
    kind: str  # edit, unedit, commit, temporary commit
    repository: str
    by: str


_NOTICE = re.compile(
    r"^(?P<path>.+)\n---\nTriggered (?P<kind>.+?) watch on (?P<repo>.+)\nBy (?P<by>\S+)",
    re.MULTILINE,
)


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
    match = _NOTICE.match(text)
    if match is None:
        return None
    return WatchNotice(match["path"], match["kind"], match["repo"], match["by"])
