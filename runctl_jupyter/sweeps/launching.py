"""The scheduler launching its trials: fill the free slots, pick the next trial
(planned, resumed, or asked of optuna), write its run folder, start its agent in a
thread, and start a run whose launch was cut short.

A part of `Scheduler` (scheduler.py), split off because launching is its own idea:
it reads the scheduler's state and records through its log and warn.
"""

from __future__ import annotations

import time
from pathlib import Path

from ..errors import RunctlError
from .record import read_json
from .scheduler_base import SchedulerBase

LAUNCH_GRACE = 20.0  # seconds after which a created run with no agent was never started


class Launching(SchedulerBase):
    """Scheduler methods: start trials, at most `max_parallel` running."""

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
        for own in ("register_model", "register_if"):  # the sweep registers its best trial
            options.pop(own, None)
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
        if options.get("image_build"):  # --image ./Dockerfile: the trial builds (or finds) it
            from ..runs.image import copy_context

            copy_context(Path(options["image"]), self.store.run_dir(spec["run_id"]))
        self.store.add_run(spec)
        return spec

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
