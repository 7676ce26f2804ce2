"""The sweep scheduler: its own process, so a sweep goes on with the notebook closed.

    python -m runctl_jupyter.sweeps.scheduler SWEEP_DIR [--resume] [--retry-failed] [--daemon]

It holds SWEEP_DIR/scheduler.lock for its whole life (one scheduler a sweep; a
free lock means none is running), launches trials as ordinary runs, at most
`max_parallel` at once, the next one as soon as a slot frees (it polls the store at 20 Hz and, between
polls, wakes the moment a trial writes its exit event: endwatch.py), watches
them through the store, prunes laggards, applies
--stop-on-failure / --max-failures, and appends every change to sweep.jsonl.
`control.json` with {"stop": true} stops the sweep: running trials are stopped
(reason `sweep`), queued ones stay queued for `--resume`.

On a resume it re-attaches trials that are still running, resumes trials the
sweep's stop cut short from their checkpoints (same run id, next attempt), and,
with --retry-failed, resumes failed ones too; finished trials are never rerun.

Here: the process (`main`, and `spawn` that starts it) and the loop; starting
trials is in launching.py, judging them (objective, failures, pruning) in judging.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from .judging import Judging, search_state
from .launching import Launching
from .record import (
    CONTROL_FILE,
    RUN_ENDED,
    SweepState,
    append_log,
    read_json,
    take_lock,
    trial_group,
    write_json,
)

POLL = 0.05
PRUNE_EVERY = 0.5


class Scheduler(Launching, Judging):
    """One sweep's scheduler: its state, and the loop that runs the sweep to its end."""

    def __init__(self, sweep_dir: Path, resume: bool = False, retry_failed: bool = False):
        from ..config import Runctl, profile_config
        from ..runs.control import RunControl

        self.dir = Path(sweep_dir).resolve()
        self.state = SweepState(self.dir)
        self.spec = spec = self.state.spec
        run = spec["run"]
        config = Runctl(
            config=profile_config(_warn_profile),  # c.AWSBackend etc., as the shell reads them
            home=str(self.dir.parent.parent),
            backend=run.get("backend") or "local",
            lost_timeout=float(spec.get("lost_timeout") or 60.0),
        )
        self.session = RunControl(config=config)
        self.store = self.session.store
        from .instances import InstancePool  # AWS: a finished trial's instance takes the next

        self.instances = InstancePool(self.session, run, self.log)
        self.specs: dict[str, dict] = {}  # run id -> spec, for pulling a remote trial's events
        objective = spec.get("objective") or {}
        self.metric: str | None = objective.get("metric")
        self.mode: str = objective.get("mode") or "max"
        self.max_parallel = int(spec.get("max_parallel") or 1)
        self.resume = resume
        self.retry_failed = retry_failed
        self.objects = self._read_bytes("objects.pkl")
        self.environment = read_json(self.dir / "env.json") or {}
        self.code = (self.dir / "code.py").read_text() if (self.dir / "code.py").exists() else None
        self.failures = 0
        self.halt: tuple[str, str] | None = None  # (status, reason) once the sweep must end
        self.control_mtime = 0.0
        self.warned_objective = False
        self.last_prune = 0.0
        self.finished_histories: dict[int, list] = {}
        self._start_judging()  # optuna, or a median/ASHA pruner
        self.pending: list[int] = []  # trial indices to launch (or resume), in order
        from .endwatch import EndWatch

        self.endwatch = EndWatch()
        self.pruned: set[int] = set()
        from concurrent.futures import ThreadPoolExecutor

        self.launcher = ThreadPoolExecutor(max_workers=min(self.max_parallel, 8))
        self.launches: dict[Any, tuple[int, str]] = {}
        self.started: set[str] = set()  # runs this scheduler started: never started twice
        from ..cost.sweep_budget import SweepBudget  # --cost-limit: the sum of the trials' cost

        self.budget = SweepBudget(spec.get("cost_limit"))
        self.spent, self.last_spent = 0.0, 0.0

    def _read_bytes(self, name: str) -> bytes | None:
        path = self.dir / name
        return path.read_bytes() if path.exists() else None

    def log(self, **record: Any) -> None:
        self.state.apply(append_log(self.dir, **record))

    def warn(self, message: str) -> None:
        self.log(type="warning", message=message)

    # -- start ------------------------------------------------------------------------
    def prepare(self) -> None:
        """Sort the trials into running (re-attached), to launch, and finished."""
        resumes, fresh, running = [], [], []
        for trial in self.state.trials:
            run_id = trial.get("run_id")
            if run_id is None:
                fresh.append(trial["index"])
                continue
            row = self._row(run_id)
            if row is None:
                fresh.append(trial["index"])
                continue
            if row["status"] not in RUN_ENDED:
                running.append(self.store.run_dir(run_id))
                if self.search is not None:
                    self.search.adopt(trial["index"], trial["params"])
                continue  # still running: watched like any other
            if trial.get("status") not in RUN_ENDED:
                self._ended(trial, row, judge=False)  # ended while no scheduler watched
            group = trial_group(trial)
            if group == "stopped" and trial.get("reason") == "sweep":
                resumes.append(trial["index"])
            elif group == "failed" and self.retry_failed:
                resumes.append(trial["index"])
            elif self.search is not None:
                self.search.replay(trial["params"], trial.get("objective"), search_state(trial))
        self.pending = resumes + fresh
        self.instances.restore(self.dir, running)

    def _row(self, run_id: str) -> dict | None:
        try:
            self._pull(run_id)
            self.store.refresh(run_id)
            return self.store.get(run_id)
        except RunctlError:
            return None

    def _pull(self, run_id: str) -> None:
        """A remote trial's new events into its local mirror (the backend paces its polls)."""
        if (self.spec["run"].get("backend") or "local") == "local":
            return
        run_dir = self.store.run_dir(run_id)
        spec = self.specs.get(run_id)
        if spec is None:
            spec = self.specs[run_id] = read_json(run_dir / "spec.json") or {}
        try:
            self.session.backend(spec.get("backend") or "local").pull(run_dir, spec)
        except Exception:  # noqa: BLE001 - a failed poll is retried; heartbeats decide
            pass

    # -- the loop -----------------------------------------------------------------------
    def run(self) -> int:
        self.prepare()
        try:
            while True:
                self._check_control()
                self._reap_launches()
                self._watch()
                self._check_budget()
                now = time.monotonic()
                if now - self.last_prune >= PRUNE_EVERY:
                    self.last_prune = now
                    self._prune()
                if self.halt is None:
                    self._launch_free_slots()
                if not self._running() and (self.halt is not None or not self._has_more()):
                    break
                running = [self.store.run_dir(t["run_id"]) for t in self._running()]
                self.endwatch.wait(running, POLL)
        except BaseException as exc:
            self.warn(f"the scheduler stopped: {type(exc).__name__}: {exc}")
            traceback.print_exc()
            raise
        self.launcher.shutdown(wait=True)
        self._reap_launches()
        self._finish()
        return 0

    def _running(self) -> list[dict]:
        return [
            t
            for t in self.state.trials
            if t.get("run_id")
            and t.get("status") not in RUN_ENDED
            and t["index"] not in self.pending
        ]

    def _has_more(self) -> bool:
        if self.pending:
            return True
        return self.search is not None and len(self.state.trials) < int(
            self.spec.get("n_trials") or 0
        )

    def _check_control(self) -> None:
        path = self.dir / CONTROL_FILE
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self.control_mtime:
            return
        self.control_mtime = mtime
        control = read_json(path) or {}
        if control.get("stop") and (self.halt is None or self.halt[1] != "user"):
            self.halt = ("stopped", "user")
            for trial in self._running():
                self._stop_run(trial["run_id"], "sweep")

    def _watch(self) -> None:
        for trial in self._running():
            row = self._row(trial["run_id"])
            if row is None:
                continue
            if row["status"] in RUN_ENDED:
                self._ended(trial, row)
            elif row["status"] == "queued":
                self._restart_if_never_started(trial, row)

    def _check_budget(self, now: bool = False) -> None:
        """Stop the sweep (reason cost-limit) when its trials' cost reaches --cost-limit."""
        from ..cost.sweep_budget import check_sweep_budget

        check_sweep_budget(self, every=0.0 if now else 1.0)

    def _stop_run(self, run_id: str, reason: str) -> None:
        """Ask a trial to stop, with a reason its exit event will carry."""
        try:
            self.session.backend_stop(run_id, reason=reason)
        except RunctlError as exc:  # e.g. an unreachable instance: the sweep goes on
            self.warn(f"could not stop run {run_id}: {exc}")

    # -- the end -----------------------------------------------------------------------------
    def _finish(self) -> None:
        self.instances.release()  # AWS: no instance of the sweep is left billing
        if self.halt is not None:
            status, reason = self.halt
        else:
            counts = self.state.counts()
            ran = len(self.state.trials)
            if ran and counts["failed"] == ran:
                status, reason = "failed", "all-trials-failed"
            else:
                status, reason = "succeeded", None
        if self.metric and self.state.best() is None and self.state.trials:
            self.warn(
                f"no trial logged the objective {self.metric!r}: nothing to rank the trials by"
            )
        self._register_best()
        self.log(type="status", status=status, reason=reason)

    def _register_best(self) -> None:
        """`--register-model NAME` on a sweep: its best trial, if `--register-if` holds."""
        options = self.spec["run"].get("options") or {}
        name, best = options.get("register_model"), self.state.best()
        if not name:
            return
        if best is None or not best.get("run_id"):
            self.log(type="model", message=f"{name} not registered: no trial has the objective")
            return
        from ..registry import Registry
        from ..store.model_sync import register_run

        registry = Registry(self.store.home)
        line = register_run(self.store, registry, best["run_id"], name, options.get("register_if"))
        self.log(type="model", message=line)


