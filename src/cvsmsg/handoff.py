"""The hand-off: write each recipient's message to the spool, then wake the drainer or
start one. What `notify` does in `background` mode, and in any mode while `cvsmsg serve`
runs. No asyncio, no slixmpp, no click: CVS waits for this, once per watcher and file.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from cvsmsg import procs
from cvsmsg.config import Config
from cvsmsg.cvs import parse_notify
from cvsmsg.errors import SpoolError
from cvsmsg.logs import get_logger
from cvsmsg.recipients import own_address
from cvsmsg.report import Outcome
from cvsmsg.spool import DELIVER_LOCK, Spool, resolve_spool_dir

log = get_logger(__name__)

BACKGROUND = "background delivery"
SERVE = "handed to cvsmsg serve"


def open_spool(cfg: Config, env: Mapping[str, str]) -> Spool:
    """The configured spool, or the default one (with a warning when we fell back)."""
    path, shared, warning = resolve_spool_dir(cfg.spool_dir, env)
    if warning:
        log.warning("%s", warning)
    return Spool(path, shared=shared, default_domain=cfg.default_domain, subject=cfg.subject,
                 message_type=cfg.message_type, group=cfg.spool_group,
                 root_needs_group=shared, own_jid=own_address(cfg.jid))


def wants_handoff(cfg: Config, spool: Spool) -> bool:
    """Background mode, or `cvsmsg serve` is running: the spool takes the message."""
    return cfg.delivery == "background" or spool.serve_running()


def cvs_user(text: str, env: Mapping[str, str]) -> str:
    """Who caused the notification: CVS's `By NAME` line, else the Unix user."""
    notice = parse_notify(text)
    if notice is not None:
        return notice.by
    from cvsmsg.account import committer  # whoever runs us, as loginfo names a committer

    return committer(env)


def hand_off(
    cfg: Config, spool: Spool, recipients: list[str], subject: str, text: str, user: str,
    env: Mapping[str, str], rooms: Sequence[str] = (),
) -> tuple[list[Outcome], list[str], list[str]]:
    """Queue `text` for each (valid, bare) recipient and room durably, then make sure
    someone delivers it: `cvsmsg serve` if it runs, else the background deliverer.

    Returns the outcomes of what is in the spool, and the recipients and rooms it could not
    be written for (a full disk, an unwritable spool: one line says why). The caller
    delivers only those directly: nobody gets it twice, and nobody is told "queued" for a
    file that was never written.
    """
    targets = [(jid, False) for jid in recipients] + [(room, True) for room in rooms]
    queued: list[tuple[str, bool]] = []
    dropper = procs.dropper(env)  # its exit ends the burst's coalescing window
    try:
        spool.ensure()
        for address, room in targets:
            spool.add(address, subject, text, mtype=cfg.message_type, cvs_user=user, room=room,
                      dropper=dropper)
            queued.append((address, room))
    except SpoolError as exc:
        left = ", ".join(address for address, _room in targets[len(queued):])
        log.warning("%s: delivering directly to %s", exc, left)
    unwritten = targets[len(queued):]
    left_people = [address for address, room in unwritten if not room]
    left_rooms = [address for address, room in unwritten if room]
    if not queued:
        return [], left_people, left_rooms
    how = BACKGROUND
    try:
        if spool.serve_running():
            how = SERVE
            spool.wake()
        else:
            start_deliverer(cfg, spool, env)
    except (OSError, SpoolError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        log.warning("cannot start the deliverer (%s): the message stays queued "
                    "for the next run or `cvsmsg flush`", why)
    outcomes = [Outcome(address, False, how, handed_off=True, room=room)
                for address, room in queued]
    return outcomes, left_people, left_rooms


def start_deliverer(cfg: Config, spool: Spool, env: Mapping[str, str]) -> int | None:
    """Spawn the detached deliverer unless one holds the lock (then wake it); its pid.

    We take the lock ourselves and the child inherits it, so there is no moment where a
    deliverer is starting but the lock looks free: 300 hand-offs start one deliverer.
    """
    fd = spool.try_lock(DELIVER_LOCK)
    if fd is None:
        spool.wake()  # it may be lingering: look now
        return None
    if fd <= 2:  # our stdio was closed: keep the lock clear of the /dev/null redirections
        import fcntl

        low, fd = fd, fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
        os.close(low)
    try:
        os.set_inheritable(fd, True)
        argv = [sys.executable, "-m", "cvsmsg", "deliver", "--lock-fd", str(fd)]
        if cfg.source is not None:
            argv += ["--config", os.path.realpath(cfg.source)]
        if cfg.server:
            argv += ["--server", cfg.server]
        child_env = {**env, "CVSMSG_SPOOL_DIR": os.path.realpath(spool.directory)}
        null = os.devnull
        # setsid and /dev/null on 0-2: the deliverer never holds CVS's pipes or terminal
        # (CVS would otherwise wait for our stdout to close), and no signal to CVS's
        # process group reaches it. Every other fd is close-on-exec.
        return os.posix_spawn(
            sys.executable, argv, child_env,
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, null, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, null, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_OPEN, 2, null, os.O_WRONLY, 0),
            ],
            setsid=True,
        )
    finally:
        os.close(fd)  # the child's copy keeps the lock
