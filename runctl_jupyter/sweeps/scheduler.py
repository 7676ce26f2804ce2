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
LAUNCH_GRACE = 20.0  # seconds after which a created run with no agent was never started


def trial_objective(summary: dict, metric: str | None, mode: str) -> float | None:
    """A trial's objective: its best value of the metric (max or min over its steps)."""
    if not metric or metric not in summary:
        return None
    value = summary[metric].get("max" if mode == "max" else "min")
    return float(value) if isinstance(value, (int, float)) else None


class Scheduler:
    def __init__(self, sweep_dir: Path, resume: bool = False, retry_failed: bool = False):
        from ..config import Runctl
        from ..runs.control import RunControl

        self.dir = Path(sweep_dir).resolve()
        self.state = SweepState(self.dir)
        self.spec = spec = self.state.spec
        run = spec["run"]
        config = Runctl(
            config=_profile_config(),  # c.AWSBackend etc., as the shell reads them
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
        self.pruner = None
        self.search = None
        prune = spec.get("prune")
        if spec.get("search") == "optuna":
            from .space import OptunaSearch

            self.search = OptunaSearch(
                spec.get("space") or {},
                spec.get("grid") or {},
                self.mode,
                int(spec.get("seed") or 0),
                prune=prune,
            )
        elif prune and self.metric:
            from .pruning import Pruner

            self.pruner = Pruner(prune, self.mode)
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
                self.search.replay(trial["params"], trial.get("objective"), _search_state(trial))
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

    def _restart_if_never_started(self, trial: dict, row: dict) -> None:
        """A run created but whose agent never started (a scheduler killed mid-launch):
        start it, once no launch of it can still be on its way."""
        run_id = trial["run_id"]
        if run_id in self.started:  # its agent may not have written agent.json yet
            return
        run_dir = self.store.run_dir(run_id)
        if (run_dir / "agent.json").exists() or time.time() - (
            row.get("created") or 0
        ) < LAUNCH_GRACE:
            return
        spec = read_json(run_dir / "spec.json") or {}
        self.warn(f"trial {trial['index']}: run {run_id} was never started; starting it now")
        target = self.session.backend(spec.get("backend") or "local")
        future = self.launcher.submit(target.start, run_dir, spec, 1)
        self.launches[future] = (trial["index"], run_id)
        self.started.add(run_id)

    def _ended(self, trial: dict, row: dict, judge: bool = True) -> None:
        self.instances.ended(trial["index"], self.store.run_dir(row["id"]))
        summary = self.store.summaries([row["id"]]).get(row["id"], {})
        objective = trial_objective(summary, self.metric, self.mode)
        status, reason = row["status"], row.get("reason")
        self.log(
            type="trial",
            index=trial["index"],
            run_id=row["id"],
            status=status,
            reason=reason,
            objective=objective,
        )
        group = trial_group(trial)
        if self.metric and objective is None and group in ("done", "pruned"):
            if not self.warned_objective:
                self.warned_objective = True
                logged = ", ".join(sorted(summary)) or "no metrics"
                self.warn(
                    f"trial {trial['index']} (run {row['id']}) logged no {self.metric!r} "
                    f"(it logged: {logged}): check --objective, or log it with "
                    f"runctl.log({self.metric}=...)"
                )
        history: list = []
        if self.metric and group in ("done", "pruned"):
            try:
                history = self.store.metrics(row["id"], [self.metric]).get(self.metric, [])
            except RunctlError:
                pass
            self.finished_histories[trial["index"]] = history
        if self.search is not None:
            # The whole curve first: optuna's pruners compare later trials with the
            # completed ones step by step, and a short trial may end between two polls.
            self.search.report(trial["index"], history)
            self.search.tell(trial["index"], objective, _search_state(trial))
        if group == "failed" and judge:  # a resume counts failures from then on
            self.failures += 1
            self._check_failures(trial, row)

    def _check_failures(self, trial: dict, row: dict) -> None:
        if self.halt is not None:
            return
        why = None
        if self.spec.get("stop_on_failure"):
            why = "stop-on-failure"
        elif self.spec.get("max_failures") is not None and self.failures > int(
            self.spec["max_failures"]
        ):
            why = "max-failures"
        if why is None:
            return
        self.halt = ("failed", why)
        self.warn(
            f"trial {trial['index']} (run {row['id']}) {row['status']}: stopping the sweep "
            f"({why}, {self.failures} failed)"
        )
        for other in self._running():
            self._stop_run(other["run_id"], "sweep")

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

    # -- pruning ---------------------------------------------------------------------------
    def _prune(self) -> None:
        if not self.metric or (self.pruner is None and self.search is None):
            return
        running = self._running()
        if not running:
            return
        histories = {}
        for trial in running:
            try:
                histories[trial["index"]] = self.store.metrics(trial["run_id"], [self.metric]).get(
                    self.metric, []
                )
            except RunctlError:
                continue
        for trial in running:
            index = trial["index"]
            if index in self.pruned:
                continue  # asked to stop already; it is on its way out
            history = histories.get(index) or []
            if self.search is not None:
                if self.search.report(index, history) and self.spec.get("prune"):
                    self.pruned.add(index)
                    self.warn(f"trial {index} pruned by optuna at step {history[-1][0]}")
                    self._stop_run(trial["run_id"], "pruned")
                continue
            others = {i: h for i, h in histories.items() if i != index}
            why = self.pruner.check(index, history, self.finished_histories, others)
            if why:
                self.pruned.add(index)
                self.warn(f"trial {index} pruned: {why}")
                self._stop_run(trial["run_id"], "pruned")

    # -- launching --------------------------------------------------------------------------
    def _launch_free_slots(self) -> None:
        free = self.max_parallel - len(self._running())
        if free > 0 and self._has_more():
            self._check_budget(now=True)  # never launch past the sweep's --cost-limit
        while free > 0 and self.halt is None:
            index = self._next_index()
            if index is None:
                return
            self._launch(index)
            free -= 1

    def _next_index(self) -> int | None:
        if self.pending:
            return self.pending.pop(0)
        if self.search is not None and len(self.state.trials) < int(self.spec.get("n_trials") or 0):
            index = len(self.state.trials)
            params = self.search.ask(index)
            self.log(type="trial", index=index, params=params, status="queued")
            return index
        return None

    def _launch(self, index: int) -> None:
        trial = self.state.trials[index]
        if trial.get("run_id"):
            try:  # cut short by a sweep stop, or a failed trial retried: from its checkpoint
                self.session.resume(trial["run_id"], detach=True)
            except RunctlError as exc:
                self.warn(f"trial {index}: could not resume run {trial['run_id']}: {exc}")
                self.log(type="trial", index=index, status="failed", reason="launch")
                self.failures += 1
                return
            self.log(type="trial", index=index, run_id=trial["run_id"], status="starting", reason=None, objective=None)  # fmt: skip
            self.specs.pop(trial["run_id"], None)  # its next attempt's spec
            self.instances.adopt(index, self.store.run_dir(trial["run_id"]))
            return
        spec = self._create_run(index, trial["params"])
        self.log(type="trial", index=index, run_id=spec["run_id"], status="starting")
        target = self.session.backend(spec.get("backend") or "local")
        # Starting an agent means booting a Python process: in a thread, so two slots
        # that free together start together and the loop keeps watching meanwhile.
        future = self.launcher.submit(target.start, self.store.run_dir(spec["run_id"]), spec, 1)
        self.launches[future] = (index, spec["run_id"])
        self.started.add(spec["run_id"])

    def _reap_launches(self) -> None:
        for future in [f for f in self.launches if f.done()]:
            index, run_id = self.launches.pop(future)
            exc = future.exception()
            if exc is not None:  # one trial's launch must not end the sweep
                self.instances.ended(index, None)
                self.store.set_status(run_id, "failed", reason="launch")
                self.warn(f"trial {index}: could not start run {run_id}: {exc}")
            else:
                self.instances.started(index, future.result())

    def _create_run(self, index: int, params: dict) -> dict:
        from ..store.folders import create_run

        run = self.spec["run"]
        options = dict(run.get("options") or {})
        grace = options.pop("grace_seconds", None) or run.get("grace_seconds") or 10.0
        options.update(self.instances.options(index))  # AWS: reuse a free kept instance
        if self.budget.limit is not None:  # a trial stops itself at what the sweep has left
            options["cost_limit"] = self.budget.trial_limit(options.get("cost_limit"), self.spent)
        target = self.spec["target"]
        spec = create_run(
            self.store.runs_dir,
            kind=target["kind"],
            code=self.code if target["kind"] == "cell" else None,
            script=target.get("script"),
            notebook=target.get("notebook"),
            args=target.get("args") or [],
            params={**(self.spec.get("fixed") or {}), **params},
            objects=self.objects,
            object_names=run.get("object_names") or [],
            experiment=self.spec["experiment"],
            name=f"{self.state.name}-{index}",
            project=self.spec.get("project") or "default",
            owner=self.spec.get("owner") or "unknown",
            backend=run.get("backend") or "local",
            workdir=target["workdir"],
            tags=run.get("tags") or [],
            metrics=run.get("metrics") or [],
            max_hours=run.get("max_hours"),
            grace_seconds=grace,
            options=options,
            environment=self.environment,
            sweep_id=self.state.id,
        )
        from ..cost.facts import attach_price

        attach_price(self.store.run_dir(spec["run_id"]), spec, run.get("price"))
        self.store.add_run(spec)
        return spec

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
        self.log(type="status", status=status, reason=reason)


def _profile_config() -> Any:
    """Settings from IPython's default profile (ipython_config.py), as the kernel has them."""
    from traitlets.config import Config
    from traitlets.config.loader import PyFileConfigLoader

    ipython_dir = Path(os.environ.get("IPYTHONDIR") or Path.home() / ".ipython").expanduser()
    profile = ipython_dir / "profile_default"
    if not (profile / "ipython_config.py").is_file():
        return Config()
    try:
        return PyFileConfigLoader("ipython_config.py", str(profile)).load_config()
    except Exception as exc:  # a broken profile must not stop the sweep
        print(f"warning: ignoring {profile / 'ipython_config.py'}: {exc}", file=sys.stderr)
        return Config()


def _search_state(trial: dict) -> str:
    group = trial_group(trial)
    if group == "done":
        return "complete"
    if group == "pruned":
        return "pruned"
    return "fail"


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
