"""Folding a run folder into the store's rows: the spec, the launcher's status.json
and each new event of events.jsonl (docs/events.md). Called inside a transaction."""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from ..events import ACTIVE_STATUSES, ALL_STATUSES, EVENTS_FILE, FINAL_STATUSES, read_events
from .schema import SPEC_COLS, STATE_COLS

SPEC_FILE = "spec.json"
STATUS_FILE = "status.json"  # the launcher's status changes (set_status)
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def to_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def load_run(conn: sqlite3.Connection, runs_dir: Path, spec: dict, fresh: bool = False) -> None:
    """(Re)build one run's rows from its spec and folder (inside a transaction);
    `fresh`: the tables hold nothing of this run yet."""
    run_id = spec["run_id"]
    for table in () if fresh else ("runs", "params", "metrics", "checkpoints"):
        conn.execute(f"DELETE FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = ?", (run_id,))  # fmt: skip
    params = spec.get("params")
    params = params if isinstance(params, dict) else {}
    tags = spec.get("tags") if isinstance(spec.get("tags"), list) else []
    created = to_number(spec.get("created"))
    if created is None:  # a hand-made spec: the folder's own time, stable across rebuilds
        try:
            created = os.stat(runs_dir / run_id / SPEC_FILE).st_mtime
        except OSError:
            created = time.time()
    values = [run_id, *(spec.get(c) for c in SPEC_COLS), dumps(tags), created, dumps(params)]
    conn.execute(
        "INSERT INTO runs (id, " + ", ".join(SPEC_COLS) + ", tags, created, params, status,"
        " ev_status, touched) VALUES ("
        + ", ".join("?" * (len(values)))
        + ", 'queued', 'queued', ?)",
        (*values, created),
    )
    conn.executemany(
        "INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)",
        [(run_id, str(k), dumps(v)) for k, v in params.items()],
    )
    launcher = read_json(runs_dir / run_id / STATUS_FILE)
    index_events(conn, runs_dir, run_id, launcher if isinstance(launcher, dict) else None)


def read_state(conn: sqlite3.Connection, run_id: str) -> dict:
    values = conn.execute(
        "SELECT " + ", ".join(STATE_COLS) + " FROM runs WHERE id = ?", (run_id,)
    ).fetchone()
    return dict(zip(STATE_COLS, values))


def write_state(conn: sqlite3.Connection, run_id: str, st: dict) -> None:
    conn.execute(
        "UPDATE runs SET " + ", ".join(f"{c} = ?" for c in STATE_COLS) + " WHERE id = ?",
        (*(st[c] for c in STATE_COLS), run_id),
    )


def index_events(
    conn: sqlite3.Connection, runs_dir: Path, run_id: str, launcher: dict | None = None
) -> tuple[list[dict], dict]:
    """Index the new bytes of one run's events (inside a transaction). `launcher`:
    a status.json to replay at its seq (when rebuilding the run from scratch)."""
    st = read_state(conn, run_id)
    start_offset = st["byte_offset"]
    events, offset = read_events(runs_dir / run_id / EVENTS_FILE, start_offset)
    st["byte_offset"] = offset
    st["final_metrics"] = _loads(st["final_metrics"])
    metric_rows: list[tuple] = []
    ckpt_rows: dict[str, tuple | None] = {}  # path -> row, or None: pruned
    new: list[dict] = []
    launcher_seq = launcher.get("seq", 0) if launcher else 0
    final = st["final_metrics"]
    append, new_append = metric_rows.append, new.append
    # Hot fields live in locals; they are written back before any other event.
    attempt, last_seq, last_step = st["attempt"], st["last_seq"], st["last_step"]
    last_t, total = st["last_heartbeat"], st["total"]
    fast = st["attempt_started"] is not None and launcher is None
    for event in events:  # in file order: the agent is the only writer
        seq = event["seq"]
        if type(seq) is not int or seq <= last_seq:
            continue  # seen already: duplicates are harmless
        new_append(event)
        if fast and event.get("type") == "metric" and event.get("attempt") == attempt:
            # The fast path: a metric event of the current attempt (most of a stream).
            t, step, values = event.get("t"), event.get("step"), event.get("values")
            if type(t) is float and type(step) is int and type(values) is dict:
                for key, value in values.items():
                    kind = type(value)
                    if kind is float:
                        append((run_id, key, step, value, t, attempt))
                        final[key] = value if value == value else None
                    elif kind is int:
                        append((run_id, key, step, value, t, attempt))
                        final[key] = value
                    elif kind is bool:
                        append((run_id, key, step, float(value), t, attempt))
                        final[key] = float(value)
                last_seq, last_step = seq, step
                if t > last_t:
                    last_t = t
                if "total" in event and type(event["total"]) is int:
                    total = event["total"]
                continue
        st.update(last_seq=last_seq, last_step=last_step, last_heartbeat=last_t, total=total)
        if launcher is not None and seq > launcher_seq:
            apply_launcher(st, launcher)
            launcher = None
        apply_event(st, event, run_id, metric_rows, ckpt_rows)
        attempt, last_seq, last_step = st["attempt"], st["last_seq"], st["last_step"]
        last_t, total = st["last_heartbeat"], st["total"]
        fast = st["attempt_started"] is not None and launcher is None
    st.update(last_seq=last_seq, last_step=last_step, last_heartbeat=last_t, total=total)
    if launcher is not None:
        apply_launcher(st, launcher)
    elif not new and offset == start_offset:
        st["final_metrics"] = dumps(st["final_metrics"])
        return new, st  # only a partial line so far: nothing to write
    if metric_rows:
        conn.executemany(
            "INSERT OR REPLACE INTO metrics (run_id, key, step, value, t, attempt)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            metric_rows,
        )
    if ckpt_rows:
        conn.executemany(
            "DELETE FROM checkpoints WHERE run_id = ? AND path = ?",
            [(run_id, path) for path, row in ckpt_rows.items() if row is None],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO checkpoints (run_id, path, step, bytes, t, attempt)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [row for row in ckpt_rows.values() if row is not None],
        )
    st["status"], st["reason"] = st["ev_status"], st["ev_reason"]
    st["final_metrics"] = dumps(st["final_metrics"])
    write_state(conn, run_id, st)
    return new, st


