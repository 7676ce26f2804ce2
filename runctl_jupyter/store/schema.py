"""The store's SQLite layout: tables, the columns each query reads, opening a
connection (WAL) and the one transaction shape every writer uses."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 4  # 3: team_runs, team_cursors (store/team.py); 4: team_runs.beat
DB_FILE = "runctl.db"

SCHEMA = """
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
CREATE TABLE team_runs (
    id TEXT PRIMARY KEY, team TEXT NOT NULL, owner TEXT NOT NULL, name TEXT, experiment TEXT,
    project TEXT, tags TEXT NOT NULL DEFAULT '[]', kind TEXT, backend TEXT, sweep_id TEXT,
    rerun_of TEXT, created REAL, params TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL,
    reason TEXT, ev_status TEXT NOT NULL, started REAL, ended REAL, duration REAL,
    prior_duration REAL NOT NULL DEFAULT 0, attempt_started REAL, attempt INTEGER NOT NULL DEFAULT 1,
    exit_code INTEGER, error TEXT, final_metrics TEXT NOT NULL DEFAULT '{}', last_step INTEGER,
    total INTEGER, cost REAL NOT NULL DEFAULT 0, rate REAL, last_heartbeat REAL,
    events TEXT, index_key TEXT NOT NULL, published REAL, beat REAL
);
CREATE INDEX team_runs_created ON team_runs(created, id);
CREATE INDEX team_runs_owner ON team_runs(owner, created, id);
CREATE INDEX team_runs_project ON team_runs(project, created, id);
CREATE INDEX team_runs_status ON team_runs(status);
CREATE TABLE team_cursors (
    team TEXT NOT NULL, owner TEXT NOT NULL, after TEXT NOT NULL, pulled REAL,
    PRIMARY KEY (team, owner)
) WITHOUT ROWID;
"""

SPEC_COLS = ("name", "experiment", "project", "owner", "kind", "backend", "sweep_id", "rerun_of")
STATE_COLS = (
    "status", "reason", "ev_status", "ev_reason", "started", "ended", "duration",
    "prior_duration", "attempt_started", "attempt", "exit_code", "error", "final_metrics",
    "last_step", "total", "cost", "rate", "last_heartbeat", "touched", "status_seq",
    "byte_offset", "last_seq",
)  # fmt: skip
ROW_COLS = (
    "id", "name", "experiment", "project", "owner", "kind", "backend", "status",
    "reason", "created", "started", "ended", "duration", "attempt", "exit_code",
    "last_step", "total", "cost", "rate", "last_heartbeat", "sweep_id",
)  # fmt: skip
# The JSON columns come as one array text a row, parsed for all rows in one call.
ROW_SELECT = (
    "SELECT " + ", ".join(ROW_COLS) + ", ev_status, prior_duration, attempt_started,"
    " '[' || tags || ',' || params || ',' || final_metrics || ',' || coalesce(error, 'null') || ']'"
    " FROM runs"
)
N_ROW_COLS = len(ROW_COLS)
REFRESH_COLS = ("id", "ev_status", "ev_reason", "status", "reason", "last_heartbeat", "touched", "attempt", "byte_offset", "last_seq")  # fmt: skip


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One `BEGIN IMMEDIATE` transaction: committed, or rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def open_db(path: Path, rebuild: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """A connection in WAL mode with the current schema; an older layout is dropped
    and `rebuild` (inside the same transaction) fills the new one from the run folders."""
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
        _create_schema(conn, rebuild)
    return conn


def _create_schema(conn: sqlite3.Connection, rebuild: Callable[[sqlite3.Connection], None]) -> None:
    with immediate(conn):
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:  # new, or an older layout: the index is rebuildable
            tables = conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
            for (table,) in tables:
                conn.execute(f'DROP TABLE "{table}"')
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if tables:
                rebuild(conn)
