"""Who runs a trial: a driver's identity, recorded on each trial it takes, and whether the
driver a trial names is still running."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def driver_id() -> str:
    """``host:pid:start-time`` of this process; identifies it on its trials."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_time(os.getpid())}"


def _start_time(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "?"
    return stat.rsplit(")", 1)[1].split()[19]


def alive_here(ident: str) -> bool:
    """False when ``ident`` names a driver on this host that is no longer running."""
    host, _, rest = ident.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: only its heartbeat can tell
    return _start_time(int(pid)) == started
