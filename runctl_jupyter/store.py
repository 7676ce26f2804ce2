"""The store: an SQLite (WAL) index of the run folders under `$RUNCTL_HOME/runs/`.

Readers (magics, panels, CLI, the lab extension) query it; it never holds
anything a run folder does not, so deleting `runctl.db` and calling `reindex()`
gives the same answers. `refresh()` reads only the new bytes of `events.jsonl`
of unfinished runs, each run in one `BEGIN IMMEDIATE` transaction that reads the
stored offset inside it: two processes indexing the same run never duplicate a
point. A run's state comes from its events (docs/events.md); `lost` is this
reader's conclusion (no sign of life for `lost_timeout`, or its local agent is
gone) and changes back when events resume.

The launcher's own status changes (`set_status`, e.g. a launch that failed
before the agent started) go to `status.json` in the run folder, stamped with
the last event `seq` seen, so a rebuild replays them at the same place.
"""

from __future__ import annotations

import json
import math
import os
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .errors import AmbiguousRun, RunctlError, RunNotFound
from .events import ACTIVE_STATUSES, ALL_STATUSES, EVENTS_FILE, FINAL_STATUSES, read_events
from .procs import machine, process_start

SCHEMA_VERSION = 2
DB_FILE = "runctl.db"
SPEC_FILE = "spec.json"
AGENT_FILE = "agent.json"
STATUS_FILE = "status.json"  # the launcher's status changes (set_status)
# An instance boot can take minutes before the agent's first event: while a run
# waits for one (provisioning, or moving after a spot interruption) the lost
# timeout is this many times longer.
PROVISIONING_TIMEOUT_FACTOR = 10.0
_BOOTING = frozenset({"provisioning", "interrupted", "resuming"})

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ACTIVE = tuple(sorted(ACTIVE_STATUSES))
_FINAL = tuple(sorted(FINAL_STATUSES))

_SCHEMA = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY, name TEXT, experiment TEXT, project TEXT, owner TEXT,
    tags TEXT NOT NULL DEFAULT '[]', kind TEXT, backend TEXT, sweep_id TEXT, rerun_of TEXT,
    created REAL, params TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL, reason TEXT, ev_status TEXT NOT NULL, ev_reason TEXT,
    started REAL, ended REAL, duration REAL, prior_duration REAL NOT NULL DEFAULT 0,
    attempt_started REAL, attempt INTEGER NOT NULL DEFAULT 1, exit_code INTEGER, error TEXT,
    final_metrics TEXT NOT NULL DEFAULT '{}', last_step INTEGER, total INTEGER,
    cost REAL NOT NULL DEFAULT 0, rate REAL, last_heartbeat REAL, touched REAL,
    status_seq INTEGER, byte_offset INTEGER NOT NULL DEFAULT 0, last_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX runs_created ON runs(created, id);
