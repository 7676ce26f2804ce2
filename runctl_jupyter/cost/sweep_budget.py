"""A sweep's --cost-limit, enforced by its scheduler: the sum of its trials' cost, a
warning at 80%, a halt at 100% (reason cost-limit); each new trial gets what is left
as its own --cost-limit, so trials stop themselves even if the scheduler is gone.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import RunctlError
from .prices import dollars


def sweep_spent(store: Any, run_ids: list[str]) -> float:
    total = 0.0
    for run_id in run_ids:
        try:
            total += float(store.get(run_id).get("cost") or 0)
        except RunctlError:
            continue
    return total


class SweepBudget:
    """The sweep scheduler's `--cost-limit`: warn at 80%, halt at 100% (reason cost-limit)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = float(limit) if limit else None
        self.warned = False
        self.reached = False

    def check(self, spent: float) -> str | None:
        """'warn' once at 80%, 'stop' once at 100%, else None."""
        if self.limit is None or self.reached:
            return None
        if spent >= self.limit:
            self.reached = True
            return "stop"
        if not self.warned and spent >= 0.8 * self.limit:
            self.warned = True
            return "warn"
        return None

    def trial_limit(self, own: float | None, spent: float) -> float | None:
        """A new trial may spend at most what the sweep has left (so a trial stops itself
        even if the scheduler is gone)."""
        if self.limit is None:
            return own
        left = max(self.limit - spent, 0.01)
        return min(own, left) if own else left


def check_sweep_budget(scheduler: Any, every: float = 1.0) -> None:
    """The scheduler's budget check (runs in its loop, at most once a second): warn at
    80% of the sweep's --cost-limit; at 100% halt the sweep, stopping running trials
    with reason cost-limit (queued ones stay for --resume)."""
    budget = scheduler.budget
    now = time.monotonic()
    if budget.limit is None or now - scheduler.last_spent < every:
        return
    scheduler.last_spent = now
    ids = [t["run_id"] for t in scheduler.state.trials if t.get("run_id")]
    scheduler.spent = spent = sweep_spent(scheduler.store, ids)
    what = budget.check(spent)
    if what == "warn":
        scheduler.warn(
            f"the sweep has spent {dollars(spent)}, 80% of its --cost-limit {dollars(budget.limit)}"
        )
    elif what == "stop":
        scheduler.warn(
            f"the sweep's --cost-limit {dollars(budget.limit)} is reached ({dollars(spent)}): "
            "stopping its running trials (queued ones are not started)"
        )
        if scheduler.halt is None:
            scheduler.halt = ("stopped", "cost-limit")
        for trial in scheduler._running():
            scheduler._stop_run(trial["run_id"], "cost-limit")
