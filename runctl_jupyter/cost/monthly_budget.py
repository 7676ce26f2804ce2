"""Monthly budgets, checked before each launch; what is left becomes the run's
--cost-limit, so its agent stops it when a budget runs out, even with no notebook alive.

- c.Runctl.monthly_budget: a project's and owner's spend per calendar month (UTC);
- c.Runctl.person_budget: the owner's spend, every project;
- c.Runctl.team_budget: the team's (c.Runctl.team) spend, every member: the runs the
  store holds with that team (the teammates' runs the team store pulls in).

A run's month is the one it started in (UTC); its spend is the store's `cost` column.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..aws.tags import spec_team
from ..errors import RunctlError
from .prices import dollars


def month_bounds(month: str | None = None, now: float | None = None) -> tuple[float, float]:
    """[start, end) of a calendar month (UTC) as epoch seconds: `month` YYYY-MM, else now's."""
    import calendar

    if month:
        year, mon = (int(x) for x in month.split("-"))
    else:
        t = time.gmtime(now if now is not None else time.time())
        year, mon = t.tm_year, t.tm_mon
    start = calendar.timegm((year, mon, 1, 0, 0, 0, 0, 0, 0))
    year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
    return start, calendar.timegm((year, mon, 1, 0, 0, 0, 0, 0, 0))


def _started(row: dict) -> float:
    return float(row.get("started") or row.get("created") or 0)


def in_month(row: dict, month: str) -> bool:
    start, end = month_bounds(month)
    return start <= _started(row) < end


def run_team(row: dict) -> str:
    """A stored run's team: the row's, else its spec's ("" for none)."""
    if row.get("team"):
        return str(row["team"])
    run_dir = row.get("run_dir")
    if not run_dir:
        return ""
    from ..store.folders import read_spec

    try:
        return spec_team(read_spec(Path(run_dir)))
    except (OSError, ValueError, RunctlError):
        return ""


def _this_month(store: Any, project: str | None = None, now: float | None = None) -> list[dict]:
    start, end = month_bounds(None, now)
    rows = store.list_runs(project=project, limit=None) if project else store.list_runs(limit=None)
    return [r for r in rows if start <= _started(r) < end and float(r.get("cost") or 0) > 0]


def month_spent(store: Any, project: str, owner: str, now: float | None = None) -> float:
    """This calendar month's (UTC) spend of a project and owner, from the stored runs."""
    return sum(
        float(r.get("cost") or 0)
        for r in _this_month(store, project, now)
        if r.get("owner") == owner
    )


def _by(rows: list[dict], key: str) -> str:
    """`alice $60.00, bob $44.00`: who (or which project) spent what, most first."""
    spent: dict[str, float] = {}
    for r in rows:
        spent[str(r.get(key))] = spent.get(str(r.get(key)), 0.0) + float(r.get("cost") or 0)
    return ", ".join(f"{k} {dollars(v)}" for k, v in sorted(spent.items(), key=lambda x: -x[1]))


def _limits(session: Any, project: str) -> list[tuple[float, float, str, str]]:
    """(budget, spent, its name, the refusal) of each budget set: monthly, person, team."""
    config, store = session.config, session.store
    owner = session.run_owner() if hasattr(session, "run_owner") else config.owner
    found = []
    budget = float(config.monthly_budget or 0)
    if budget > 0:
        spent = month_spent(store, project, owner)
        found.append((budget, spent, f"monthly budget of {project!r}", (
            f"the monthly budget of project {project!r} for {owner} ({dollars(budget)}) is "
            f"spent ({dollars(spent)}): raise c.Runctl.monthly_budget to launch more this month"
        )))  # fmt: skip
    month = _this_month(store) if (config.person_budget or config.team_budget) else []
    budget = float(config.person_budget or 0)
    if budget > 0:
        mine = [r for r in month if r.get("owner") == owner]
        spent = sum(float(r.get("cost") or 0) for r in mine)
        found.append((budget, spent, f"monthly person budget of {owner}", (
            f"{owner}'s monthly budget ({dollars(budget)}, c.Runctl.person_budget) is spent: "
            f"{owner} has spent {dollars(spent)} this month ({_by(mine, 'project')}); raise "
            "c.Runctl.person_budget to launch more this month"
        )))  # fmt: skip
    budget = float(config.team_budget or 0)
    if budget > 0 and config.team:
        ours = [r for r in month if run_team(r) == config.team]
        spent = sum(float(r.get("cost") or 0) for r in ours)
        found.append((budget, spent, f"monthly team budget of {config.team!r}", (
            f"team {config.team!r}'s monthly budget ({dollars(budget)}, c.Runctl.team_budget) "
            f"is spent: {dollars(spent)} this month ({_by(ours, 'owner')}); ask the team to "
            "raise c.Runctl.team_budget to launch more this month"
        )))  # fmt: skip
    return found


def apply_monthly_budget(session: Any, project: str, options: dict) -> None:
    """c.Runctl.monthly_budget, person_budget, team_budget: refuse a launch once one is
    spent (one line: who spent what), warn from 80%, and cap the run's --cost-limit at
    the least that is left (its agent stops it there)."""
    config = session.config
    if not any(
        float(b or 0) > 0 for b in (config.monthly_budget, config.person_budget, config.team_budget)
    ):
        return
    session.store.refresh()
    left = None
    for budget, spent, name, refusal in _limits(session, project):
        if spent >= budget:
            raise RunctlError(refusal)
        if spent >= 0.8 * budget:
            print(
                f"warning: {dollars(spent)} of the {dollars(budget)} {name} is spent; this run "
                f"stops at {dollars(budget - spent)}",
                flush=True,
            )
        left = budget - spent if left is None else min(left, budget - spent)
    if left is None:
        return
    own = options.get("cost_limit")
    options["cost_limit"] = min(float(own), left) if own else left
