"""Comparison: the runs a ComparePanel compares, read from a `Store`, and how they
are shown: the chosen metric, the sort order, differing or all params. `table()`
gives the rows in that order with the Pareto flag; histories are read once per metric.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..compare import (
    compare_table,
    cost_axis,
    lower_is_better,
    metric_names,
    pareto_front,
    parse_objective,
)

if TYPE_CHECKING:
    from ..store import Store

NON_PARAM_COLUMNS = ("run", "name", "status", "experiment", "duration", "cost", "pareto")


class Comparison:
    """Compare runs read from a `Store`: `Comparison(store, ids).table()`."""

    def __init__(
        self,
        store: Store,
        run_ids: list[str],
        metric: str | None = None,
        *,
        objective: str | None = None,
    ):
        self.store = store
        self.run_ids = list(dict.fromkeys(run_ids))
        self.rows = [store.get(r) for r in self.run_ids]
        self.summaries = store.summaries(self.run_ids)
        self.metrics = metric_names(self.rows, self.summaries)
        objective_name, direction = parse_objective(objective)
        self.directions = {objective_name: direction} if objective_name and direction else {}
        self.metric = metric or objective_name or (self.metrics[0] if self.metrics else None)
        self.all_params = False
        self.sort_by = f"{self.metric}_best" if self.metric else "run"
        self.descending = bool(self.metric and not self.minimizes(self.metric))
        self._histories: dict[str, dict[str, list]] = {}

    def minimizes(self, metric: str) -> bool:
        """Whether lower values of `metric` are better (the objective's direction, else its name)."""
        return lower_is_better(metric, self.directions)

    def table(self, as_frame: bool = False) -> Any:
        """The plain rows (`compare.compare_table`), sorted as shown, with `pareto`;
        a pandas DataFrame indexed by run id with `as_frame=True` (pandas needed)."""
        if as_frame:
            try:
                import pandas as pd
            except ImportError:
                from ..errors import MissingDependency

                raise MissingDependency("pandas") from None
            return pd.DataFrame(self.table()).set_index("run")
        rows = compare_table(
            self.rows,
            self.summaries,
            all_params=self.all_params,
            metrics=self.metrics,
            directions=self.directions,
        )
        if self.metric:
            axis = cost_axis(rows)
            front = set(
                pareto_front(
                    rows, f"{self.metric}_best", maximize=not self.minimizes(self.metric), cost=axis
                )
            )
            for row in rows:
                row["pareto"] = row["run"] in front
        key = self.sort_by

        def present(row: dict) -> bool:
            value = row.get(key)
            return value is not None and not (isinstance(value, float) and math.isnan(value))

        def sort_key(row: dict) -> tuple:
            value = row[key]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return (0, value, "")
            return (1, 0, str(value))

        shown = sorted((r for r in rows if present(r)), key=sort_key, reverse=self.descending)
        return shown + [r for r in rows if not present(r)]

    def history(self, metric: str) -> dict[str, list]:
        """{run: [(step, value)]} of one metric, read once per metric."""
        if metric not in self._histories:
            out = {}
            for rid in self.run_ids:
                points = self.store.metrics(rid, keys=[metric]).get(metric)
                if points:
                    out[rid] = points
            self._histories[metric] = out
        return self._histories[metric]

    def label(self, rid: str) -> str:
        """The run's name; with its id when another compared run has the same name
        (a rerun keeps the name, and two legend entries alike say nothing)."""
        row = self.rows[self.run_ids.index(rid)]
        name = row.get("name")
        if not name:
            return rid
        same = sum(1 for r in self.rows if r.get("name") == name)
        return f"{name} ({rid})" if same > 1 else name

    def metric_columns(self) -> list[str]:
        return [c for m in self.metrics for c in (f"{m}_final", f"{m}_best")]

    def param_columns(self, rows: list[dict]) -> list[str]:
        """The params shown (those that differ, or all): the columns of a row that
        are neither fixed nor a metric's."""
        metric_cols = self.metric_columns()
        return [c for c in rows[0] if c not in NON_PARAM_COLUMNS and c not in metric_cols]
