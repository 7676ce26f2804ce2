"""A new run folder: spec.json, code.py, params.json, objects.pkl, env.json.

Everything a run needs is written here before any process starts, so the
folder alone can be rerun, shipped to EC2, or turned into a record.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from ..errors import RunctlError
from ..events import FORMAT

KINDS = ("cell", "script", "notebook")


def new_run_id() -> str:
    return secrets.token_hex(5)


def _json_params(params: dict) -> dict:
    try:
        return json.loads(json.dumps(params, allow_nan=True))
    except TypeError as exc:
        raise RunctlError(
            f"hyperparameters must be numbers, strings, booleans, None, lists or dicts ({exc}); "
            "pass other objects as notebook variables instead"
        ) from None


def create_run(
    runs_dir: Path,
    *,
    kind: str,
    params: dict,
    experiment: str,
    name: str,
    project: str,
    owner: str,
    backend: str,
    workdir: str,
    code: str | None = None,
    script: str | None = None,
    notebook: str | None = None,
    args: list[str] | tuple = (),
    objects: bytes | None = None,
    object_names: list[str] | tuple = (),
    tags: list[str] | tuple = (),
    metrics: list[str] | tuple = (),
    max_hours: float | None = None,
    grace_seconds: float = 10.0,
    options: dict | None = None,
    environment: dict | None = None,
    rerun_of: str | None = None,
    sweep_id: str | None = None,
    run_id: str | None = None,
    script_path: str | None = None,
    trigger: dict | None = None,
) -> dict:
    """Write a run folder and return its spec. Nothing runs yet. `trigger`: why a
    schedule fired it (schedule, fire time, trigger objects, manifest digest)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    from ..distributed import plan as distributed_plan

    distributed = distributed_plan(options or {}, backend)  # refused before anything is written
    run_id = run_id or new_run_id()
    run_dir = Path(runs_dir) / run_id
    run_dir.mkdir(parents=True)
    entry = _write_entry(run_dir, kind, code, script, notebook)
    params = _json_params(params)
    (run_dir / "params.json").write_text(json.dumps(params, indent=1))
    if objects is not None:
        (run_dir / "objects.pkl").write_bytes(objects)
    spec = {
        "format": FORMAT,
        "run_id": run_id,
        "name": name,
        "experiment": experiment,
        "project": project,
        "owner": owner,
        "tags": list(tags),
        "kind": kind,
        "entry": entry,
        # where the script lives (it runs from its copy, code.py, in that folder)
        "script_path": script_path or (str(Path(script).resolve()) if script else None),
        "notebook_path": str(Path(notebook).resolve()) if notebook else None,
        "args": list(args),
        "params": params,
        "objects": list(object_names),
        "workdir": workdir,
        "python": sys.executable,
        "metrics": list(metrics),
        "max_hours": max_hours,
        "grace_seconds": grace_seconds,
        "heartbeat_seconds": 5,
        "backend": backend,
        "target": {},
        "sync": None,
        "options": dict(options or {}),
        "distributed": distributed,  # torchrun's plan (distributed.py), None for one process
        "created": time.time(),
        "rerun_of": rerun_of,
        "sweep_id": sweep_id,
    }
    if trigger is not None:
        spec["trigger"] = trigger
    write_spec(run_dir, spec)
    (run_dir / "env.json").write_text(json.dumps(environment or {}, indent=1, default=str))
    return spec


def _write_entry(
    run_dir: Path, kind: str, code: str | None, script: str | None, notebook: str | None
) -> str:
    """The code the run executes, into its folder (the cell, or a copy of the script or
    notebook); returns its file name."""
    entry = "code.py"
    if kind == "cell":
        (run_dir / entry).write_text(code or "")
    elif kind == "script":
        assert script is not None, "a script run names its script"
        shutil.copy2(script, run_dir / entry)  # the record keeps the exact code that ran
    else:
        entry = "input.ipynb"
        assert notebook is not None, "a notebook run names its notebook"
        shutil.copy2(notebook, run_dir / entry)
    return entry


def write_spec(run_dir: Path, spec: dict) -> None:
    tmp = run_dir / "spec.json.tmp"
    tmp.write_text(json.dumps(spec, indent=1, default=str))
    os.replace(tmp, run_dir / "spec.json")


def read_spec(run_dir: Path) -> dict:
    return json.loads((run_dir / "spec.json").read_text())
