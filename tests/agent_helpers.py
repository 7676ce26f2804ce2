"""Build run folders by hand and run the real agent on them (no store, no kernel)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from runctl_jupyter.events import read_events

ROOT = Path(__file__).resolve().parent.parent


def make_run_dir(
    base: Path, code: str, params: dict | None = None, run_id: str = "r1", **spec
) -> Path:
    run_dir = base / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "code.py").write_text(textwrap.dedent(code))
    (run_dir / "params.json").write_text(json.dumps(params or {}))
    full = {
        "format": 1,
        "run_id": run_id,
        "name": run_id,
        "kind": "cell",
        "entry": "code.py",
        "params": params or {},
        "workdir": str(base),
        "metrics": [],
        "grace_seconds": 2,
        "heartbeat_seconds": 0.2,
        "python": sys.executable,
    }
    full.update(spec)
    (run_dir / "spec.json").write_text(json.dumps(full))
    return run_dir


def agent_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_agent(run_dir: Path, attempt: int = 1) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "runctl_jupyter.agent", str(run_dir), "--attempt", str(attempt)],
        env=agent_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def run_agent(run_dir: Path, attempt: int = 1, timeout: float = 60) -> list[dict]:
    proc = start_agent(run_dir, attempt)
    proc.communicate(timeout=timeout)
    return events_of(run_dir)


def events_of(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "events.jsonl")[0]


def wait_for(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def exit_event(events: list[dict]) -> dict:
    exits = [e for e in events if e["type"] == "exit"]
    assert exits, f"no exit event in {[e['type'] for e in events]}"
    return exits[-1]


@contextlib.contextmanager
def busy_port():
    """A port of 127.0.0.1 that something listens on, for the block."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]
