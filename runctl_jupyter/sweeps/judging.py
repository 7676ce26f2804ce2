"""The scheduler judging its trials: a trial's objective when it ends, the failures
that end the sweep (--stop-on-failure / --max-failures), and the laggards pruned
while they run (median/ASHA, or optuna's own pruner).

A part of `Scheduler` (scheduler.py), split off because judging is its own idea:
it reads the scheduler's state and acts only through its log, warn and _stop_run.
"""

from __future__ import annotations

from ..errors import RunctlError
from .record import trial_group
from .scheduler_base import SchedulerBase


def trial_objective(summary: dict, metric: str | None, mode: str) -> float | None:
    """A trial's objective: its best value of the metric (max or min over its steps)."""
    if not metric or metric not in summary:
        return None
    value = summary[metric].get("max" if mode == "max" else "min")
    return float(value) if isinstance(value, (int, float)) else None


def search_state(trial: dict) -> str:
    """How optuna is told a finished trial ended."""
    group = trial_group(trial)
    if group == "done":
        return "complete"
    if group == "pruned":
        return "pruned"
    return "fail"


class Judging(SchedulerBase):
    """Scheduler methods: judge a trial that ended, prune the running ones."""

    def _start_judging(self) -> None:
        """Optuna's study (it picks the trials and prunes them), else a median or ASHA
        pruner on the objective when --prune asks for one."""
        spec = self.spec
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
            self.search.tell(trial["index"], objective, search_state(trial))
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
            assert self.pruner is not None, "no pruner and no search: _prune returned at once"
            others = {i: h for i, h in histories.items() if i != index}
            why = self.pruner.check(index, history, self.finished_histories, others)
            if why:
                self.pruned.add(index)
                self.warn(f"trial {index} pruned: {why}")
                self._stop_run(trial["run_id"], "pruned")
