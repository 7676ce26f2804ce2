"""Teammates' runs in the local index (docs/teams.md): the summary rows a team pull
brings (`team_runs`, the columns readers read, with the owner), each owner's cursor
in the team's time-ordered index (`team_cursors`), and the listing that puts them
next to this home's own runs.

Like the rest of the index it is rebuildable: dropping it (a schema change) only
makes the next pull start from the beginning of each owner's index.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable

from ..events import ACTIVE_STATUSES
from .lost import lost_reason
from .schema import ROW_SELECT, immediate

# a teammate's live run is lost when its newest entry is this many beats old
LOST_BEATS = 3
_LIVE = sorted(ACTIVE_STATUSES)

_TEXT = ("name", "experiment", "project", "kind", "backend", "sweep_id", "rerun_of", "reason", "events")  # fmt: skip
_NUMBER = ("created", "started", "ended", "duration", "attempt_started", "cost", "rate", "last_heartbeat", "published", "beat")  # fmt: skip
_INT = ("attempt", "exit_code", "last_step", "total")
_COLS = ("id", "team", "owner", *_TEXT, *_NUMBER, *_INT, "prior_duration", "status", "ev_status", "tags", "params", "final_metrics", "error", "index_key")  # fmt: skip
_UPSERT = (
    f"INSERT INTO team_runs ({', '.join(_COLS)}) VALUES ({', '.join('?' * len(_COLS))})"
    " ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLS if c != "id")
    + " WHERE excluded.index_key > team_runs.index_key"
)
# a pulled row's JSON column carries its team too: readers tell it from a local run's
TEAM_ROW_SELECT = ROW_SELECT.replace(" FROM runs", " FROM team_runs").replace(
    "coalesce(error, 'null') || ']'", "coalesce(error, 'null') || ',' || json_quote(team) || ']'"
)
assert TEAM_ROW_SELECT.count("json_quote") == 1, "ROW_SELECT's JSON column changed"
# this home's own runs: not a teammate's run mirrored here (backend `team`), whose row
# in team_runs is the one a listing shows (its pulled status is the newer)
OWN = "backend IS NOT 'team'"


def _typed(value: object, kind: type) -> object:
    if kind is str:
        return value if isinstance(value, str) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if kind is int else float(value)


def _record(team: str, owner: str, key: str, row: dict) -> tuple:
    values: dict[str, object] = {"id": row["id"], "team": team, "owner": owner, "index_key": key}
    values.update((c, _typed(row.get(c), str)) for c in _TEXT)
    values.update((c, _typed(row.get(c), float)) for c in _NUMBER)
    values.update((c, _typed(row.get(c), int)) for c in _INT)
    values["attempt"] = values["attempt"] or 1
    values["prior_duration"] = _typed(row.get("prior_duration"), float) or 0.0
    status = row.get("status") if isinstance(row.get("status"), str) else "queued"
    values["status"] = values["ev_status"] = status
    for col, empty in (("tags", []), ("params", {}), ("final_metrics", {})):
        found = row.get(col)
        values[col] = json.dumps(found if isinstance(found, type(empty)) else empty)
    values["error"] = json.dumps(row["error"]) if row.get("error") is not None else None
    return tuple(values[c] for c in _COLS)


def applied_keys(conn: sqlite3.Connection, team: str, owner: str) -> dict[str, str]:
    """{run id: the index key its row came from} of one owner: what a pull skips."""
    rows = conn.execute(
        "SELECT id, index_key FROM team_runs WHERE team = ? AND owner = ?", (team, owner)
    )
    return dict(rows.fetchall())


def cursor(conn: sqlite3.Connection, team: str, owner: str) -> str | None:
    found = conn.execute(
        "SELECT after FROM team_cursors WHERE team = ? AND owner = ?", (team, owner)
    ).fetchone()
    return found[0] if found else None


def apply_pulled(
    conn: sqlite3.Connection, team: str, owner: str, rows: Iterable[tuple[str, dict]], last: str
) -> int:
    """Upsert the pulled (index key, summary row) pairs of one owner (an older key never
    replaces a newer one) and move the owner's cursor to `last`; one transaction."""
    count = 0
    with immediate(conn):
        for key, row in rows:
            if isinstance(row, dict) and isinstance(row.get("id"), str):
                conn.execute(_UPSERT, _record(team, owner, key, row))
                count += 1
        conn.execute(
            "INSERT INTO team_cursors (team, owner, after, pulled) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(team, owner) DO UPDATE SET after = max(after, excluded.after),"
            " pulled = excluded.pulled",
            (team, owner, last, time.time()),
        )
    return count


def mark_lost(conn: sqlite3.Connection, now: float | None = None) -> int:
    """Show a teammate's live run as `lost` (reason `heartbeat`, as store/lost.py does
    for a local run) when its newest entry is older than `LOST_BEATS` of its agent's
    beats (longer while it boots, by the same factor); a newer entry puts its status
    back. Rows without a beat (published by a notebook) are left as they are."""
    now = time.time() if now is None else now
    live = conn.execute(
        "SELECT id, ev_status, published, beat, index_key FROM team_runs"
        f" WHERE status IN ({', '.join('?' * len(_LIVE))}) AND beat > 0",
        _LIVE,
    ).fetchall()
    lost = []
    for run_id, status, published, beat, key in live:
        row = {"ev_status": status, "last_heartbeat": published, "touched": None}
        if lost_reason(row, now, False, LOST_BEATS * beat):
            lost.append((run_id, key))
    if lost:
        with immediate(conn):
            conn.executemany(
                "UPDATE team_runs SET status = 'lost', reason = 'heartbeat'"
                " WHERE id = ? AND index_key = ?",
                lost,
            )
    return len(lost)


def team_row(conn: sqlite3.Connection, owner: str, prefix: str) -> list[tuple[str, str]]:
    """(id, events prefix) of an owner's pulled runs whose id starts with `prefix`."""
    return conn.execute(
        "SELECT id, events FROM team_runs WHERE owner = ? AND id >= ? AND id < ?"
        " ORDER BY created DESC LIMIT 11",
        (owner, prefix, prefix + "\U0010ffff"),
    ).fetchall()


def list_sql(where: list[str], args: list, owner: str) -> tuple[str, list]:
    """This home's runs and the team's (not already here), newest first; `owner` is
    "all" or one owner's name."""
    mine, theirs = [*where, OWN], [*where, f"id NOT IN (SELECT id FROM runs WHERE {OWN})"]
    mine_args, theirs_args = list(args), list(args)
    if owner != "all":
        mine.append("owner = ?")
        theirs.append("owner = ?")
        mine_args.append(owner)
        theirs_args.append(owner)
    sql = (
        f"SELECT * FROM ({ROW_SELECT} WHERE {' AND '.join(mine) or '1'}"
        f" UNION ALL {TEAM_ROW_SELECT} WHERE {' AND '.join(theirs)})"
    )
    return sql, mine_args + theirs_args
