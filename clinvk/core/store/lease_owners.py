"""Who holds a session lease, and whether that holder is still alive.

A lease owner is ``host@pid-namespace:pid:thread:random``. Any store implementation
stores it in the session row; this module only tells a live holder from a dead one.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

__all__ = ["LIVE_OWNERS", "LEASE_NODE", "holder_is_dead", "new_owner"]


def _pid_namespace() -> str:
    """This process's pid namespace: pids of two lease holders compare only within one."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


#: ``host@pid-namespace``: the part of a lease owner that says where its pid is valid.
LEASE_NODE = f"{socket.gethostname()}@{_pid_namespace()}"


# Leases this process holds right now. A lease of this process that is not here was given
# up by its holder but could not be cleared (the release write failed, e.g. on a full disk).
LIVE_OWNERS: set[str] = set()


def holder_is_dead(owner: str) -> bool:
    """Whether a lease ``owner`` is gone: a process of this host (and pid namespace) that
    no longer runs, or a holder in this very process that already gave the lease up.

    Anything unknown (another host, an older owner format, a pid that exists, even as
    someone else's) counts as alive: then only the lease expiry frees the session.
    """
    node, _, rest = owner.partition(":")
    if node != LEASE_NODE or node.endswith("@"):
        return False
    pid_text = rest.partition(":")[0]
    if not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    if int(pid_text) == os.getpid():
        return owner not in LIVE_OWNERS
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    # A killed worker stays a zombie until its parent (gunicorn's master) reaps it; it
    # answers signal 0 but will never release its lease.
    try:
        with open(f"/proc/{pid_text}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False



def new_owner() -> str:
    """A fresh lease owner for the calling thread of this process."""
    return f"{LEASE_NODE}:{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:12]}"
