"""Is that process still the one we started? Stdlib only (the agent uses it too).

A pid alone is not an identity: pids are reused, and a finished child stays a
zombie until reaped. So an agent records (host, boot id, pid, start time), and a
reader on the same machine checks all four.
"""

from __future__ import annotations

import socket
from pathlib import Path

_MACHINE: tuple[str, str] | None = None


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def machine() -> tuple[str, str]:
    """(hostname, boot id) of this machine, read once."""
    global _MACHINE
    if _MACHINE is None:
        _MACHINE = (socket.gethostname(), boot_id())
    return _MACHINE


def process_start(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks); None if the process
    is gone or a zombie (it has ended, only its exit status is left)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(b")", 1)[1].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
