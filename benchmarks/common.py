"""Shared pieces of the harness: context, alternating repetitions, the peer worker."""

from __future__ import annotations

import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / ".work"
VENV = WORK / "venv"
PEER_PACKAGES = ["mlflow", "wandb"]


class NotLanded(Exception):
    """Raised by a benchmark whose feature is not in the package yet (never a fake number)."""


class Skipped(Exception):
    """Raised by a benchmark that cannot run in this mode (it says why; no number)."""


@dataclass
class Result:
    """One benchmark's line in results.json, plus what the report shows besides."""

    unit: str
    better: str  # "lower" | "higher"
    ours: float | None
    peers: dict[str, float | None] = field(default_factory=dict)
    # Not in results.json (issue-9 shape); kept in results_detail.json and the report.
    detail: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def shape(self) -> dict[str, Any]:
        return {"unit": self.unit, "better": self.better, "ours": self.ours, "peers": self.peers}


@dataclass
class Ctx:
    """What every benchmark gets: sizes depend on --quick."""

    quick: bool
    work: Path  # scratch folder for this run of the harness
    peer: PeerWorker | None
    reps: int = 7

    def size(self, full: int, quick: int) -> int:
        return quick if self.quick else full

    def scratch(self, name: str) -> Path:
        path = self.work / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    k = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return float(ordered[k])


def alternate(
    contenders: dict[str, Callable[[], float | None]], reps: int
) -> dict[str, list[float]]:
    """Run each contender once per repetition, rotating the order every repetition,
    so that a noisy phase of the machine hits every contender alike. Each callable
    returns its own measurement (or None when it cannot run: then it is dropped)."""
    names = list(contenders)
    samples: dict[str, list[float]] = {name: [] for name in names}
    dropped: set[str] = set()
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            if name in dropped:
                continue
            gc.collect()
            value = contenders[name]()
            if value is None:
                dropped.add(name)
                continue
            samples[name].append(float(value))
    return {name: values for name, values in samples.items() if values}


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call of `fn` takes (wall clock)."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peer_python() -> Path | None:
    """The interpreter that has mlflow/wandb: the benchmarks venv if present."""
    env = os.environ.get("RUNCTL_BENCH_PEER_PYTHON")
    if env:
        return Path(env)
    candidate = VENV / "bin" / "python"
    return candidate if candidate.exists() else None


def setup_peer_venv() -> Path:
    """Create benchmarks/.work/venv with mlflow and wandb, leaving the main env alone
    (mlflow brings pandas, pyarrow, SQLAlchemy, ...). System site packages are
    visible, so nothing the main env has is installed twice."""
    WORK.mkdir(parents=True, exist_ok=True)
    if not (VENV / "bin" / "python").exists():
        subprocess.run(
            [sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True
        )
    pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "mlflow"], check=True)
    # wandb is optional: the report says so when it is missing or cannot run offline.
    subprocess.run([*pip, "wandb"], check=False)
    return VENV / "bin" / "python"


class PeerError(RuntimeError):
    pass


class PeerWorker:
    """A long-lived process in the peers' venv that runs mlflow/wandb operations on
    request (one JSON line in, one JSON line out) and times them itself."""

    def __init__(self, python: Path, log_path: Path) -> None:
        env = dict(os.environ)
        env.update(
            {
                "MLFLOW_ALLOW_FILE_STORE": "true",  # mlflow 3 keeps the file store behind this
                "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true",
                "WANDB_MODE": "offline",
                "WANDB_SILENT": "true",
                "PYTHONPATH": str(REPO),
            }
        )
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path
        self.python = python
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [str(python), "-m", "benchmarks.peer_worker"],
            cwd=str(REPO),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self.versions: dict[str, str | None] = self.call("versions")

    def call(self, op: str, **args: Any) -> Any:
        if self.proc.poll() is not None:
            raise PeerError(f"peer worker exited ({self.proc.returncode}); see {self.log_path}")
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise PeerError(f"peer worker died during {op!r}; see {self.log_path}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise PeerError(f"{op}: {answer.get('error')}")
        return answer.get("value")

    def has(self, package: str) -> bool:
        return bool(self.versions.get(package))

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call("quit")
        except (PeerError, OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def fresh_python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a child Python of the main interpreter (the package importable)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    if extra:
        env.update(extra)
    return env
