"""pull(): a remote run's new events, from numbered S3 chunks into its local mirror.

Paced so a panel may call it as often as it likes: every 0.25 s until the first metric
(what the cell waits for), every 1 s for the first 30 s, then 10 s while events flow,
backing off to 20 s when idle (~700 calls per run-hour, docs/aws.md). The last chunk read is kept in the mirror (.s3pull.json), so a new
session starts after it. Once the attempt's exit arrives: stdout.log, record.ipynb
and env.json. A multi-node attempt's exit or `resuming` ends its nodes and groups.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..aws.clients import error_code
from ..events import append_mirrored, last_seq
from . import aws_cluster
from .aws_target import read_target

PULL_STATE = ".s3pull.json"
_PUBLISH_FAILED: set = set()  # runs whose team publish failure was said


def pull(backend: Any, run_dir: Path, spec: dict, force: bool = False) -> int:
    """Bring new event chunks into the mirror; returns how many events were added."""
    run_dir = Path(run_dir)
    target = read_target(run_dir, spec)
    if not target.get("bucket"):
        return 0
    state = _pull_state(backend, run_dir, spec["run_id"])
    now = time.monotonic()
    if not force and now < state["next_poll"]:
        return 0
    s3 = backend.clients_for(target.get("region")).s3
    prefix = f"{target.get('prefix', backend.prefix)}runs/{spec['run_id']}/"
    kwargs: dict[str, Any] = {"Bucket": target["bucket"], "Prefix": prefix + "events/"}
    if state["last_key"]:
        kwargs["StartAfter"] = state["last_key"]
    resp = s3.list_objects_v2(**kwargs)
    keys = sorted(o["Key"] for o in resp.get("Contents", []))
    added = 0
    exits = []
    resumed = False
    for key in keys:
        body = s3.get_object(Bucket=target["bucket"], Key=key)["Body"].read()
        new_lines = []
        for line in body.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if not isinstance(event, dict) or event.get("seq", 0) <= state["seq"]:
                continue  # a duplicate is harmless and ignored
            state["seq"] = event["seq"]
            new_lines.append(json.dumps(event, separators=(",", ":")) + "\n")
            if event.get("type") == "metric":
                state["metric"] = True
            elif event.get("type") == "exit":
                exits.append(event)
            elif event.get("status") == "resuming" and target.get("cluster"):
                resumed = True  # this attempt's nodes are done: the next gets new ones
        if new_lines:
            new_lines = append_mirrored(run_dir / "events.jsonl", new_lines)
            added += len(new_lines)
            _append_log(run_dir, new_lines)
        state["last_key"] = key
        _save_pull_state(run_dir, state)
    if exits:
        for name in ("stdout.log", "record.ipynb", "env.json", "output.ipynb"):
            _download(s3, target["bucket"], prefix + name, run_dir / name)
        _download_models(s3, target["bucket"], prefix, run_dir)
    if spec.get("team") and target.get("keep") and (added or exits):
        _publish_kept(s3, run_dir, spec, prefix + "events/", bool(exits))
    if target.get("cluster") and (exits or resumed):
        # no node, placement group or security group outlives the attempt
        aws_cluster.ended(backend.clients_for(target.get("region")), target)
    _pace(backend, state, bool(keys))
    return added


def _publish_kept(s3: Any, run_dir: Path, spec: dict, events: str, final: bool) -> None:
    """A kept instance's run (`--keep`, `--instance`): its agent's shared role may not
    write to the team, so this notebook publishes it with its owner's own credentials
    (agent/team.py `publish_mirrored`, docs/teams.md); a failure is said once a run and
    retried at the next pull."""
    from ..agent.team import publish_mirrored

    try:
        publish_mirrored(s3, run_dir, spec, events, final)
    except Exception as exc:  # noqa: BLE001 - a pull never fails for the team store
        if spec["run_id"] not in _PUBLISH_FAILED:
            _PUBLISH_FAILED.add(spec["run_id"])
            from ..aws.errors import explain, is_aws

            why = explain(exc) if is_aws(exc) else f"{type(exc).__name__}: {exc}"
            print(f"[runctl] run {spec['run_id']} not published to the team yet: {why}",
                  file=sys.stderr, flush=True)  # fmt: skip


def _pace(backend: Any, state: dict, flowing: bool) -> None:
    now = time.monotonic()
    if now - state["since"] < backend.fast_seconds:
        fast = state.get("fast_poll", backend.fast_poll)  # a dev restart: faster
        # until the first metric arrives, faster still (issue 19: the cold start)
        state["interval"] = fast if state["metric"] else min(fast, backend.first_metric_poll)
    elif flowing:
        state["interval"] = backend.poll_interval
    else:  # idle: back off (heartbeat chunks come every 20 s, well inside the lost timeout)
        state["interval"] = min(
            max(state["interval"], backend.poll_interval) * 1.5, backend.max_poll_interval
        )
    state["next_poll"] = now + state["interval"]


def _pull_state(backend: Any, run_dir: Path, run_id: str) -> dict:
    state = backend._pull.get(run_id)
    if state is None:
        saved: dict = {}
        try:
            saved = json.loads((run_dir / PULL_STATE).read_text())
        except (FileNotFoundError, ValueError):
            pass
        state = {
            "last_key": saved.get("last_key", ""),
            "seq": last_seq(run_dir / "events.jsonl"),
            "next_poll": 0.0,
            "interval": backend.poll_interval,
            "since": time.monotonic(),
            "metric": False,  # a metric pulled yet (until then, polls are quicker)
        }
        backend._pull[run_id] = state
    return state


def _save_pull_state(run_dir: Path, state: dict) -> None:
    tmp = run_dir / f"{PULL_STATE}.{_unique()}.tmp"  # two followers save at once
    tmp.write_text(json.dumps({"last_key": state["last_key"]}))
    os.replace(tmp, run_dir / PULL_STATE)


def _append_log(run_dir: Path, lines: list[str]) -> None:
    """While a run streams, the mirror's stdout.log grows from its `log` events (no extra
    call); the instance's own stdout.log replaces it when the attempt's exit arrives."""
    parts = []
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "log" and isinstance(event.get("text"), str):
            parts.append(event["text"])
        elif (
            event.get("type") == "status"
            and event.get("status") == "starting"
            and event.get("attempt", 1) > 1
        ):
            parts.append(f"=== attempt {event['attempt']} ===\n")
    if parts:
        with open(run_dir / "stdout.log", "a", encoding="utf-8") as f:
            f.write("".join(parts))


def _unique() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def _download(s3: Any, bucket: str, key: str, dest: Path) -> bool:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("NoSuchKey", "404"):
            return False
        raise
    tmp = dest.with_name(f"{dest.name}.{_unique()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, dest)
    return True


def _download_models(s3: Any, bucket: str, prefix: str, run_dir: Path) -> None:
    """The files `runctl.register_model` wrote on the instance (`models/`), so the
    registry here can make them versions (store/model_sync.py checks their digests)."""
    from ..paths import path_under

    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "models/")
    for page in pages:
        for obj in page.get("Contents", []):
            dest = path_under(run_dir, obj["Key"][len(prefix) :])  # stays in the run folder
            dest.parent.mkdir(parents=True, exist_ok=True)
            _download(s3, bucket, obj["Key"], dest)
