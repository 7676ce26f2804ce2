"""What the lab extension's endpoints answer, with no web code: plain dicts in,
plain dicts out, domain errors as `RunctlError` subclasses (handlers.py maps them
to 4xx JSON).

It reads the same store as the magics and the shell (`Store` under the
`Runctl.home` folder), never a copy: the sidebar and `%runctl runs` always agree.
Every string in an answer comes from a run and is shown by the frontend as text.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path
from typing import Any

from ..config import Runctl
from ..display.record_copy import record_copy_name
from ..display.series import downsample
from ..errors import RunctlError, RunNotFound
from ..events import ACTIVE_STATUSES, ALL_STATUSES
from ..session import Session
from ..store.folders import read_spec

log = logging.getLogger(__name__)

MAX_PAGE = 500
SPARK_POINTS = 40
DETAIL_POINTS = 500
MAX_DETAIL_POINTS = 5000
RECORD_FILE = "record.ipynb"
# Readers share one refresh of the store at most this often (seconds): a few open
# browser tabs polling do not each re-read every live run's events.
REFRESH_EVERY = 0.5

# AWS is asked (describe calls, in the region/profile of c.AWSBackend) only when
# the store has AWS runs or the default backend is aws, and at most this often.
RESOURCES_EVERY = 30.0
PULL_EVERY = 5.0  # seconds between pulls of live remote runs' events (S3)
NO_AWS_NOTE = "No AWS runs in this store: local runs use no cloud resources."


class BadRequest(RunctlError):
    """A query argument the API cannot use (handlers answer 400)."""


class RunNotActive(RunctlError):
    """The action needs a live run, and this one has ended (handlers answer 409)."""


class RecordNotReady(RunctlError):
    """The run has no record.ipynb yet: it is written when the run ends (409)."""


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _metrics_dict(values: dict) -> dict:
    return {str(k): _finite(v) for k, v in values.items()}


def _int_arg(value: Any, name: str, default: int, low: int, high: int) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"{name} must be a whole number, got {value!r}") from None
    if number < low or number > high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {number}")
    return number


class LabAPI:
    """The endpoints' logic over one Session (one store) for the server's life."""

    def __init__(self, config: Runctl | None = None) -> None:
        self.session = Session(config=config if config is not None else Runctl())
        self.store = self.session.store
        self._refreshed = 0.0
        self._refresh_lock = threading.Lock()
        # sparklines of ended runs never change: keyed by (run id, status, last step)
        self._sparks: dict[tuple, dict] = {}
        self._pulled = 0.0
        self._pulling = threading.Event()
        self._resources: tuple[float, list, str | None] | None = None
        self._resources_lock = threading.Lock()

    # ---- helpers --------------------------------------------------------------

    def refresh(self, force: bool = False) -> None:
        """Index new events of live runs, at most every REFRESH_EVERY seconds."""
        with self._refresh_lock:
            now = time.monotonic()
            if force or now - self._refreshed >= REFRESH_EVERY:
                self._start_pull(now)
                self.store.refresh()
                self._refreshed = time.monotonic()

    def _start_pull(self, now: float) -> None:
        """Pull live remote runs in the background: a slow S3 never holds a listing;
        what a pull brings is indexed by the next refresh."""
        if now - self._pulled < PULL_EVERY or self._pulling.is_set():
            return
        self._pulled = now
        self._pulling.set()
        threading.Thread(target=self._pull_remote, name="runctl-pull", daemon=True).start()

    def _pull_remote(self) -> None:
        """Bring new events of live remote (AWS) runs into their local folders, as
        an attached notebook would: the sidebar shows them live with no kernel."""
        try:
            for state in sorted(ACTIVE_STATUSES):
                for row in self.store.list_runs(status=state, limit=None):
                    if (row["backend"] or "local") == "local":
                        continue
                    try:
                        run_dir = self.store.run_dir(row["id"])
                        spec = read_spec(run_dir)
                        backend = self.session.backend(row["backend"])
                        backend.pull(run_dir, spec)
                        if state == "resuming":  # a multi-node run: its next attempt, once
                            self.session.relaunch_whole(row["id"], backend, spec)
                    except Exception as exc:  # one unreachable run must not stop the others
                        log.warning("runctl: could not pull run %s: %s", row["id"], exc)
        finally:
            self.store.close()  # this thread's connection
            self._pulling.clear()

    def _row(self, row: dict, summary: dict | None = None) -> dict:
        out = {
            k: _finite(row.get(k))
            for k in (
                "id", "name", "experiment", "project", "owner", "kind", "backend", "status",
                "reason", "created", "started", "ended", "duration", "attempt", "exit_code",
                "last_step", "total", "cost", "rate", "sweep_id",
            )
        }  # fmt: skip
        out["cost"] = out["cost"] or 0.0
        out["tags"] = row.get("tags") or []
        out["metrics"] = _metrics_dict(row.get("final_metrics") or {})
        out["active"] = row.get("status") in ACTIVE_STATUSES
        out["has_record"] = not row.get("team") and (Path(row["run_dir"]) / RECORD_FILE).is_file()
        out["team"] = row.get("team")
        error = row.get("error")
        out["error"] = (
            {"type": error.get("type"), "message": error.get("message")}
            if isinstance(error, dict)
            else None
        )
        if summary is not None:
            out["spark"] = summary
        return out

    def _spark(self, row: dict) -> dict | None:
        """The first metric's curve, reduced to about SPARK_POINTS points."""
        metrics = row.get("final_metrics") or {}
        if not metrics or row.get("team"):  # a teammate's: its points are not fetched here
            return None
        key = next(iter(metrics))
        cache_key = (row["id"], row["status"], row["last_step"], row.get("attempt"))
        cached = self._sparks.get(cache_key)
        if cached is not None:
            return cached
        points = self.store.metrics(row["id"], keys=[key]).get(key, [])
        _, ys = downsample(points, SPARK_POINTS)
        spark = {"metric": key, "values": [_finite(y) for y in ys]}
        if row["status"] not in ACTIVE_STATUSES:
            if len(self._sparks) > 5000:
                self._sparks.clear()
            self._sparks[cache_key] = spark
        return spark

    def _resolve(self, ref: str) -> str:
        if not isinstance(ref, str) or not ref.strip():
            raise RunNotFound("no run given: pass a run id, id prefix or name")
        return self.store.resolve(ref)

    # ---- endpoints ------------------------------------------------------------

    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        project: str | None = None,
        sweep: str | None = None,
        limit: Any = None,
        offset: Any = None,
        spark: bool = True,
        owner: str | None = None,
    ) -> dict:
        """A page of runs, newest first. `status` is a run state or `active` (any
        live state); `owner` "all" or a name adds teammates' runs (c.Runctl.team, pulled
        in the background). Answers `next_offset` (null on the last page) and `team`."""
        limit = _int_arg(limit, "limit", 50, 1, MAX_PAGE)
        offset = _int_arg(offset, "offset", 0, 0, 10**9)
        if status not in (None, "", "active") and status not in ALL_STATUSES:
            known = ", ".join(sorted(ALL_STATUSES))
            raise BadRequest(f"unknown status {status!r}: use active or one of {known}")
        self.refresh()
        owner = owner or None
        if owner is not None:
            self.session.team.pull(wait=0.0)  # at most every few seconds, never waited for
        want = offset + limit + 1
        filters = {"experiment": experiment or None, "project": project or None, "sweep_id": sweep or None}  # fmt: skip
        rows = self.store.list_runs(status=status or None, limit=want, owner=owner, **filters)
        page = rows[offset : offset + limit]
        more = len(rows) > offset + limit
        return {
            "runs": [self._row(r, self._spark(r) if spark else None) for r in page],
            "offset": offset,
            "limit": limit,
            "next_offset": offset + limit if more else None,
            "summary": self.live_summary(refresh=False),
            "team": self.session.config.team or None,
        }

    def live_summary(self, refresh: bool = True) -> dict:
        """What the status bar shows: live runs and their burn rate ($/h)."""
        if refresh:
            self.refresh()
        live = [
            r for s in sorted(ACTIVE_STATUSES) for r in self.store.list_runs(status=s, limit=None)
        ]
        return {
            "running": sum(1 for r in live if r["status"] == "running"),
            "active": len(live),
            "rate": sum(r["rate"] or 0.0 for r in live),
        }

    def run(self, ref: str, max_points: Any = None) -> dict:
        """One run: its row, params and every metric downsampled to `max_points`
        (min/max buckets, so a spike is never averaged away; the store keeps all)."""
        max_points = _int_arg(max_points, "max_points", DETAIL_POINTS, 10, MAX_DETAIL_POINTS)
        run_id = self._resolve(ref)
        self.store.refresh(run_id)
        row = self.store.get(run_id)
        series = {}
        for key, points in self.store.metrics(run_id).items():
            steps, values = downsample(points, max_points)
            series[key] = {
                "steps": steps,
                "values": [_finite(v) for v in values],
                "count": len(points),
            }
        out = self._row(row)
        out["params"] = {str(k): v for k, v in (row.get("params") or {}).items()}
        out["series"] = series
        out["checkpoints"] = len(self.store.checkpoints(run_id))
        return out

    def stop(self, ref: str, force: bool = False) -> dict:
        """Ask a live run to stop (graceful; `force` kills at once) without waiting
        for it to end: the answer is the run as it is now."""
        run_id = self._resolve(ref)
        self.store.refresh(run_id)
        row = self.store.get(run_id)
        if row["status"] not in ACTIVE_STATUSES:
            raise RunNotActive(f"run {run_id} is {row['status']}, not running: nothing to stop")
        self.session.backend_stop(run_id, force=bool(force))
        self.store.refresh(run_id)
        return {"stopping": True, "force": bool(force), "run": self._row(self.store.get(run_id))}

    def record(self, ref: str) -> tuple[str, Path]:
        """(run id, path) of a run's record.ipynb; RecordNotReady while it runs."""
        run_id = self._resolve(ref)
        path = self.store.run_dir(run_id) / RECORD_FILE
        if not path.is_file():
            self.store.refresh(run_id)
            status = self.store.get(run_id)["status"]
            raise RecordNotReady(
                f"run {run_id} has no record.ipynb yet ({status}): it is written when the run ends"
            )
        return run_id, path

    def record_copy_name(self, ref: str) -> tuple[str, str]:
        """(run id, file name) of the copy of a record opened in the lab."""
        run_id, _ = self.record(ref)
        return run_id, record_copy_name(self.store.get(run_id).get("name"), run_id)

    def resources(self) -> dict:
        """runctl-managed cloud resources (aws/resources.py), each with the $/h of
        its run when the store knows it, plus the live burn rate. Without AWS runs
        nothing is asked of AWS and the list is empty with a `note` saying why."""
        live = self.live_summary()
        resources, note = self._cloud_resources()
        return {
            "resources": resources,
            "note": note,
            "rate": live["rate"],
            "running": live["running"],
        }

    def _aws_in_use(self) -> bool:
        if self.session.config.backend == "aws":
            return True
        return any(r["backend"] == "aws" for r in self.store.list_runs(limit=None))

    def _cloud_resources(self) -> tuple[list, str | None]:
        cached = self._resources
        if cached is not None and time.monotonic() - cached[0] < RESOURCES_EVERY:
            return cached[1], cached[2]
        if not self._resources_lock.acquire(blocking=False):
            # another request is asking AWS right now: never queue behind it
            return (cached[1], cached[2]) if cached else ([], "listing AWS resources...")
        try:
            if not self._aws_in_use():
                found: list = []
                note: str | None = NO_AWS_NOTE
            else:
                try:
                    found, note = self._list_aws()
                except Exception as exc:  # no credentials, no network: say so, list nothing
                    found, note = [], f"could not list AWS resources: {exc}"
            self._resources = (time.monotonic(), found, note)
            return found, note
        finally:
            self._resources_lock.release()

    def _aws_clients(self) -> Any:
        """Clients in c.AWSBackend's region/profile, with short timeouts and few
        retries: a listing for a panel must fail fast, not retry for minutes."""
        from botocore.config import Config

        from ..aws.clients import Clients

        backend = self.session.backend("aws")
        clients = Clients(
            region=backend.region or None,
            profile=backend.profile or None,
            connect_timeout=3.0,
            read_timeout=10.0,
        )
        clients.config = clients.config.merge(
            Config(retries={"mode": "standard", "max_attempts": 2})
        )
        return clients

    def _list_aws(self) -> tuple[list[dict], str | None]:
        """The rows read, and a note naming the describe calls that failed (if any)."""
        from ..aws.resources import list_resources

        out = []
        listing = list_resources(self._aws_clients())
        for resource in listing:
            row = resource.row()
            row["rate"] = None
            if row["run"]:
                try:
                    run = self.store.get(row["run"])
                except RunctlError:
                    run = None
                if run is not None:
                    row["run_status"] = run["status"]
                    if run["status"] in ACTIVE_STATUSES and resource.kind == "instance":
                        row["rate"] = run["rate"]
            out.append({k: _finite(v) for k, v in row.items()})
        if not listing.failures:
            return out, None
        first = listing.failures[0]
        more = f" (and {len(listing.failures) - 1} more)" if len(listing.failures) > 1 else ""
        return out, f"could not list AWS resources: {first.message or first.describe()}{more}"

    def cost(self) -> dict:
        """Spend: the sum of run costs (local runs cost 0), by backend and by
        experiment, and the live burn rate."""
        self.refresh()
        rows = self.store.list_runs(limit=None)
        by_backend: dict[str, float] = {}
        by_experiment: dict[str, float] = {}
        total = 0.0
        day_ago = time.time() - 86400
        last_day = 0.0
        for row in rows:
            cost = row["cost"] or 0.0
            total += cost
            backend = row["backend"] or "local"
            by_backend[backend] = by_backend.get(backend, 0.0) + cost
            experiment = row["experiment"] or "default"
            by_experiment[experiment] = by_experiment.get(experiment, 0.0) + cost
            if (row["created"] or 0.0) >= day_ago:
                last_day += cost
        live = self.live_summary(refresh=False)
        return {
            "total": total,
            "last_24h": last_day,
            "runs": len(rows),
            "by_backend": by_backend,
            "by_experiment": dict(sorted(by_experiment.items(), key=lambda kv: -kv[1])),
            "rate": live["rate"],
            "running": live["running"],
        }
