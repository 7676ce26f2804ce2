"""Publishing a run to its team's store (docs/teams.md): the summary row teammates
list, written by the S3 sync (agent/s3.py) when the spec has `"team"`.

    spec["team"] = {"team": "vision", "owner": "ann", "bucket": ..., "region": ...}

The sync feeds each new chunk of event lines to `Summary.feed`; after the chunk is
uploaded, `Publisher.publish` puts `summary.json` under the run's team prefix and, at
a status change (or every `progress_seconds` while metrics move), an index entry
`teams/<team>/<owner>/index/<ms>-<run>.json` holding the same row: what a teammate's
pull lists (ListObjectsV2 StartAfter its last key) and reads. While the run is live,
an index entry also goes out every `beat_seconds` (120) as its "still alive" beat: a
reader shows a live run whose newest entry is older than `LOST_BEATS` beats as `lost`
(store/team.py), as it does a local run whose heartbeats stopped. A local run (no `sync`
in its spec) gets a sync of its own under `teams/<team>/<owner>/` (`local_sync_cfg`):
its event chunks, log and record go there too, with the user's own credentials.

Stdlib only; the S3 client is the sync's.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .. import team_keys
from ..events import ACTIVE_STATUSES

PROGRESS_SECONDS = 300.0
BEAT_SECONDS = 120.0  # a live run's "still alive" index entry (c.Runctl.team_beat_seconds)
LOCAL_FINAL_SECONDS = 60.0
NOTEBOOK_STATE = ".team-publish.json"  # a kept instance's run, published by its owner's notebook
SPEC_FIELDS = ("name", "owner", "project", "experiment", "kind", "backend", "sweep_id", "rerun_of", "created", "tags", "params")  # fmt: skip


def local_sync_cfg(team: dict) -> dict:
    """The S3 sync of a local run published to its team: everything under the
    owner's prefix, from the first event, no checkpoints (they stay on this machine)."""
    return {
        "kind": "s3",
        "bucket": team["bucket"],
        "region": team.get("region"),
        "profile": team.get("profile"),  # the user's named profile, if one is set
        "prefix": team_keys.owner_prefix(team["team"], team["owner"]),
        "from_start": True,
        "checkpoints": False,
        "state_dir": ".sync-team",
        "final_deadline": LOCAL_FINAL_SECONDS,  # the run is here; its agent need not linger
    }


class Summary:
    """The summary row of a run, folded from its events as they are cut into chunks."""

    def __init__(self, spec: dict, saved: dict | None = None):
        row = {k: spec.get(k) for k in SPEC_FIELDS}
        row.update(id=spec["run_id"], status="queued", reason=None, started=None, ended=None)
        row.update(duration=None, prior_duration=0.0, attempt_started=None, attempt=1)
        row.update(exit_code=None, error=None, last_step=None, total=None, cost=0.0, rate=None)
        row.update(last_heartbeat=None, final_metrics={})
        self.row: dict[str, Any] = {**row, **(saved or {})}
        self.status_changed = False
        self.progressed = False

    def feed(self, data: bytes) -> None:
        for line in data.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._apply(event)

    def _apply(self, e: dict) -> None:
        row, kind, t = self.row, e.get("type"), e.get("t")
        if isinstance(e.get("attempt"), int):
            row["attempt"] = e["attempt"]
        if kind == "heartbeat":
            row["last_heartbeat"] = t
        elif kind == "metric" and isinstance(e.get("values"), dict):
            row["final_metrics"].update(e["values"])
            row["last_step"] = e.get("step", row["last_step"])
            row["total"] = e.get("total", row["total"])
            self.progressed = True
        elif kind == "cost":
            row["cost"], row["rate"] = e.get("dollars", row["cost"]), e.get("rate")
            self.progressed = True
        elif kind == "status":
            status = e.get("status")
            if status in ("starting", "running") and row["attempt_started"] is None:
                row["attempt_started"] = t
                row["started"] = row["started"] or t
            if status == "resuming" and row["attempt_started"] is not None:
                row["prior_duration"] += max(0.0, (t or 0) - row["attempt_started"])
                row["attempt_started"] = None
            row["status"], row["reason"] = status, e.get("reason")
            self.status_changed = True
        elif kind == "exit":
            row["status"], row["reason"] = e.get("status"), e.get("reason")
            row["exit_code"], row["error"], row["ended"] = e.get("exit_code"), e.get("error"), t
            row["duration"] = row["prior_duration"] + float(e.get("duration") or 0.0)
            row["attempt_started"] = None
            self.status_changed = True


