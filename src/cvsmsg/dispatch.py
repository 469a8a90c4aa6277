"""The one decision every notification goes through: hand it to the spool (background
mode, or while `cvsmsg serve` runs) or deliver it directly, and what that meant for each
recipient. `notify` and `loginfo` both call `dispatch`; nothing else decides this."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from cvsmsg import logs
from cvsmsg.config import Config
from cvsmsg.errors import RecipientError
from cvsmsg.handoff import cvs_user, hand_off, open_spool, wants_handoff
from cvsmsg.logs import get_logger
from cvsmsg.recipients import resolve_recipients, resolve_rooms
from cvsmsg.report import Report

log = get_logger(__name__)


def dispatch(
    cfg: Config, recipient_values: list[str], subject: str, text: str,
    env: Mapping[str, str] | None = None, room_values: Sequence[str] = (),
) -> Report:
    """Send `text` to every valid recipient and room, through the spool or directly.

    Invalid recipients are failed Outcomes and never hold the valid ones back. The hand-off
    imports neither asyncio nor slixmpp: CVS waits for it once per watcher and file.
    """
    env = os.environ if env is None else env
    recipients, invalid = resolve_recipients(recipient_values, cfg.default_domain, cfg.jid)
    rooms, bad_rooms = resolve_rooms(room_values)
    invalid += bad_rooms
    if not recipients and not rooms:
        if not invalid:
            raise RecipientError("no recipient given")
        return Report(invalid)  # nothing to connect for
    spool = open_spool(cfg, env)
    spool.check_creatable()  # a root run with no spool and no spool_group: exit 3 at once
    user = cvs_user(text, env)
    done = invalid
    if wants_handoff(cfg, spool):
        # What the spool could not take (a full disk) goes directly, and only that.
        handed, recipients, rooms = hand_off(cfg, spool, recipients, subject, text, user, env,
                                             rooms)
        done = invalid + handed
        if not recipients and not rooms:
            return Report(done)
    logs.activate()  # asyncio and slixmpp log through `logging` itself
    import asyncio

    from cvsmsg.slixmpp_compat import skip_optional_imports

    skip_optional_imports(server_configured=bool(cfg.server))  # before slixmpp loads
    from cvsmsg.direct import deliver

    return Report(done + asyncio.run(
        deliver(cfg, spool, recipients, subject, text, user, rooms)))
