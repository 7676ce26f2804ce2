"""Rows as readers get them (with a live duration), and RUN references (id, name,
id prefix) resolved to a run id."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import AmbiguousRun, RunNotFound
from ..events import ACTIVE_STATUSES
from .fold import RUN_ID
from .schema import N_ROW_COLS, ROW_COLS


def rows_from_records(records: list[tuple], runs_dir: Path) -> list[dict]:
    """Row dicts from ROW_SELECT records: JSON columns parsed, a live run's duration so
    far; a teammate's pulled row (store/team.py) has `team`."""
    if not records:
        return []
    now = time.time()
    blobs = json.loads("[" + ",".join([r[-1] for r in records]) + "]")
    base = str(runs_dir) + os.sep
    rows = []
    for values, blob in zip(records, blobs):
        row = dict(zip(ROW_COLS, values))
        row["tags"], row["params"], row["final_metrics"], row["error"], *team = blob
        if team:  # a teammate's run pulled from the team store (store/team.py): no folder here
            row["team"] = team[0]
        ev_status, prior, attempt_started = values[N_ROW_COLS : N_ROW_COLS + 3]
        if row["started"] is None:
            row["duration"] = None
        elif ev_status in ACTIVE_STATUSES:
            if attempt_started is None:
                row["duration"] = prior
            else:
                until = row["last_heartbeat"] if row["status"] == "lost" else now
                row["duration"] = prior + max(0.0, (until or now) - attempt_started)
        row["run_dir"] = base + row["id"]
        rows.append(row)
    return rows


def resolve_ref(conn: sqlite3.Connection, ref: str, require: Callable[[str], None]) -> str:
    """A run id from a reference: an id, a run name (the newest run of that name),
    or a unique prefix of an id."""
    ref = ref.strip() if isinstance(ref, str) else ""
    if not ref:
        raise RunNotFound("no run given: pass a run id, id prefix or name (see `runctl runs`)")
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (ref,)).fetchone():
        return ref
    hit = conn.execute(
        "SELECT id FROM runs WHERE name = ? ORDER BY created DESC, id DESC LIMIT 1", (ref,)
    ).fetchone()
    if hit:
        return hit[0]
    candidates = conn.execute(
        "SELECT id, name, started, created FROM runs WHERE id >= ? AND id < ?"
        " ORDER BY created DESC LIMIT 11",
        (ref, ref + "\U0010ffff"),
    ).fetchall()
    if len(candidates) == 1:
        return candidates[0][0]
    if candidates:
        shown = "; ".join(
            f"{rid} ({name or '-'}, started {_when(started or created)})"
            for rid, name, started, created in candidates[:10]
        )
        more = ", ..." if len(candidates) > 10 else ""
        raise AmbiguousRun(f"run prefix {ref!r} is ambiguous: {shown}{more}; give more of the id")
    if RUN_ID.match(ref):
        try:
            require(ref)
            return ref
        except RunNotFound:
            pass
    raise RunNotFound(f"no run {ref!r}: see `runctl runs` for run ids")


def ref_words(conn: sqlite3.Connection, prefix: str, limit: int) -> list[str]:
    """Run ids and names starting with `prefix`, newest run first (a name once, at its
    newest run): what `%runctl show <TAB>` offers. One query: the newest rows on the
    created index, or, with a prefix, the id index and the covering name index."""
    if not prefix:
        records = conn.execute(
            "SELECT id, name FROM runs ORDER BY created DESC, id DESC LIMIT ?", (limit,)
        ).fetchall()
        words = dict.fromkeys(word for record in records for word in record if word)
        return list(words)[:limit]
    end = prefix + "\U0010ffff"
    records = conn.execute(
        "SELECT word FROM ("
        " SELECT id AS word, created, 0 AS kind FROM runs WHERE id >= ? AND id < ?"
        " UNION ALL"
        " SELECT name, max(created), 1 FROM runs WHERE name >= ? AND name < ? GROUP BY name"
        ") ORDER BY created DESC, kind, word DESC LIMIT ?",
        (prefix, end, prefix, end, limit),
    ).fetchall()
    return list(dict.fromkeys(word for (word,) in records))


def experiment_words(conn: sqlite3.Connection, prefix: str, limit: int) -> list[str]:
    """Experiment names starting with `prefix`, the one with the newest run first."""
    records = conn.execute(
        "SELECT experiment FROM runs WHERE experiment >= ? AND experiment < ?"
        " GROUP BY experiment ORDER BY max(created) DESC LIMIT ?",
        (prefix, prefix + "\U0010ffff", limit),
    )
    return [experiment for (experiment,) in records if experiment]


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