class Publisher:
    """Puts a run's spec, summary and index entries under its team prefix."""

    def __init__(self, s3: Any, spec: dict, events_prefix: str, saved: dict | None = None):
        team = spec["team"]
        self.s3, self.bucket = s3, team["bucket"]
        self.team, self.owner, self.run_id = team["team"], team["owner"], spec["run_id"]
        self.prefix = team_keys.run_prefix(self.team, self.owner, self.run_id)
        self.spec = spec
        self.state: dict[str, Any] = dict(saved or {})
        self.summary = Summary(spec, self.state.get("row"))
        self.summary.row["events"] = events_prefix
        self.state["row"] = self.summary.row  # saved with the sync's state
        self.progress_seconds = float(team.get("progress_seconds", PROGRESS_SECONDS))
        # the reader's lost rule needs the beat; None: nobody beats (a notebook publishing)
        beat = team.get("beat_seconds", BEAT_SECONDS)
        self.beat_seconds = float(beat) if beat else None
        self.summary.row["beat"] = self.beat_seconds

    def publish(self, final: bool = False) -> bool:
        """Put what changed; True when nothing failed (the caller retries and keeps
        the state it saves from `self.state`)."""
        if not self.state.get("spec"):
            self._put(self.prefix + "spec.json", self.spec)
            self.state["spec"] = True
        now = time.time()
        s = self.summary
        since = now - self.state.get("indexed", 0.0)
        due = s.progressed and since >= self.progress_seconds
        beat = bool(self.beat_seconds) and s.row["status"] in ACTIVE_STATUSES
        beat = beat and since >= (self.beat_seconds or 0.0)
        if not (s.status_changed or due or beat or final or not self.state.get("published")):
            return True
        row = dict(s.row, published=now)
        bare = (
            beat and self.state.get("published") and not (s.status_changed or s.progressed or final)
        )
        if not bare:
            self._put(self.prefix + team_keys.SUMMARY_FILE, row)  # a bare beat: the entry only
        millis = max(int(now * 1000), int(self.state.get("millis", 0)) + 1)  # strictly later
        self._put(team_keys.index_key(self.team, self.owner, millis, self.run_id), row)
        self.state.update(published=True, millis=millis, indexed=now)
        s.status_changed = s.progressed = False
        return True

    def _put(self, key: str, body: dict) -> None:
        data = json.dumps(body, default=str).encode()
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")


def publish_mirrored(s3: Any, run_dir: Path, spec: dict, events_prefix: str, final: bool) -> None:
    """Publish a run whose agent may not (a kept instance's shared role has no team
    rights) from its owner's notebook, with the owner's own credentials, each time the
    notebook pulls new events of it: the events not fed yet, then what changed. Its
    rows carry no beat (the notebook is not the run's agent), so no reader marks them
    lost by age. Raises what S3 raises; the next call feeds the same events again."""
    run_dir = Path(run_dir)
    path = run_dir / NOTEBOOK_STATE
    try:
        saved = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        saved = {}
    spec = {**spec, "team": {**spec["team"], "beat_seconds": None}}
    publisher = Publisher(s3, spec, events_prefix, saved.get("team"))
    offset = int(saved.get("offset", 0))
    with open(run_dir / "events.jsonl", "rb") as f:
        f.seek(offset)
        data = f.read()
    data = data[: data.rfind(b"\n") + 1]
    publisher.summary.feed(data)
    publisher.publish(final)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"offset": offset + len(data), "team": publisher.state}, default=str))
    os.replace(tmp, path)