def _warn_profile(path: Path, exc: Exception) -> None:
    print(f"warning: ignoring {path}: {exc}", file=sys.stderr)


def spawn(sweep_dir: Path, resume: bool = False, retry_failed: bool = False) -> None:
    """Start the scheduler as a detached process; returns once it holds the lock."""
    import subprocess

    package_parent = str(Path(__file__).resolve().parent.parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "runctl_jupyter.sweeps.scheduler", str(sweep_dir), "--daemon"]
    if resume:
        argv.append("--resume")
    if retry_failed:
        argv.append("--retry-failed")
    with open(Path(sweep_dir) / "scheduler.log", "ab") as log:
        launcher = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(sweep_dir),
        )
    code = launcher.wait()  # it takes the lock, forks the scheduler and exits
    if code == 3:
        raise RunctlError(
            f"sweep {Path(sweep_dir).name} already has a running scheduler; "
            f"`%runctl sweep --resume {Path(sweep_dir).name}` attaches to it"
        )
    if code != 0:
        raise RunctlError(
            f"the sweep scheduler did not start (exit {code}); see {Path(sweep_dir) / 'scheduler.log'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.sweeps.scheduler")
    parser.add_argument("sweep_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--daemon", action="store_true", help="detach from the launcher")
    args = parser.parse_args(argv)
    sweep_dir = Path(args.sweep_dir).resolve()
    fd = take_lock(sweep_dir)  # before the fork: the launcher's exit means "locked"
    if fd is None:
        print(f"a scheduler already runs sweep {sweep_dir.name}", file=sys.stderr)
        return 3
    # "running" before the launcher exits: whoever started us never reads a stale final status
    append_log(
        sweep_dir, type="status", status="running", reason="resumed" if args.resume else None
    )
    if args.daemon:
        if os.fork() > 0:
            os._exit(0)
        os.setsid()
    write_json(
        sweep_dir / "scheduler.json",
        {"pid": os.getpid(), "started": time.time(), "argv": sys.argv},
    )
    print(json.dumps({"scheduler": os.getpid(), "t": time.time()}), flush=True)
    return Scheduler(sweep_dir, resume=args.resume, retry_failed=args.retry_failed).run()


if __name__ == "__main__":
    sys.exit(main())
