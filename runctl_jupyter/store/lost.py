"""Lost detection: a run is `lost` when its local agent is gone, or nothing was
heard from it for `lost_timeout` (longer while an instance boots); the reader's
conclusion, which changes back when events resume."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ..events import ACTIVE_STATUSES, PROVISIONING_TIMEOUT_FACTOR
from ..procs import machine, process_start
from .fold import read_json, to_number

AGENT_FILE = "agent.json"
# An instance boot can take minutes before the agent's first event: while a run
# waits for one (provisioning; starting: the bootstrap builds its venv and installs
# the pins, minutes for a cold start; or moving after a spot interruption) the lost
# timeout PROVISIONING_TIMEOUT_FACTOR (events.py) times longer. (The agent's own
# `starting` is followed by `running` at once; a local agent that dies is seen gone
# at once, by agent.json.)
_BOOTING = frozenset({"provisioning", "starting", "interrupted", "resuming"})


class AgentWatch:
    """Whether the agent a run's agent.json names is gone, with agent.json parsed
    again only when it changes."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = runs_dir
        self.cache: dict[str, tuple[tuple, dict | None]] = {}

    def dead(self, run_id: str, row: dict) -> bool:
        """True when agent.json names a process on this machine that is gone (or a
        reused pid). Cheap: agent.json is parsed again only when it changes, and a
        process seen gone is not looked up again."""
        path = self.runs_dir / run_id / AGENT_FILE
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self.cache.get(run_id)
        if cached is not None and cached[0] == key:
            info = cached[1]
        else:
            info = read_json(path)
            info = info if isinstance(info, dict) else None
            self.cache[run_id] = (key, info)
        if info is None or (info.get("host"), info.get("boot_id")) != machine():
            return False  # another machine: the heartbeat timeout decides
        started, attempt = to_number(info.get("started")), info.get("attempt")
        if started is not None and row["touched"] is not None and started < row["touched"]:
            return False  # an earlier agent, from before the launcher's last change
        if isinstance(attempt, int) and attempt < row["attempt"]:
            return False  # an earlier attempt's agent
        if info.get(" dead"):  # seen gone before: a pid never comes back to life
            return True
        pid = info.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            return False
        start = process_start(pid)
        dead = start is None or (info.get("proc_start") is not None and start != info["proc_start"])
        if dead:
            info[" dead"] = True
        return dead


def lost_reason(row: dict, now: float, agent_dead: bool, lost_timeout: float) -> str | None:
    if row["ev_status"] not in ACTIVE_STATUSES:
        return None
    if agent_dead:
        return "agent"
    timeout = lost_timeout
    if row["ev_status"] in _BOOTING:
        timeout *= PROVISIONING_TIMEOUT_FACTOR
    life = max(row["last_heartbeat"] or 0.0, row["touched"] or 0.0)
    return "heartbeat" if now - life > timeout else None


def mark_lost(
    conn: sqlite3.Connection, row: dict, now: float, agent_dead: bool, lost_timeout: float
) -> None:
    lost = lost_reason(row, now, agent_dead, lost_timeout)
    want = ("lost", lost) if lost else (row["ev_status"], row["ev_reason"])
    if lost is None and row["status"] != "lost":
        return
    if (row["status"], row["reason"]) == want:
        return
    if lost is None:  # back from lost: the events' status again
        conn.execute(
            "UPDATE runs SET status = ev_status, reason = ev_reason WHERE id = ? AND last_seq = ?",
            (row["id"], row["last_seq"]),
        )
    else:  # only if nobody indexed newer events meanwhile
        conn.execute(
            "UPDATE runs SET status = 'lost', reason = ? WHERE id = ? AND last_seq = ?"
            " AND ev_status = ?",
            (lost, row["id"], row["last_seq"], row["ev_status"]),
        )
