"""Runs side by side, as plain data (no widgets): what `ComparePanel` draws and
what users who plot themselves get back.

    rows = compare_table(runs, summaries)        # list of dicts, one per run
    compare_table(runs, summaries, as_frame=True) # a pandas DataFrame (pandas needed)

A row holds `run`, `name`, `status`, `experiment`, `duration`, `cost`, the params
that differ between the runs (all of them with `all_params=True`), and for each
metric `<metric>_final` and `<metric>_best`. `pareto_front()` marks the runs that
no other run beats on both cost and objective.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from .errors import MissingDependency
from .events import lower_is_better as name_says_lower_is_better

__all__ = [
    "best_value",
    "compare_table",
    "cost_axis",
    "differing_params",
    "lower_is_better",
    "metric_names",
    "pareto_front",
    "parse_objective",
]

FIXED_COLUMNS = ("run", "name", "status", "experiment", "duration", "cost")
_MISSING = object()


def lower_is_better(metric: str, directions: dict[str, str] | None = None) -> bool:
    """Whether smaller values of `metric` are better: from `directions`
    ({"val_acc": "max"}), else from its name (loss, error, ... are minimised)."""
    if directions and metric in directions:
        return directions[metric] == "min"
    return name_says_lower_is_better(metric)


def parse_objective(objective: str | None) -> tuple[str | None, str | None]:
    """ "val_acc:max" -> ("val_acc", "max"); "loss" -> ("loss", None)."""
    if not objective:
        return None, None
    name, _, given = objective.partition(":")
    direction = given.strip().lower() or None
    if direction not in (None, "min", "max"):
        raise ValueError(
            f"objective direction must be min or max, not {direction!r} (e.g. val_acc:max)"
        )
    return name.strip(), direction


def _params(row: dict) -> dict:
    params = row.get("params")
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            params = {}
    return params if isinstance(params, dict) else {}


def _same(a: Any, b: Any) -> bool:
    try:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(
            b, sort_keys=True, default=str
        )
    except (TypeError, ValueError):
        return a == b


def differing_params(runs: Sequence[dict]) -> list[str]:
    """Param names whose value is not the same in every run (a missing param differs)."""
    names: dict[str, None] = {}
    for row in runs:
        names.update(dict.fromkeys(_params(row)))
    out = []
    for name in names:
        values = [_params(row).get(name, _MISSING) for row in runs]
        first = values[0]
        if any(v is _MISSING for v in values) or not all(_same(first, v) for v in values[1:]):
            out.append(name)
    return out


def _summary_of(row: dict, summaries: dict | None) -> dict[str, dict]:
    if summaries is not None and row.get("id") in summaries:
        return summaries[row["id"]] or {}
    finals = row.get("final_metrics")
    if isinstance(finals, str):
        try:
            finals = json.loads(finals)
        except ValueError:
            finals = {}
    return {k: {"last": v} for k, v in (finals or {}).items()} if isinstance(finals, dict) else {}


def metric_names(runs: Sequence[dict], summaries: dict | None = None) -> list[str]:
    """Every metric any run has, most common first (ties in first-seen order)."""
    counts: dict[str, int] = {}
    for row in runs:
        for name in _summary_of(row, summaries):
            counts[name] = counts.get(name, 0) + 1
    order = {name: i for i, name in enumerate(counts)}
    return sorted(counts, key=lambda n: (-counts[n], order[n]))


def best_value(metric: str, stats: dict, directions: dict[str, str] | None = None) -> float | None:
    key = "min" if lower_is_better(metric, directions) else "max"
    value = stats.get(key)
    if value is None and "min" not in stats and "max" not in stats:
        value = stats.get("last")  # only a final value is known
    return _number(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if isinstance(value, float) and math.isnan(value) else value


def _column(name: str, taken: set[str]) -> str:
    return name if name not in taken else f"param_{name}"


def compare_table(
    runs: Sequence[dict],
    summaries: dict[str, dict[str, dict]] | None = None,
    *,
    all_params: bool = False,
    metrics: Iterable[str] | None = None,
    directions: dict[str, str] | None = None,
    as_frame: bool = False,
) -> Any:
    """One dict per run: identity, params (differing only unless `all_params`),
    `<metric>_final` and `<metric>_best` per metric, duration, cost, status.

    `summaries` is `Store.summaries(ids)`; without it the rows' final metrics are
    used (no best then, unless only a final is known). `as_frame=True` returns a
    pandas DataFrame indexed by run id.
    """
    runs = list(runs)
    if all_params:
        names: dict[str, None] = {}
        for row in runs:
            names.update(dict.fromkeys(_params(row)))
        param_names = list(names)
    else:
        param_names = differing_params(runs) if len(runs) > 1 else []
    metric_list = list(metrics) if metrics is not None else metric_names(runs, summaries)
    taken = (
        set(FIXED_COLUMNS)
        | {f"{m}_final" for m in metric_list}
        | {f"{m}_best" for m in metric_list}
    )
    table = []
    for row in runs:
        out: dict[str, Any] = {
            "run": row.get("id"),
            "name": row.get("name"),
            "status": row.get("status"),
            "experiment": row.get("experiment"),
            "duration": _number(row.get("duration")),
            "cost": _number(row.get("cost")),
        }
        params = _params(row)
        for name in param_names:
            out[_column(name, taken)] = params.get(name)
        stats = _summary_of(row, summaries)
        for m in metric_list:
            s = stats.get(m) or {}
            out[f"{m}_final"] = _number(s.get("last"))
            out[f"{m}_best"] = best_value(m, s, directions) if s else None
        table.append(out)
    if as_frame:
        try:
            import pandas as pd
        except ImportError:
            raise MissingDependency("pandas") from None
        return pd.DataFrame(table).set_index("run") if table else pd.DataFrame(table)
    return table


def cost_axis(rows: Sequence[dict]) -> str:
    """ "cost" (dollars) when any run cost money, else "duration" (seconds of compute):
    on the local backend every run costs $0, and time is what was spent."""
    return "cost" if any((r.get("cost") or 0) > 0 for r in rows) else "duration"


def pareto_front(
    rows: Sequence[dict],
    objective: str,
    maximize: bool = True,
    cost: str = "cost",
) -> list[Any]:
    """The `run`s on the cost/objective Pareto front, cheapest first.

    A run is on the front when no other run is at most as expensive and at least
    as good with one of the two strictly better. Rows without both numbers are
    left out.
    """
    points = []
    for row in rows:
        c, o = _number(row.get(cost)), _number(row.get(objective))
        if c is None or o is None or (isinstance(o, float) and math.isinf(o)):
            continue
        points.append((c, -o if maximize else o, row.get("run")))
    # cheapest first; among equal cost, the best objective first
    points.sort(key=lambda p: (p[0], p[1]))
    front, best = [], math.inf
    for _cost, o, run in points:
        if o < best:
            front.append(run)
            best = o
    return front
