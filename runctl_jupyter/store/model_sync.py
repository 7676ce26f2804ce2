"""Versions from runs, numbered by the home that reads them (a run on an instance
cannot number them): each `runctl.register_model(...)` call (a `model` event), and
`--register-model NAME [--register-if EXPR]` (the run's latest checkpoint, once it
succeeded and the condition holds on its final metrics). Reading a run twice never
registers it twice."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..events import FINAL_STATUSES, read_events
from ..params.conditions import holds, parse_condition
from ..registry import Registry, digest_of
from .folders import read_spec

_MARK = ".synced"
_SLACK = 300.0  # seconds: a run whose end was indexed late is still read


def _lineage(store: Any, row: dict, run_dir: Path) -> dict[str, Any]:
    try:
        code = (run_dir / "code.py").read_bytes()
    except OSError:
        code = b""
    try:
        env = json.loads((run_dir / "env.json").read_text())
    except (OSError, ValueError):
        env = {}
    data = env.get("data")
    return {
        "run_id": row["id"],
        "attempt": row.get("attempt"),
        "experiment": row.get("experiment"),
        "project": row.get("project"),
        "params": row.get("params") or {},
        "metrics": row.get("final_metrics") or {},
        "code_digest": hashlib.sha256(code).hexdigest() if code else None,
        "data_digest": hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
        if data
        else None,
        "python": (env.get("python") or {}).get("version")
        if isinstance(env.get("python"), dict)
        else env.get("python"),
    }


def _already(registry: Registry, name: str, run_id: str, artifact: str) -> bool:
    try:
        versions = registry.versions(name)
    except Exception:  # noqa: BLE001 - a bad name is reported where it is registered
        return False
    return any(v.get("run_id") == run_id and v.get("artifact") == artifact for v in versions)


def _register(
    registry: Registry, name: str, artifact: Path, lineage: dict, how: str, expected: str = ""
) -> str:
    if _already(registry, name, lineage["run_id"], str(artifact)):
        return ""
    if not artifact.exists():
        return f"run {lineage['run_id']}: {artifact} is not here (yet): {name} not registered"
    digest, size = digest_of(artifact)
    if expected and digest != expected:  # the run's own digest (an AWS run's, after S3)
        return (
            f"run {lineage['run_id']}: {artifact} is not the file the run registered "
            f"(sha256 {digest[:12]}..., the run said {expected[:12]}...): {name} not registered"
        )
    entry = registry.register(name, str(artifact), digest, size, source=how, **lineage)
    return f"registered {name} version {entry['version']} from run {lineage['run_id']} ({how})"


def sync_run(store: Any, registry: Registry, run_id: str) -> list[str]:
    """Register what one ended run asked for; the lines to say."""
    row = store.get(run_id)
    if row["status"] not in FINAL_STATUSES:
        return []
    run_dir = store.run_dir(run_id)
    lineage = _lineage(store, row, run_dir)
    said: list[str] = []
    events, _ = read_events(run_dir / "events.jsonl")
    named = set()
    for event in events:
        if event.get("type") == "model" and isinstance(event.get("path"), str):
            named.add(event["name"])
            line = _register(
                registry,
                event["name"],
                run_dir / event["path"],
                lineage,
                "register_model",
                str(event.get("digest") or ""),
            )
            said.append(line)
    options = read_spec(run_dir).get("options") or {}
    name = options.get("register_model")
    # a sweep's trial never registers itself: the sweep registers its best trial
    if name and name not in named and row["status"] == "succeeded" and not row.get("sweep_id"):
        said.append(_register_best(store, registry, row, name, options, lineage))
    return [line for line in said if line]


def _register_best(
    store: Any, registry: Registry, row: dict, name: str, options: dict, lineage: dict
) -> str:
    """`--register-model NAME`: the run's latest checkpoint, if `--register-if` holds."""
    condition = options.get("register_if")
    if condition:
        ok, why = holds(parse_condition(condition), row.get("final_metrics") or {})
        if not ok:
            return f"run {row['id']}: {name} not registered: {why}"
    how = "--register-model" + (f", {condition}" if condition else "")
    return register_checkpoint(store, registry, row["id"], name, how, lineage)


def register_run(store: Any, registry: Registry, run_id: str, name: str, condition: Any) -> str:
    """A sweep's best trial (sweeps/scheduler.py): as `--register-model` on that run."""
    row = store.get(run_id)
    options = {"register_if": condition} if condition else {}
    lineage = _lineage(store, row, store.run_dir(run_id))
    return _register_best(store, registry, row, name, options, lineage)


def register_checkpoint(
    store: Any,
    registry: Registry,
    run_id: str,
    name: str,
    how: str = "models register",
    lineage: dict | None = None,
) -> str:
    """A run's latest checkpoint as a new version of `name` (the line to say)."""
    row = store.get(run_id)
    lineage = lineage or _lineage(store, row, store.run_dir(run_id))
    checkpoints = store.checkpoints(run_id)
    if not checkpoints:
        return (
            f"run {run_id}: {name} not registered: the run saved no checkpoint "
            "(call runctl.save_checkpoint(model), or runctl.register_model(model, NAME))"
        )
    latest = max(checkpoints, key=lambda c: (c.get("step") or 0, c.get("t") or 0))
    how += f", checkpoint at step {latest.get('step')}"
    line = _register(registry, name, Path(latest["path"]), lineage, how)
    if line or how.startswith("--register-model"):
        return line  # a run read again (a later sync) says nothing new
    return f"run {run_id}'s latest checkpoint is already a version of {name}"


def sync(store: Any, registry: Registry) -> list[str]:
    """Every run that ended since the last sync (runs ended earlier were read then)."""
    mark = registry.root / _MARK
    try:
        since = float(mark.read_text()) - _SLACK
    except (OSError, ValueError):
        since = 0.0
    now = time.time()
    store.refresh()
    rows = store._conn().execute(
        "SELECT id FROM runs WHERE ended >= ? AND status IN ('succeeded','failed','stopped')",
        (since,),
    )
    said: list[str] = []
    for (run_id,) in rows.fetchall():
        said.extend(sync_run(store, registry, run_id))
    registry.root.mkdir(parents=True, exist_ok=True)
    mark.write_text(repr(now))
    return said
