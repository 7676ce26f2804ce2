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

Modules: store_schema (tables, connection, transactions), store_fold (a run
folder and its events folded into rows), store_lost (lost detection),
store_rows (rows for readers, RUN references).
"""

from __future__ import annotations

import math
import os
import sqlite3
import threading
import time
from pathlib import Path

from ..errors import RunctlError, RunNotFound
from ..events import ACTIVE_STATUSES, ALL_STATUSES, EVENTS_FILE, read_events
from ..record.notebook import RECORD_FILE
from .fold import (
    RUN_ID,
    SPEC_FILE,
    STATUS_FILE,
    apply_launcher,
    dumps,
    index_events,
    load_run,
    read_json,
    read_state,
    write_state,
)
from .lost import AgentWatch, mark_lost
from .rows import experiment_words, ref_words, resolve_ref, rows_from_records
from .schema import DB_FILE, REFRESH_COLS, ROW_SELECT, immediate, open_db
from .team import OWN as TEAM_MIRROR_NOT
from .team import list_sql as team_list_sql
from .team import mark_lost as team_mark_lost
from .trust import sign_own_record

_ACTIVE = tuple(sorted(ACTIVE_STATUSES))
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
        self._agents = AgentWatch(self.runs_dir)
        self._partial: dict[str, int] = {}  # run -> events.jsonl size that held no new line
        self._unsigned: list[str] = []  # ended runs whose record refresh(sign_later=True) left
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
        conn = open_db(self.db_path, self._rebuild)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (store/team.py's queries and a team pull use it)."""
        return self._conn()

    def close(self) -> None:
        """Close this thread's connection (a later call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ---- run folders ----------------------------------------------------------

    def run_dir(self, run_id: str) -> Path:
        if not isinstance(run_id, str) or not RUN_ID.match(run_id):
            raise RunNotFound(f"no run {run_id!r}: see `runctl runs` for run ids")
        return self.runs_dir / run_id

    def add_run(self, spec: dict) -> None:
        """Index a new run from its spec (the launcher wrote runs/<id>/spec.json): status
        `queued`. Idempotent: adding a known run re-reads it from its folder."""
        run_id = spec.get("run_id") if isinstance(spec, dict) else None
        if not run_id:
            raise RunctlError("the run spec has no run_id: write spec.json with store/folders.py")
        self.run_dir(run_id)
        with immediate(self._conn()) as conn:
            load_run(conn, self.runs_dir, spec)

    # ---- indexing -------------------------------------------------------------

    def refresh(self, run_id: str | None = None, sign_later: bool = False) -> list[dict]:
        """Index new events of unfinished runs (all of them, or just `run_id`, which is
        read even when finished, e.g. just after a resume), then mark lost runs.
        Returns the new events of `run_id` this call indexed, in seq order.
        `sign_later`: an ended run's record is signed by `sign_pending()`, which a live
        view calls after it showed the events (nbformat's first import takes seconds)."""
        conn = self._conn()
        select = "SELECT " + ", ".join(REFRESH_COLS) + " FROM runs"
        if run_id is None:
            marks = ", ".join("?" * len(_ACTIVE))
            rows = conn.execute(f"{select} WHERE ev_status IN ({marks})", _ACTIVE).fetchall()
        else:
            self._require(run_id)
            rows = conn.execute(f"{select} WHERE id = ?", (run_id,)).fetchall()
        new_events: list[dict] = []
        now = time.time()
        for values in rows:
            row = dict(zip(REFRESH_COLS, values))
            rid = row["id"]
            # Look at the agent *before* reading events: an agent that wrote `exit`
            # and then died is seen dead only after its exit is in the file.
            agent_dead = row["ev_status"] in ACTIVE_STATUSES and self._agents.dead(rid, row)
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
                if any(e.get("type") == "exit" for e in events):  # record.ipynb is written
                    self._unsigned.append(rid)
                    if not sign_later:
                        self.sign_pending()
                row.update((k, state[k]) for k in row if k in state)
                # Gone before the read and still gone after it (not replaced by a
                # new attempt's agent meanwhile): these events were its last.
                agent_dead = agent_dead and self._agents.dead(rid, row)
            mark_lost(conn, row, now, agent_dead, self.lost_timeout)
        return new_events

    def sign_pending(self) -> None:
        """Sign the records of the runs that ended in a refresh (trust.py: this home's own)."""
        while True:
            try:
                rid = self._unsigned.pop(0)  # another thread's refresh may sign it first
            except IndexError:
                return
            sign_own_record(self.runs_dir / rid / RECORD_FILE, self.runs_dir / rid)

    def _index_tx(
        self, conn: sqlite3.Connection, run_id: str, truncated: bool
    ) -> tuple[list[dict], dict]:
        with immediate(conn):
            if truncated:  # the stream was replaced: rebuild this run from its folder
                spec = read_json(self.runs_dir / run_id / SPEC_FILE)
                if isinstance(spec, dict) and spec.get("run_id") == run_id:
                    load_run(conn, self.runs_dir, spec)
            return index_events(conn, self.runs_dir, run_id)

    def set_status(self, run_id: str, status: str, reason: str | None = None) -> None:
        """The launcher's status change (e.g. `failed` for a launch that failed before
        the agent started, `starting` before a resumed attempt). Kept in status.json."""
        if status not in ALL_STATUSES or status == "lost":
            allowed = ", ".join(sorted(ALL_STATUSES - {"lost"}))
            raise RunctlError(f"unknown run status {status!r}: use one of {allowed}")
        self._require(run_id)
        with immediate(self._conn()) as conn:
            # Index first, so the stamp is the last seq really in the file.
            last_seq = index_events(conn, self.runs_dir, run_id)[1]["last_seq"]
            launcher = {"status": status, "reason": reason, "t": time.time(), "seq": last_seq}
            path = self.runs_dir / run_id / STATUS_FILE
            tmp = path.with_name(f".{STATUS_FILE}.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(dumps(launcher), encoding="utf-8")
            os.replace(tmp, path)
            st = read_state(conn, run_id)
            apply_launcher(st, launcher)
            st["status"], st["reason"] = st["ev_status"], st["ev_reason"]
            write_state(conn, run_id, st)

    # ---- reading --------------------------------------------------------------

    def _require(self, run_id: str) -> None:
        """Make sure a run is indexed: a folder with a spec.json not yet in the
        database (a launcher that died before add_run, a copied folder) is added."""
        conn = self._conn()
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            return
        spec = read_json(self.run_dir(run_id) / SPEC_FILE)
        if isinstance(spec, dict) and spec.get("run_id") == run_id:
            self.add_run(spec)
            return
        raise RunNotFound(f"no run {run_id!r}: see `runctl runs` for run ids")

    def get(self, run_id: str) -> dict:
        """One run's row (call refresh() first for the newest state)."""
        self._require(run_id)
        records = self._conn().execute(f"{ROW_SELECT} WHERE id = ?", (run_id,)).fetchall()
        return rows_from_records(records, self.runs_dir)[0]

    def resolve(self, ref: str) -> str:
        """A run id from a reference: an id, a run name (the newest run of that name),
        or a unique prefix of an id."""
        return resolve_ref(self._conn(), ref, self._require)

    def completion_words(self, kind: str, prefix: str, limit: int = 200) -> list[str]:
        """For tab completion, without a refresh: run ids and names ("runs"), newest
        first, or experiment names ("experiments"), starting with `prefix`."""
        words = ref_words if kind == "runs" else experiment_words
        return words(self._conn(), prefix, limit)

    def list_runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        project: str | None = None,
        sweep_id: str | None = None,
        limit: int | None = 50,
        owner: str | None = None,
    ) -> list[dict]:
        """Rows, newest first (call refresh() first for live states). `status` is a
        run state, or "active" for any state of a run that has not ended. `owner`: None
        for this home's runs, "all" or a name for teammates' pulled runs too."""
        where: list[str] = []
        args: list[str | int] = []
        if status == "active":
            states = sorted(ACTIVE_STATUSES)
            where.append(f"status IN ({', '.join('?' * len(states))})")
            args.extend(states)
            status = None
        for col, value in (("experiment", experiment), ("status", status), ("project", project), ("sweep_id", sweep_id)):  # fmt: skip
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if owner is None:  # this home's runs (not teammates' mirrored here)
            sql = ROW_SELECT + " WHERE " + " AND ".join([*where, TEAM_MIRROR_NOT])
        else:
            team_mark_lost(self._conn())  # a teammate's run whose beats stopped
            sql, args = team_list_sql(where, args, owner)
        sql += " ORDER BY created DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(int(limit))
        return rows_from_records(self._conn().execute(sql, args).fetchall(), self.runs_dir)

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
        with immediate(self._conn()) as conn:
            self._rebuild(conn)
        self._agents.cache.clear()
        self._partial.clear()
        self.refresh()

    def _rebuild(self, conn: sqlite3.Connection) -> None:
        for table in ("runs", "params", "metrics", "checkpoints"):
            conn.execute(f"DELETE FROM {table}")
        with os.scandir(self.runs_dir) as entries:
            names = sorted(e.name for e in entries if e.is_dir() and RUN_ID.match(e.name))
        for name in names:
            spec = read_json(self.runs_dir / name / SPEC_FILE)
            if isinstance(spec, dict) and spec.get("run_id") == name:
                load_run(conn, self.runs_dir, spec, fresh=True)