CREATE INDEX runs_experiment ON runs(experiment, created, id);
CREATE INDEX runs_status ON runs(status, created, id);
CREATE INDEX runs_ev_status ON runs(ev_status);
CREATE INDEX runs_name ON runs(name, created, id);
CREATE INDEX runs_sweep ON runs(sweep_id, created, id);
CREATE INDEX runs_project ON runs(project, created, id);
CREATE TABLE params (
    run_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT, PRIMARY KEY (run_id, key)
) WITHOUT ROWID;
CREATE TABLE metrics (
    run_id TEXT NOT NULL, key TEXT NOT NULL, step INTEGER NOT NULL, value REAL, t REAL,
    attempt INTEGER, PRIMARY KEY (run_id, key, step)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    run_id TEXT NOT NULL, path TEXT NOT NULL, step INTEGER, bytes INTEGER, t REAL,
    attempt INTEGER, PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
"""

_SPEC_COLS = ("name", "experiment", "project", "owner", "kind", "backend", "sweep_id", "rerun_of")
_STATE_COLS = (
    "status", "reason", "ev_status", "ev_reason", "started", "ended", "duration",
    "prior_duration", "attempt_started", "attempt", "exit_code", "error", "final_metrics",
    "last_step", "total", "cost", "rate", "last_heartbeat", "touched", "status_seq",
    "byte_offset", "last_seq",
)  # fmt: skip
_ROW_COLS = (
    "id", "name", "experiment", "project", "owner", "kind", "backend", "status",
    "reason", "created", "started", "ended", "duration", "attempt", "exit_code",
    "last_step", "total", "cost", "rate", "last_heartbeat", "sweep_id",
)  # fmt: skip
# The JSON columns come as one array text a row, parsed for all rows in one call.
_ROW_SELECT = (
    "SELECT " + ", ".join(_ROW_COLS) + ", ev_status, prior_duration, attempt_started,"
    " '[' || tags || ',' || params || ',' || final_metrics || ',' || coalesce(error, 'null') || ']'"
    " FROM runs"
)
_N = len(_ROW_COLS)
_REFRESH_COLS = ("id", "ev_status", "ev_reason", "status", "reason", "last_heartbeat", "touched", "attempt", "byte_offset", "last_seq")  # fmt: skip


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_FORKED_CONNECTIONS: list[sqlite3.Connection] = []


class Store:
    """The index of run folders under `home/runs/`, in `home/runctl.db`."""

    def __init__(self, home: str | os.PathLike, lost_timeout: float = 60.0):
        self.home = Path(home).expanduser()
        self.runs_dir = self.home / "runs"
        self.db_path = self.home / DB_FILE
        self.lost_timeout = float(lost_timeout)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._agent_cache: dict[str, tuple[tuple, dict | None]] = {}
        self._partial: dict[str, int] = {}  # run -> events.jsonl size that held no new line
        self._conn()  # create the schema now, so errors show at construction

    # ---- connection -------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            if self._local.pid == os.getpid():
                return conn
            # Inherited through fork: never use or close it here (closing could
            # checkpoint or unlink the parent's WAL); keep it referenced instead.
            _FORKED_CONNECTIONS.append(conn)
        conn = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            self._create_schema(conn)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:  # new, or an older layout: the index is rebuildable
                tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'"
                ).fetchall()
                for (table,) in tables:
                    conn.execute(f'DROP TABLE "{table}"')
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                if tables:
                    self._rebuild(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- run folders ----------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
            raise RunNotFound(f"no run {run_id!r}: see `runctl runs` for run ids")
        return self.runs_dir / run_id

    def add_run(self, spec: dict) -> None:
        """Index a new run from its spec (the launcher wrote runs/<id>/spec.json): status
        `queued`. Idempotent: adding a known run re-reads it from its folder."""
        run_id = spec.get("run_id") if isinstance(spec, dict) else None
        if not run_id:
            raise RunctlError("the run spec has no run_id: write spec.json with launch.py")
        self.run_dir(run_id)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._load_run(conn, spec)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _load_run(self, conn: sqlite3.Connection, spec: dict, fresh: bool = False) -> None:
        """(Re)build one run's rows from its spec and folder (inside a transaction);
        `fresh`: the tables hold nothing of this run yet."""
        run_id = spec["run_id"]
        for table in () if fresh else ("runs", "params", "metrics", "checkpoints"):
            conn.execute(f"DELETE FROM {table} WHERE {'id' if table == 'runs' else 'run_id'} = ?", (run_id,))  # fmt: skip
        params = spec.get("params") if isinstance(spec.get("params"), dict) else {}
        tags = spec.get("tags") if isinstance(spec.get("tags"), list) else []
        created = _number(spec.get("created"))
        if created is None:  # a hand-made spec: the folder's own time, stable across rebuilds
            try:
                created = os.stat(self.runs_dir / run_id / SPEC_FILE).st_mtime
            except OSError:
                created = time.time()
        values = [run_id, *(spec.get(c) for c in _SPEC_COLS), _dumps(tags), created, _dumps(params)]
        conn.execute(
            "INSERT INTO runs (id, " + ", ".join(_SPEC_COLS) + ", tags, created, params, status,"
            " ev_status, touched) VALUES ("
            + ", ".join("?" * (len(values)))
            + ", 'queued', 'queued', ?)",
            (*values, created),
        )
        conn.executemany(
            "INSERT INTO params (run_id, key, value) VALUES (?, ?, ?)",
            [(run_id, str(k), _dumps(v)) for k, v in params.items()],
        )
        launcher = _read_json(self.runs_dir / run_id / STATUS_FILE)
        self._index(conn, run_id, launcher if isinstance(launcher, dict) else None)

    # ---- indexing -------------------------------------------------------------

    def refresh(self, run_id: str | None = None) -> list[dict]:
        """Index new events of unfinished runs (all of them, or just `run_id`, which is
        read even when finished, e.g. just after a resume), then mark lost runs.
        Returns the new events of `run_id` this call indexed, in seq order."""
        conn = self._conn()
        select = "SELECT " + ", ".join(_REFRESH_COLS) + " FROM runs"
        if run_id is None:
            marks = ", ".join("?" * len(_ACTIVE))
            rows = conn.execute(f"{select} WHERE ev_status IN ({marks})", _ACTIVE).fetchall()
        else:
            self._require(run_id)
            rows = conn.execute(f"{select} WHERE id = ?", (run_id,)).fetchall()
        new_events: list[dict] = []
        now = time.time()
        for values in rows:
            row = dict(zip(_REFRESH_COLS, values))
            rid = row["id"]
            # Look at the agent *before* reading events: an agent that wrote `exit`
            # and then died is seen dead only after its exit is in the file.
            agent_dead = row["ev_status"] in ACTIVE_STATUSES and self._agent_dead(rid, row)
            try:
                size = os.stat(self.runs_dir / rid / EVENTS_FILE).st_size
            except OSError:
                size = 0
            if size != row["byte_offset"] and self._partial.get(rid) != size:
                events, state = self._index_tx(conn, rid, truncated=size < row["byte_offset"])
                if state["byte_offset"] == row["byte_offset"] and not events:
                    self._partial[rid] = size  # a partial last line: wait until it grows
                if rid == run_id:
                    new_events = events
                row.update((k, state[k]) for k in row if k in state)
                # Gone before the read and still gone after it (not replaced by a
                # new attempt's agent meanwhile): these events were its last.
                agent_dead = agent_dead and self._agent_dead(rid, row)
            self._mark_lost(conn, row, now, agent_dead)
        return new_events

    def _index_tx(
        self, conn: sqlite3.Connection, run_id: str, truncated: bool
    ) -> tuple[list[dict], dict]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if truncated:  # the stream was replaced: rebuild this run from its folder
                spec = _read_json(self.runs_dir / run_id / SPEC_FILE)
                if isinstance(spec, dict) and spec.get("run_id") == run_id:
                    self._load_run(conn, spec)
            result = self._index(conn, run_id)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _index(
        self, conn: sqlite3.Connection, run_id: str, launcher: dict | None = None
    ) -> tuple[list[dict], dict]:
        """Index the new bytes of one run's events (inside a transaction). `launcher`:
        a status.json to replay at its seq (when rebuilding the run from scratch)."""
        values = conn.execute(
            "SELECT " + ", ".join(_STATE_COLS) + " FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        st = dict(zip(_STATE_COLS, values))
        events, offset = read_events(self.runs_dir / run_id / EVENTS_FILE, st["byte_offset"])
        st["byte_offset"] = offset
        st["final_metrics"] = _loads(st["final_metrics"])
        metric_rows: list[tuple] = []
        ckpt_rows: list[tuple] = []
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
                self._apply_launcher(st, launcher)
                launcher = None
            self._apply(st, event, run_id, metric_rows, ckpt_rows)
            attempt, last_seq, last_step = st["attempt"], st["last_seq"], st["last_step"]
            last_t, total = st["last_heartbeat"], st["total"]
            fast = st["attempt_started"] is not None and launcher is None
        st.update(last_seq=last_seq, last_step=last_step, last_heartbeat=last_t, total=total)
        if launcher is not None:
            self._apply_launcher(st, launcher)
        elif not new and offset == values[_STATE_COLS.index("byte_offset")]:
            st["final_metrics"] = _dumps(st["final_metrics"])
            return new, st  # only a partial line so far: nothing to write
        if metric_rows:
            conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, key, step, value, t, attempt)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                metric_rows,
            )
        if ckpt_rows:
            conn.executemany(
                "INSERT OR REPLACE INTO checkpoints (run_id, path, step, bytes, t, attempt)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                ckpt_rows,
            )
        st["status"], st["reason"] = st["ev_status"], st["ev_reason"]
        st["final_metrics"] = _dumps(st["final_metrics"])
        conn.execute(
            "UPDATE runs SET " + ", ".join(f"{c} = ?" for c in _STATE_COLS) + " WHERE id = ?",
            (*(st[c] for c in _STATE_COLS), run_id),
        )
        return new, st

    @staticmethod
    def _apply(st: dict, e: dict, run_id: str, metric_rows: list, ckpt_rows: list) -> None:
        """Fold one event into a run's state (docs/events.md)."""
        st["last_seq"] = e["seq"]
        t = _number(e.get("t"))
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
            st["last_heartbeat"] = (
                t if st["last_heartbeat"] is None else max(st["last_heartbeat"], t)
            )
        kind = e.get("type")
        if kind == "metric":
            step = e.get("step")
            if not isinstance(step, int) or isinstance(step, bool):
                step = 0 if st["last_step"] is None else st["last_step"] + 1
            values = e.get("values")
            if isinstance(values, dict):
                final = st["final_metrics"]
                for key, value in values.items():
                    number = _number(value)
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
            st["error"] = _dumps(error) if isinstance(error, dict) else None
            duration = _number(e.get("duration"))
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
                ckpt_rows.append((run_id, path, step, size, t, attempt))
        elif kind == "cost":
            dollars, rate = _number(e.get("dollars")), _number(e.get("rate"))
            if dollars is not None:
                st["cost"] = dollars
            if rate is not None:
                st["rate"] = rate

    @staticmethod
    def _apply_launcher(st: dict, launcher: dict) -> None:
        """Fold a launcher status change (status.json / set_status) into a run's state."""
        status, t = launcher.get("status"), _number(launcher.get("t"))
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

    # ---- lost detection -------------------------------------------------------

    def _agent_dead(self, run_id: str, row: dict) -> bool:
        """True when agent.json names a process on this machine that is gone (or a
        reused pid). Cheap: agent.json is parsed again only when it changes, and a
        process seen gone is not looked up again."""
        path = self.runs_dir / run_id / AGENT_FILE
        try:
            st = os.stat(path)
        except OSError:
            return False
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._agent_cache.get(run_id)
        if cached is not None and cached[0] == key:
            info = cached[1]
        else:
            info = _read_json(path)
            info = info if isinstance(info, dict) else None
            self._agent_cache[run_id] = (key, info)
        if info is None or (info.get("host"), info.get("boot_id")) != machine():
            return False  # another machine: the heartbeat timeout decides
        started, attempt = _number(info.get("started")), info.get("attempt")
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

    def _lost_reason(self, row: dict, now: float, agent_dead: bool) -> str | None:
        if row["ev_status"] not in ACTIVE_STATUSES:
            return None
        if agent_dead:
            return "agent"
        timeout = self.lost_timeout
        if row["ev_status"] in _BOOTING:
            timeout *= PROVISIONING_TIMEOUT_FACTOR
        life = max(row["last_heartbeat"] or 0.0, row["touched"] or 0.0)
        return "heartbeat" if now - life > timeout else None

    def _mark_lost(self, conn: sqlite3.Connection, row: dict, now: float, agent_dead: bool) -> None:
        lost = self._lost_reason(row, now, agent_dead)
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

    def set_status(self, run_id: str, status: str, reason: str | None = None) -> None:
        """The launcher's status change (e.g. `failed` for a launch that failed before
        the agent started, `starting` before a resumed attempt). Kept in status.json."""
        if status not in ALL_STATUSES or status == "lost":
            allowed = ", ".join(sorted(ALL_STATUSES - {"lost"}))
            raise RunctlError(f"unknown run status {status!r}: use one of {allowed}")
        self._require(run_id)
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._index(conn, run_id)  # so the stamp is the last seq really in the file
            last_seq = conn.execute("SELECT last_seq FROM runs WHERE id = ?", (run_id,)).fetchone()[
                0
            ]
            launcher = {"status": status, "reason": reason, "t": time.time(), "seq": last_seq}
            path = self.runs_dir / run_id / STATUS_FILE
            tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(_dumps(launcher), encoding="utf-8")
            os.replace(tmp, path)
            values = conn.execute(
                "SELECT " + ", ".join(_STATE_COLS) + " FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            st = dict(zip(_STATE_COLS, values))
            self._apply_launcher(st, launcher)
            st["status"], st["reason"] = st["ev_status"], st["ev_reason"]
            conn.execute(
                "UPDATE runs SET " + ", ".join(f"{c} = ?" for c in _STATE_COLS) + " WHERE id = ?",
                (*(st[c] for c in _STATE_COLS), run_id),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ---- reading --------------------------------------------------------------

    def _rows(self, records: list[tuple]) -> list[dict]:
        if not records:
            return []
        now = time.time()
        blobs = json.loads("[" + ",".join([r[-1] for r in records]) + "]")
        base = str(self.runs_dir) + os.sep
        rows = []
        for values, blob in zip(records, blobs):
            row = dict(zip(_ROW_COLS, values))
            row["tags"], row["params"], row["final_metrics"], row["error"] = blob
            ev_status, prior, attempt_started = values[_N : _N + 3]
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

    def _require(self, run_id: str) -> None:
        """Make sure a run is indexed: a folder with a spec.json not yet in the
        database (a launcher that died before add_run, a copied folder) is added."""
        conn = self._conn()
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            return
        spec = _read_json(self.run_dir(run_id) / SPEC_FILE)
        if isinstance(spec, dict) and spec.get("run_id") == run_id:
            self.add_run(spec)
            return
        raise RunNotFound(f"no run {run_id!r}: see `runctl runs` for run ids")

    def get(self, run_id: str) -> dict:
        """One run's row (call refresh() first for the newest state)."""
        self._require(run_id)
        records = self._conn().execute(f"{_ROW_SELECT} WHERE id = ?", (run_id,)).fetchall()
        return self._rows(records)[0]

    def resolve(self, ref: str) -> str:
        """A run id from a reference: an id, a run name (the newest run of that name),
        or a unique prefix of an id."""
        conn = self._conn()
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
            raise AmbiguousRun(
                f"run prefix {ref!r} is ambiguous: {shown}{more}; give more of the id"
            )
        if _RUN_ID.match(ref):
            try:
                self._require(ref)
                return ref
            except RunNotFound:
                pass
        raise RunNotFound(f"no run {ref!r}: see `runctl runs` for run ids")

    def list_runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        project: str | None = None,
        sweep_id: str | None = None,
        limit: int | None = 50,
    ) -> list[dict]:
        """Rows, newest first (call refresh() first for live states)."""
        where, args = [], []
        for col, value in (("experiment", experiment), ("status", status), ("project", project), ("sweep_id", sweep_id)):  # fmt: skip
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        sql = _ROW_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return self._rows(self._conn().execute(sql, args).fetchall())

    def metrics(
        self, run_id: str, keys: list[str] | None = None
    ) -> dict[str, list[tuple[int, float]]]:
        """Every point of a run's metrics, by step: {name: [(step, value), ...]}."""
        self._require(run_id)
        conn = self._conn()
        if keys is None:
            keys = [k for (k,) in conn.execute("SELECT DISTINCT key FROM metrics WHERE run_id = ?", (run_id,))]  # fmt: skip
        out: dict[str, list[tuple[int, float]]] = {}
        # One query a key: sqlite3 hands back the (step, value) tuples as they are.
        for key in dict.fromkeys(keys):
            points = conn.execute(
                "SELECT step, value FROM metrics WHERE run_id = ? AND key = ? ORDER BY step",
                (run_id, key),
            ).fetchall()
            if not points:
                continue
            if conn.execute(
                "SELECT 1 FROM metrics WHERE run_id = ? AND key = ? AND value IS NULL LIMIT 1",
                (run_id, key),
            ).fetchone():  # NaN is stored as NULL
                points = [(step, math.nan if v is None else v) for step, v in points]
            out[key] = points
        return out

    def summaries(self, run_ids: list[str]) -> dict[str, dict[str, dict]]:
        """{run: {metric: {"last", "min", "max", "last_step", "count"}}}; `last` is the
        value at the highest step."""
        conn = self._conn()
        out: dict[str, dict[str, dict]] = {rid: {} for rid in run_ids}
        ids = list(dict.fromkeys(run_ids))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            rows = conn.execute(
                "SELECT a.run_id, a.key, m.value, a.mn, a.mx, a.ms, a.n FROM ("
                " SELECT run_id, key, MIN(value) AS mn, MAX(value) AS mx, MAX(step) AS ms,"
                f" COUNT(*) AS n FROM metrics WHERE run_id IN ({marks}) GROUP BY run_id, key) a"
                " JOIN metrics m ON m.run_id = a.run_id AND m.key = a.key AND m.step = a.ms",
                chunk,
            )
            for rid, key, last, mn, mx, last_step, count in rows:
                out[rid][key] = {
                    "last": math.nan if last is None else last,
                    "min": mn,
                    "max": mx,
                    "last_step": last_step,
                    "count": count,
                }
        return out

    def checkpoints(self, run_id: str) -> list[dict]:
        """A run's checkpoints by step: step, path (absolute), bytes, t, attempt."""
        self._require(run_id)
        base = self.runs_dir / run_id
        rows = self._conn().execute(
            "SELECT step, path, bytes, t, attempt FROM checkpoints WHERE run_id = ?"
            " ORDER BY step, t",
            (run_id,),
        )
        return [
            {"step": step, "path": str(base / path), "bytes": size, "t": t, "attempt": attempt}
            for step, path, size, t, attempt in rows
        ]

    def events(self, run_id: str, after_seq: int = 0) -> list[dict]:
        """A run's events with seq > after_seq, read from events.jsonl (replay for attach)."""
        self._require(run_id)
        events, _ = read_events(self.runs_dir / run_id / EVENTS_FILE, 0)
        seen: set[int] = set()
        out = []
        for event in events:
            seq = event["seq"]
            if isinstance(seq, int) and seq > after_seq and seq not in seen:
                seen.add(seq)
                out.append(event)
        out.sort(key=lambda e: e["seq"])
        return out

    def reindex(self) -> None:
        """Rebuild the database from the run folders."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._rebuild(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._agent_cache.clear()
        self._partial.clear()
        self.refresh()

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        for table in ("runs", "params", "metrics", "checkpoints"):
            conn.execute(f"DELETE FROM {table}")
        with os.scandir(self.runs_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and _RUN_ID.match(e.name))
        for name in names:
            spec = _read_json(self.runs_dir / name / SPEC_FILE)
            if isinstance(spec, dict) and spec.get("run_id") == name:
                self._load_run(conn, spec, fresh=True)


def _when(t: float | None) -> str:
    if t is None:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
