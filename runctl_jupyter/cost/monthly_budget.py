"""c.Runctl.monthly_budget: a project's and owner's spend per calendar month (UTC),
checked before each launch; what is left becomes the run's --cost-limit, so its agent
stops it when the budget runs out, even with no notebook alive.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import RunctlError
from .prices import dollars


def month_spent(store: Any, project: str, owner: str, now: float | None = None) -> float:
    """This calendar month's (UTC) spend of a project and owner, from the stored runs."""
    import calendar

    t = time.gmtime(now if now is not None else time.time())
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0))
    rows = store.list_runs(project=project, limit=None)
    return sum(
        float(r.get("cost") or 0)
        for r in rows
        if r.get("owner") == owner and (r.get("started") or r.get("created") or 0) >= start
    )


def apply_monthly_budget(session: Any, project: str, options: dict) -> None:
    """c.Runctl.monthly_budget: refuse a launch once the month's budget is spent, warn
    from 80%, and cap the run's --cost-limit at what is left (its agent stops it there)."""
    budget = float(session.config.monthly_budget or 0)
    if budget <= 0:
        return
    owner = session.config.owner
    session.store.refresh()
    spent = month_spent(session.store, project, owner)
    if spent >= budget:
        raise RunctlError(
            f"the monthly budget of project {project!r} for {owner} ({dollars(budget)}) is spent "
            f"({dollars(spent)}): raise c.Runctl.monthly_budget to launch more this month"
        )
    left = budget - spent
    if spent >= 0.8 * budget:
        print(
            f"warning: {dollars(spent)} of the {dollars(budget)} monthly budget of {project!r} is "
            f"spent; this run stops at {dollars(left)}",
            flush=True,
        )
    own = options.get("cost_limit")
    options["cost_limit"] = min(float(own), left) if own else left
