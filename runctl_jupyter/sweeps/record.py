"""The sweep folder: the source of truth of a sweep, like a run folder is of a run.

    $RUNCTL_HOME/sweeps/<sweep_id>/
        sweep.json       the spec, written once: search, space, fixed params, objective,
                         scheduling options, what each trial runs, and the trial plan
                         (params per trial index) for grid and random search
        sweep.jsonl      append-only log, one JSON object a line (single writer: the
                         scheduler holding scheduler.lock): trial launches and ends,
                         optuna's new trials, sweep status changes, warnings
        code.py          the cell's code (cell sweeps); objects.pkl, env.json: the notebook
                         objects and the environment, captured once for every trial
        control.json     {"stop": true}: the notebook asks the scheduler to stop the sweep
        scheduler.lock   flock'ed by the live scheduler; free means no scheduler
        scheduler.log    the scheduler's own stdio

Trials are ordinary runs with spec["sweep_id"] set (store.list_runs(sweep_id=...)).
Sweep ids are run-id-like, prefixed `s`: `s` is not a hex digit, so a sweep id is
never a run id (or a prefix of one).
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError

FORMAT = 1
SPEC_FILE = "sweep.json"
LOG_FILE = "sweep.jsonl"
CONTROL_FILE = "control.json"
LOCK_FILE = "scheduler.lock"

ACTIVE = ("queued", "running")
FINAL = ("succeeded", "failed", "stopped")
RUN_ENDED = frozenset({"succeeded", "failed", "stopped", "lost"})


class SweepNotFound(RunctlError):
    pass


def new_sweep_id() -> str:
    return "s" + secrets.token_hex(5)


def sweeps_dir(home: Path) -> Path:
    return Path(home) / "sweeps"


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def append_log(sweep_dir: Path, **record: Any) -> dict:
    record = {"t": time.time(), **record}
    with open(sweep_dir / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
    return record


def read_log(sweep_dir: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Records from byte `offset` on (complete lines only) and the offset after them."""
    try:
        with open(sweep_dir / LOG_FILE, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    out = []
    for line in data[: end + 1].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out, offset + end + 1


def scheduler_alive(sweep_dir: Path) -> bool:
    """True while a scheduler holds scheduler.lock (a dead process holds no lock)."""
    path = sweep_dir / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def take_lock(sweep_dir: Path) -> int | None:
    """The scheduler's lock: an fd to keep open for its whole life, None if taken."""
    fd = os.open(sweep_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def request_stop(sweep_dir: Path) -> None:
    write_json(sweep_dir / CONTROL_FILE, {"stop": True, "t": time.time()})


def new_trial(index: int, params: dict) -> dict:
    return {
        "index": index,
        "params": params,
        "run_id": None,
        "status": "queued",
        "reason": None,
        "objective": None,
    }


class SweepState:
    """A sweep read from its folder: the spec folded with its log."""

    def __init__(self, sweep_dir: Path):
        self.dir = Path(sweep_dir)
        spec = read_json(self.dir / SPEC_FILE)
        if not isinstance(spec, dict):
            raise SweepNotFound(f"no sweep in {self.dir}: sweep.json is missing or unreadable")
        self.spec = spec
        self.id: str = spec["sweep_id"]
        self.trials: list[dict] = [new_trial(i, p) for i, p in enumerate(spec.get("plan") or [])]
        self.status = "queued"
        self.reason: str | None = None
        self.started: float | None = None
        self.ended: float | None = None
        self.warnings: list[str] = []
        self.models: list[str] = []  # what --register-model registered at the end
        self._offset = 0
        self.refresh()

    def refresh(self) -> bool:
        """Fold in the log's new records; True if there were any."""
        records, self._offset = read_log(self.dir, self._offset)
        for record in records:
            self.apply(record)
        return bool(records)

    def apply(self, record: dict) -> None:
        kind = record.get("type")
        if kind == "trial":
            index = record.get("index")
            if not isinstance(index, int) or index < 0:
                return
            while len(self.trials) <= index:
                self.trials.append(new_trial(len(self.trials), {}))
            trial = self.trials[index]
            for key in ("params", "run_id", "status", "reason", "objective"):
                if key in record:
                    trial[key] = record[key]
        elif kind == "status":
            self.status, self.reason = record.get("status", self.status), record.get("reason")
            if self.status == "running" and self.started is None:
                self.started = record.get("t")
            self.ended = record.get("t") if self.status in FINAL else None
        elif kind == "warning":
            self.warnings.append(str(record.get("message")))
        elif kind == "model":
            self.models.append(str(record.get("message")))

    # -- facts --------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.get("name") or self.id

    @property
    def n_planned(self) -> int:
        """Trials the sweep will run in all (optuna: --trials, asked one by one)."""
        return max(int(self.spec.get("n_trials") or 0), len(self.trials))

    def counts(self) -> dict[str, int]:
        out = {"done": 0, "running": 0, "queued": 0, "failed": 0, "stopped": 0, "pruned": 0}
        for t in self.trials:
            out[trial_group(t)] += 1
        out["queued"] += self.n_planned - len(self.trials)
        return out

    def best(self) -> dict | None:
        mode = (self.spec.get("objective") or {}).get("mode", "max")
        scored = [t for t in self.trials if isinstance(t.get("objective"), (int, float))]
        if not scored:
            return None
        pick = max if mode == "max" else min
        return pick(scored, key=lambda t: t["objective"])

    def display_status(self) -> str:
        """`orphaned`: not finished, but no scheduler is running it (`--resume` continues)."""
        if self.status in ACTIVE and not scheduler_alive(self.dir):
            return "orphaned"
        return self.status


def trial_group(trial: dict) -> str:
    """done | running | queued | failed | stopped | pruned, for counting."""
    status, reason = trial.get("status"), trial.get("reason")
    if status == "succeeded":
        return "done"
    if status == "stopped":
        if reason == "early-stop":
            return "done"
        if reason == "pruned":
            return "pruned"
        return "stopped"
    if status in ("failed", "lost"):
        return "failed"
    if status == "queued" or trial.get("run_id") is None:
        return "queued"
    return "running"


def all_sweeps(home: Path) -> list[SweepState]:
    """Every sweep under home, newest first."""
    base = sweeps_dir(home)
    if not base.is_dir():
        return []
    out = []
    for entry in os.scandir(base):
        if entry.is_dir() and (Path(entry.path) / SPEC_FILE).exists():
            try:
                out.append(SweepState(Path(entry.path)))
            except (SweepNotFound, KeyError):
                continue
    out.sort(key=lambda s: (s.spec.get("created") or 0, s.id), reverse=True)
    return out


def find_sweep(home: Path, ref: str) -> Path | None:
    """A sweep folder from an id, a unique id prefix, or a sweep name (the newest
    of that name); None when nothing matches. An ambiguous prefix is an error."""
    ref = (ref or "").strip()
    base = sweeps_dir(home)
    if not ref or not base.is_dir() or "/" in ref or ref.startswith("."):
        return None
    if (base / ref / SPEC_FILE).exists():
        return base / ref
    prefixed = sorted(
        e.name for e in os.scandir(base) if e.name.startswith(ref) and e.name.startswith("s")
    )
    if len(prefixed) == 1 and (base / prefixed[0] / SPEC_FILE).exists():
        return base / prefixed[0]
    if len(prefixed) > 1:
        shown = ", ".join(prefixed[:10])
        raise RunctlError(f"sweep prefix {ref!r} is ambiguous: {shown}; give more of the id")
    named = [
        s for s in all_sweeps(home) if s.spec.get("name") == ref
    ]  # newest first: the newest of that name
    return named[0].dir if named else None


def resolve_sweep(home: Path, ref: str) -> Path:
    found = find_sweep(home, ref)
    if found is None:
        raise SweepNotFound(f"no sweep {ref!r}: `runctl sweeps` lists sweep ids and names")
    return found