def apply_event(st: dict, e: dict, run_id: str, metric_rows: list, ckpt_rows: dict) -> None:
    """Fold one event into a run's state (docs/events.md); `ckpt_rows` gets each
    checkpoint path's row, or None for one `--keep-checkpoints` deleted."""
    st["last_seq"] = e["seq"]
    t = to_number(e.get("t"))
    attempt = e.get("attempt") if isinstance(e.get("attempt"), int) else st["attempt"]
    if attempt > st["attempt"]:  # a new attempt (a resume) begins
        if st["attempt_started"] is not None and st["last_heartbeat"] is not None:
            st["prior_duration"] += max(0.0, st["last_heartbeat"] - st["attempt_started"])
        st.update(attempt=attempt, attempt_started=None, ended=None, exit_code=None, error=None)  # fmt: skip
    if t is not None:
        if st["started"] is None:
            st["started"] = t
        if st["attempt_started"] is None and e.get("type") != "exit":
            st["attempt_started"] = t
        st["last_heartbeat"] = t if st["last_heartbeat"] is None else max(st["last_heartbeat"], t)
    kind = e.get("type")
    if kind == "metric":
        step = e.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            step = 0 if st["last_step"] is None else st["last_step"] + 1
        values = e.get("values")
        if isinstance(values, dict):
            final = st["final_metrics"]
            for key, value in values.items():
                number = to_number(value)
                if number is None:
                    continue
                metric_rows.append((run_id, key, step, number, t, attempt))
                final[key] = None if math.isnan(number) else number
        st["last_step"] = step
        if isinstance(e.get("total"), int):
            st["total"] = e["total"]
    elif kind == "status":
        status = e.get("status")
        if status in ALL_STATUSES and status != "lost":
            st["ev_status"], st["ev_reason"] = status, e.get("reason")
            if status in ACTIVE_STATUSES:
                st["ended"] = None
    elif kind == "exit":
        status = e.get("status")
        st["ev_status"] = status if status in FINAL_STATUSES else "failed"
        st["ev_reason"] = e.get("reason")
        exit_code = e.get("exit_code")
        st["exit_code"] = exit_code if isinstance(exit_code, int) else None
        error = e.get("error")
        st["error"] = dumps(error) if isinstance(error, dict) else None
        duration = to_number(e.get("duration"))
        if duration is None and t is not None and st["attempt_started"] is not None:
            duration = t - st["attempt_started"]
        st["prior_duration"] += max(0.0, duration or 0.0)
        st["duration"] = st["prior_duration"]
        st["attempt_started"] = None
        st["ended"] = t
    elif kind == "checkpoint":
        path = e.get("path")
        if isinstance(path, str):
            step = e.get("step") if isinstance(e.get("step"), int) else None
            size = e.get("bytes") if isinstance(e.get("bytes"), int) else None
            ckpt_rows[path] = (run_id, path, step, size, t, attempt)
        pruned = e.get("pruned")
        for gone in pruned if isinstance(pruned, list) else ():
            if isinstance(gone, str) and gone != path:
                ckpt_rows[gone] = None
    elif kind == "cost":
        dollars, rate = to_number(e.get("dollars")), to_number(e.get("rate"))
        if dollars is not None:
            st["cost"] = dollars
        if rate is not None:
            st["rate"] = rate


def apply_launcher(st: dict, launcher: dict) -> None:
    """Fold a launcher status change (status.json / set_status) into a run's state."""
    status, t = launcher.get("status"), to_number(launcher.get("t"))
    if status not in ALL_STATUSES or status == "lost":
        return
    st["ev_status"], st["ev_reason"] = status, launcher.get("reason")
    st["touched"], st["status_seq"] = t, launcher.get("seq", 0)
    if status in FINAL_STATUSES:
        if st["attempt_started"] is not None:
            last = st["last_heartbeat"] if st["last_heartbeat"] is not None else t
            st["prior_duration"] += max(0.0, (last or 0.0) - st["attempt_started"])
            st["attempt_started"] = None
        st["ended"] = t
        st["duration"] = st["prior_duration"] if st["started"] is not None else None
    else:
        st["ended"] = None
