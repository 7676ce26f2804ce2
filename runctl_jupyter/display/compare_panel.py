"""ComparePanel: runs side by side.

Everything it shows is a static output (HTML table, plotly figure bundles with
an SVG fallback), each under its own display id; the only widgets are a few small
controls (metric, sort, all params) whose callbacks replace those outputs. So a
saved notebook keeps the comparison as it was last shown, with or without a
kernel, and no plotly.js widget state.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

from ..compare import (
    compare_table,
    cost_axis,
    lower_is_better,
    metric_names,
    pareto_front,
    parse_objective,
)
from ._format import as_dict, badge, esc, fmt_cost, fmt_duration, fmt_num, fmt_value
from ._widgets import close_all, display_widget
from .figures import PALETTE, PLOTLY_MIME, json_ready, svg_chart
from .series import downsample
from .summary import CELL, CELL_L, TABLE_STYLE
from .text import table_text

__all__ = ["ComparePanel", "compare"]

TOTAL_POINTS = 20_000  # across all curves of the overlay (per run: 100..1000)
SVG_SERIES = 12  # curves drawn in the no-JavaScript fallback


class ComparePanel:
    """Compare runs read from a `Store`: `ComparePanel(store, ids).show()`."""

    def __init__(
        self,
        store: Any,
        run_ids: list[str],
        metric: str | None = None,
        *,
        objective: str | None = None,
        widgets: bool | None = None,
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
        self.descending = bool(self.metric) and not self._lower(self.metric)
        self._want_widgets = widgets
        self._histories: dict[str, dict[str, list]] = {}
        self._handles: list = []
        self._widgets: list = []
        self._syncing = False
        self.w: dict = {}

    # ------------------------------------------------------------------ data
    def _lower(self, metric: str) -> bool:
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
                    rows, f"{self.metric}_best", maximize=not self._lower(self.metric), cost=axis
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

    def _label(self, rid: str) -> str:
        """The run's name; with its id when another compared run has the same name
        (a rerun keeps the name, and two legend entries alike say nothing)."""
        row = self.rows[self.run_ids.index(rid)]
        name = row.get("name")
        if not name:
            return rid
        same = sum(1 for r in self.rows if r.get("name") == name)
        return f"{name} ({rid})" if same > 1 else name

    # -------------------------------------------------------------- outputs
    def table_html(self) -> str:
        rows = self.table()
        if not rows:
            return "<div>no runs to compare</div>"
        fixed = {"run", "name", "status", "experiment", "duration", "cost", "pareto"}
        metric_cols = [c for m in self.metrics for c in (f"{m}_final", f"{m}_best")]
        param_cols = [c for c in rows[0] if c not in fixed and c not in metric_cols]
        by_id = dict(zip(self.run_ids, self.rows))
        head = ["run", "status"] + param_cols + metric_cols + ["duration", "cost"]
        if self.metric:
            head.append("pareto")
        html_rows = []
        for r in rows:
            src = by_id.get(r["run"], {})
            cells = [
                f'<td style="{CELL_L}"><b>{esc(r["name"] or "")}</b> <code>{esc(r["run"])}</code></td>',
                f'<td style="{CELL_L}">{badge(r["status"])}</td>',
            ]
            cells += [f'<td style="{CELL_L}">{esc(fmt_value(r.get(c)))}</td>' for c in param_cols]
            cells += [f'<td style="{CELL}">{esc(fmt_num(r.get(c)))}</td>' for c in metric_cols]
            cells.append(f'<td style="{CELL}">{esc(fmt_duration(r.get("duration")))}</td>')
            cells.append(f'<td style="{CELL}">{esc(fmt_cost(src))}</td>')
            if self.metric:
                cells.append(f'<td style="{CELL}">{"★" if r.get("pareto") else ""}</td>')
            html_rows.append("<tr>" + "".join(cells) + "</tr>")
        arrow = " ↓" if self.descending else " ↑"
        header = "".join(
            f'<th style="{CELL_L if i < 2 + len(param_cols) else CELL}">{esc(h)}{arrow if h == self.sort_by else ""}</th>'
            for i, h in enumerate(head)
        )
        note = ""
        if not self.all_params:
            note = (
                '<div style="color:#666;font-size:0.85em">params that differ between the runs</div>'
            )
        if self.metric:
            axis = cost_axis(rows)
            note += (
                f'<div style="color:#666;font-size:0.85em">★ Pareto front: no other run has lower '
                f"{esc(axis)} and a better best {esc(self.metric)}</div>"
            )
        return (
            f'<div class="runctl-compare tex2jax_ignore mathjax_ignore"><div style="overflow-x:auto"><table style="{TABLE_STYLE}">'
            f"<thead><tr>{header}</tr></thead><tbody>{''.join(html_rows)}</tbody></table></div>{note}</div>"
        )

    def curves_bundle(self) -> dict | None:
        """Overlaid curves of the chosen metric, one trace per run."""
        if not self.metric:
            return None
        history = self.history(self.metric)
        if not history:
            return None
        per_run = max(100, min(1000, TOTAL_POINTS // max(1, len(history))))
        data, svg_series = [], []
        for i, (rid, points) in enumerate(history.items()):
            xs, ys = json_ready(*downsample(points, per_run))
            label = self._label(rid)
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": esc(label),
                    "x": xs,
                    "y": ys,
                    "line": {"color": PALETTE[i % len(PALETTE)], "width": 1.5},
                    "hovertemplate": esc(label)
                    + "<br>step %{x}<br>"
                    + esc(self.metric)
                    + " %{y:.6g}<extra></extra>",
                }
            )
            if len(svg_series) < SVG_SERIES:
                svg_series.append((label, xs, ys))
        layout = {
            "title": {"text": esc(self.metric), "font": {"size": 14}},
            "height": 320,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
            "xaxis": {"title": {"text": "step"}},
            "yaxis": {"title": {"text": esc(self.metric)}},
            "hovermode": "closest",
        }
        more = len(history) - len(svg_series)
        svg = svg_chart(svg_series, title=self.metric, max_points=200)
        if more > 0:
            svg += f'<div style="color:#666;font-size:0.85em">and {more} more runs</div>'
        return {
            PLOTLY_MIME: {"data": data, "layout": layout, "config": {"displaylogo": False}},
            "text/html": f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>',
            "text/plain": f"<figure: {self.metric} of {len(history)} runs>",
        }

    def scatter_bundle(self) -> dict | None:
        """Cost (or compute time) against the best objective, Pareto front marked."""
        if not self.metric:
            return None
        rows = self.table()
        axis = cost_axis(rows)
        key = f"{self.metric}_best"
        points = [r for r in rows if r.get(axis) is not None and r.get(key) is not None]
        if not points:
            return None
        front_ids = pareto_front(rows, key, maximize=not self._lower(self.metric), cost=axis)
        by_run = {r["run"]: r for r in points}
        front = [by_run[f] for f in front_ids if f in by_run]
        labels = [esc(self._label(r["run"])) for r in points]
        axis_title = "cost ($)" if axis == "cost" else "duration (s)"
        data = [
            {
                "type": "scatter",
                "mode": "markers",
                "name": "runs",
                "x": [r[axis] for r in points],
                "y": [r[key] for r in points],
                "text": labels,
                "marker": {"size": 9, "color": "#90a4ae"},
                "hovertemplate": "%{text}<br>"
                + axis_title
                + " %{x:.4g}<br>"
                + esc(key)
                + " %{y:.6g}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "Pareto front",
                "x": [r[axis] for r in front],
                "y": [r[key] for r in front],
                "text": [esc(self._label(r["run"])) for r in front],
                "marker": {"size": 12, "color": "#e53935", "symbol": "star"},
                "line": {"color": "#e53935", "dash": "dot"},
                "hovertemplate": "%{text} (front)<br>"
                + axis_title
                + " %{x:.4g}<br>"
                + esc(key)
                + " %{y:.6g}<extra></extra>",
            },
        ]
        layout = {
            "title": {
                "text": f"best {esc(self.metric)} per {'dollar' if axis == 'cost' else 'second'}",
                "font": {"size": 14},
            },
            "height": 320,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
            "xaxis": {"title": {"text": axis_title}},
            "yaxis": {"title": {"text": esc(key)}},
        }
        listing = ", ".join(
            f"{esc(r['name'] or r['run'])} ({esc(fmt_num(r[axis]))}, {esc(fmt_num(r[key]))})"
            for r in front
        )
        return {
            PLOTLY_MIME: {"data": data, "layout": layout, "config": {"displaylogo": False}},
            "text/html": '<div class="tex2jax_ignore mathjax_ignore">'
            + f"Pareto front ({esc(axis)}, best {esc(self.metric)}): {listing}</div>",
            "text/plain": f"<figure: {axis} vs best {self.metric}; front: {', '.join(r['run'] for r in front)}>",
        }

    def parcoords_bundle(self) -> dict | None:
        """Parallel coordinates, params -> best objective, for 3 runs or more."""
        if not self.metric or len(self.rows) < 3:
            return None
        key = f"{self.metric}_best"
        rows = [
            r
            for r in compare_table(
                self.rows, self.summaries, metrics=[self.metric], directions=self.directions
            )
            if r.get(key) is not None
        ]
        if len(rows) < 3:
            return None
        params: dict[str, None] = {}
        for row in self.rows:
            params.update(dict.fromkeys(as_dict(row.get("params"))))
        varying = [
            p for p in params if len({repr(as_dict(r.get("params")).get(p)) for r in self.rows}) > 1
        ]
        by_id = {r["id"]: as_dict(r.get("params")) for r in self.rows}
        dims = []
        for p in varying[:8]:
            values = [by_id[r["run"]].get(p) for r in rows]
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                dim: dict = {"label": esc(p), "values": values}
                if all(v > 0 for v in values) and max(values) / min(values) >= 100:
                    dim = {"label": esc(f"log10 {p}"), "values": [math.log10(v) for v in values]}
            else:
                cats = list(dict.fromkeys(fmt_value(v) for v in values))
                dim = {
                    "label": esc(p),
                    "values": [cats.index(fmt_value(v)) for v in values],
                    "tickvals": list(range(len(cats))),
                    "ticktext": [esc(c) for c in cats],
                }
            dims.append(dim)
        objective = [r[key] for r in rows]
        dims.append({"label": esc(key), "values": objective})
        data = [
            {
                "type": "parcoords",
                "line": {
                    "color": objective,
                    "colorscale": "Viridis",
                    "showscale": True,
                    "reversescale": self._lower(self.metric),
                },
                "dimensions": dims,
            }
        ]
        layout = {
            "title": {"text": f"params → best {esc(self.metric)}", "font": {"size": 14}},
            "height": 360,
            "margin": {"l": 60, "r": 60, "t": 90, "b": 30},
        }
        return {
            PLOTLY_MIME: {"data": data, "layout": layout, "config": {"displaylogo": False}},
            "text/html": f'<div class="tex2jax_ignore">parallel coordinates of {len(rows)} runs (needs plotly\'s renderer)</div>',
            "text/plain": f"<figure: parallel coordinates, {len(rows)} runs>",
        }

    def outputs(self) -> list[dict]:
        """The static outputs, in order: table, curves, cost vs objective, parallel coordinates."""
        table = {"text/html": self.table_html(), "text/plain": self.table_text()}
        figures = [self.curves_bundle(), self.scatter_bundle(), self.parcoords_bundle()]
        return [table] + [f if f is not None else {"text/plain": ""} for f in figures]

    def table_text(self) -> str:
        """The table for a terminal: the same columns as the HTML one, aligned."""
        rows = self.table()
        if not rows:
            return "no runs to compare"
        fixed = {"run", "name", "status", "experiment", "duration", "cost", "pareto"}
        metric_cols = [c for m in self.metrics for c in (f"{m}_final", f"{m}_best")]
        param_cols = [c for c in rows[0] if c not in fixed and c not in metric_cols]
        by_id = dict(zip(self.run_ids, self.rows))
        header = ["run", "name", "status", *param_cols, *metric_cols, "duration", "cost"]
        lines = []
        for r in rows:
            lines.append(
                [r["run"], r["name"] or "", r["status"] or ""]
                + [fmt_value(r.get(c)) for c in param_cols]
                + [fmt_num(r.get(c)) for c in metric_cols]
                + [fmt_duration(r.get("duration")), fmt_cost(by_id.get(r["run"], {}))]
            )
        return table_text(header, lines)

    # --------------------------------------------------------------- display
    def show(self) -> None:
        """Controls (in a kernel) and the static outputs, each under a display id."""
        from IPython import get_ipython
        from IPython.display import display

        outputs = self.outputs()
        if get_ipython() is None:
            print(outputs[0]["text/plain"])
            return
        use_widgets = self._want_widgets
        if use_widgets is None:
            use_widgets = getattr(get_ipython(), "kernel", None) is not None
        if use_widgets:
            display_widget(self._build_controls(), "")  # the controls mean nothing without a kernel
        self._handles = [
            display(b, raw=True, display_id=f"runctl-cmp-{uuid.uuid4().hex}") for b in outputs
        ]

    def refresh(self) -> None:
        """Redraw the outputs after a control changed."""
        for handle, bundle in zip(self._handles, self.outputs()):
            if PLOTLY_MIME in bundle:
                # JupyterLab reuses a renderer whose mime type stays the same, and
                # plotly's renderer ignores new data once drawn: switch the mime type
                # for a moment so a fresh renderer draws the new figure
                handle.update({"text/plain": ""}, raw=True)
            handle.update(bundle, raw=True)

    def _build_controls(self):
        import ipywidgets as W

        params = (
            [
                c
                for c in self.table()[0]
                if c not in ("run", "name", "status", "experiment", "duration", "cost", "pareto")
                and not any(c in (f"{m}_best", f"{m}_final") for m in self.metrics)
            ]
            if self.rows
            else []
        )
        columns = (
            ["run", "name", "status", "duration", "cost"]
            + [c for m in self.metrics for c in (f"{m}_best", f"{m}_final")]
            + params
        )
        w = self.w
        w["metric"] = W.Dropdown(
            options=self.metrics or [""], value=self.metric or "", description="metric"
        )
        w["sort"] = W.Dropdown(
            options=columns,
            value=self.sort_by if self.sort_by in columns else "run",
            description="sort by",
        )
        w["descending"] = W.ToggleButton(value=self.descending, tooltip="reverse the order")
        self._label_order(w["descending"])
        w["all_params"] = W.Checkbox(value=False, description="all params", indent=False)
        w["box"] = W.HBox([w["metric"], w["sort"], w["descending"], w["all_params"]])
        w["metric"].observe(self._on_metric, names="value")
        w["sort"].observe(self._on_sort, names="value")
        w["descending"].observe(self._on_descending, names="value")
        w["all_params"].observe(self._on_all_params, names="value")
        self._widgets = list(w.values())
        return w["box"]

    def _on_metric(self, change) -> None:
        self.metric = change["new"] or None
        if self.metric:
            self._syncing = True
            try:
                self.sort_by = self.w["sort"].value = f"{self.metric}_best"
                self.descending = self.w["descending"].value = not self._lower(self.metric)
            finally:
                self._syncing = False
        self.refresh()

    def _on_sort(self, change) -> None:
        self.sort_by = change["new"]
        if not self._syncing:
            self.refresh()

    @staticmethod
    def _label_order(button) -> None:
        """The toggle says the order shown (not the one a click gives)."""
        down = bool(button.value)
        button.description = "descending" if down else "ascending"
        button.icon = "sort-amount-desc" if down else "sort-amount-asc"

    def _on_descending(self, change) -> None:
        self.descending = bool(change["new"])
        self._label_order(self.w["descending"])
        if not self._syncing:
            self.refresh()

    def _on_all_params(self, change) -> None:
        self.all_params = bool(change["new"])
        self.refresh()

    def close(self) -> None:
        """Close the controls; the static outputs stay as they are."""
        close_all(self._widgets)
        self._widgets = []

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/html": self.table_html(), "text/plain": self.table_text()}

    def _ipython_display_(self) -> None:
        # returned from `%runctl compare`: all outputs, not just the table
        self.show()

    def __str__(self) -> str:
        return self.table_text()


def compare(
    store: Any,
    refs: tuple[str, ...] | list[str] = (),
    experiment: str | None = None,
    sweep: str | None = None,
    metric: str | None = None,
    objective: str | None = None,
    limit: int | None = 500,
) -> ComparePanel:
    """The panel for `%runctl compare RUN RUN ... | --experiment EXP | --sweep SWEEP`.

    Refs are run ids, id prefixes or names (`store.resolve`); an experiment or a
    sweep id selects all its runs (newest first, at most `limit`).
    """
    from ..errors import RunctlError

    ids: list[str] = [store.resolve(ref) for ref in refs]
    if experiment is not None or sweep is not None:
        rows = store.list_runs(experiment=experiment, sweep_id=sweep, limit=limit)
        ids += [row["id"] for row in reversed(rows)]  # oldest first, like a sweep's trials
    ids = list(dict.fromkeys(ids))
    if not ids:
        where = (
            f"experiment {experiment!r}"
            if experiment
            else f"sweep {sweep!r}"
            if sweep
            else "the arguments"
        )
        raise RunctlError(
            f"no runs to compare in {where}: give run ids or names "
            "(%runctl compare RUN RUN ...), --experiment NAME or --sweep SWEEP; `%runctl runs` lists runs"
        )
    store.refresh()  # new events of runs still going
    return ComparePanel(store, ids, metric=metric, objective=objective)
