"""The estimate before launch: what a run (or a sweep's trials) will cost, printed before
anything is created, and refused above c.Runctl.confirm_above without --yes.

The duration is --max-hours, else the median of the experiment's earlier succeeded
runs, else none (then only the hourly rate is known). Hourly prices show to a tenth
of a cent ($1.006/h), totals to the cent ($0.31).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from ..errors import RunctlError
from .facts import price_facts
from .monthly_budget import apply_monthly_budget
from .prices import dollars, hourly
from .suggestions import Launch, suggest

MEDIAN_OF = 20  # earlier succeeded runs of the experiment a duration estimate looks at


@dataclass
class Estimate:
    facts: dict | None
    hours: float | None = None  # one run's
    basis: str = ""
    trials: int = 1
    parallel: int = 1

    @property
    def rate(self) -> float:
        if not self.facts:
            return 0.0
        f = self.facts
        one = f["rate"] + f.get("ebs_gb", 0) * f.get("ebs_gb_month", 0) / 730.0
        return one * int(f.get("nodes") or 1)

    @property
    def total(self) -> float | None:
        if self.hours is None:
            return None
        return self.rate * self.hours * self.trials

    @property
    def wall_hours(self) -> float | None:
        if self.hours is None:
            return None
        return self.hours * math.ceil(self.trials / max(self.parallel, 1))

    @property
    def at_least(self) -> float:
        """The least it can cost: an hour of every trial that may run at once."""
        return self.rate * min(self.trials, self.parallel)

    def __str__(self) -> str:
        if not self.facts:
            return "Estimate: local run, $0"
        f = self.facts
        kind = "spot" if f["spot"] else "on-demand"
        nodes = int(f.get("nodes") or 1)
        what = f"{nodes} x {f['instance_type']}" if nodes > 1 else f["instance_type"]
        text = f"Estimate: {what} {kind} in {f['region']} at {hourly(self.rate)}"
        text += f" ({f['source']}"
        text += f"; {f['note']})" if f.get("note") else ")"
        if self.hours is None:
            return text + ", no duration to total it over: give --max-hours H for a total"
        if self.trials > 1:
            return (
                text + f" x {self.trials} trials x {_hours(self.hours)} ({self.basis})"
                f" = {dollars(self.total or 0)}, about {_hours(self.wall_hours or 0)} of wall time"
                f" with {self.parallel} in parallel"
            )
        return text + f" x {_hours(self.hours)} ({self.basis}) = {dollars(self.total or 0)}"


def _hours(h: float) -> str:
    if h < 1:
        return f"{h * 60:.0f}m"
    return f"{h:.3g}h"


def typical_hours(store: Any, experiment: str | None) -> tuple[float | None, str]:
    """The median duration of earlier succeeded runs of the experiment."""
    if not experiment:
        return None, ""
    rows = store.list_runs(experiment=experiment, status="succeeded", limit=MEDIAN_OF)
    durations = [r["duration"] for r in rows if r.get("duration")]
    if not durations:
        return None, ""
    n = len(durations)
    return statistics.median(durations) / 3600, (
        f"median of {n} earlier run{'s' if n > 1 else ''} of {experiment}"
    )


def estimate(
    session: Any,
    facts: dict | None,
    max_hours: float | None,
    experiment: str | None,
    trials: int = 1,
    parallel: int = 1,
) -> Estimate:
    hours: float | None
    if max_hours:
        hours, basis = float(max_hours), "--max-hours"
    else:
        hours, basis = typical_hours(session.store, experiment)
    return Estimate(facts, hours, basis, max(trials, 1), max(parallel, 1))


def before_launch(
    session: Any,
    backend_name: str,
    options: dict,
    max_hours: float | None,
    experiment: str | None,
    trials: int = 1,
    parallel: int = 1,
    yes: bool | None = None,
    limit: float | None = None,
    project: str | None = None,
    launch: Launch | None = None,
) -> dict | None:
    """Price the run (or sweep), show the estimate, and refuse above c.Runctl.confirm_above
    without --yes. Runs before anything is created. Returns the price facts. `launch`
    (the code, the sweep's grid) feeds the suggestions (cost/suggestions.py)."""
    launch = launch or Launch(None, None)
    launch.trials, launch.parallel, launch.options = max(trials, 1), max(parallel, 1), options
    if yes is None:
        yes = bool(options.pop("yes", False))
    else:
        options.pop("yes", None)
    try:
        facts = price_facts(session, backend_name, options)
    except RunctlError as exc:  # no price: the launch goes on (its own checks say more)
        if limit is not None or options.get("cost_limit"):
            raise RunctlError(f"--cost-limit needs a price, and there is none: {exc}") from None
        print(f"Estimate unavailable ({exc}): this run's cost is not metered", flush=True)
        return None
    if facts is None:
        suggest(session, launch)  # a local sweep's grid
        return None
    est = estimate(session, facts, max_hours, experiment, trials, parallel)
    print(str(est), flush=True)
    apply_monthly_budget(session, project or session.config.project, options)
    cap = limit if limit is not None else options.get("cost_limit")
    launch.facts, launch.hours, launch.budget_left = facts, est.hours, cap
    suggest(session, launch)
    check_confirm(est, float(session.config.confirm_above), yes, cap)
    return facts


def check_confirm(est: Estimate, above: float, yes: bool, cost_limit: float | None = None) -> None:
    if yes or above <= 0:
        return
    total = est.total
    if cost_limit:
        total = min(total, float(cost_limit)) if total is not None else float(cost_limit)
    if total is not None and total > above:
        raise RunctlError(
            f"the estimate is {dollars(total)}, above c.Runctl.confirm_above ({dollars(above)}): "
            "add --yes to launch it, or lower --max-hours / --cost-limit"
        )
    if total is None and est.at_least > above:
        raise RunctlError(
            f"this costs at least {dollars(est.at_least)} an hour, above c.Runctl.confirm_above "
            f"({dollars(above)}): add --yes to launch it, or set --max-hours / --cost-limit"
        )
