"""The figures of a comparison, as plotly bundles with a text (and, for curves, an
SVG) fallback: the chosen metric's curves overlaid, cost (or compute time) against
the best value with the Pareto front, and parallel coordinates of the params.
"""

from __future__ import annotations

import math
from typing import Any

from ..compare import compare_table, cost_axis, pareto_front
from ._format import as_dict, esc, fmt_num, fmt_value
from .comparison import Comparison
from .figures import PALETTE, PLOTLY_MIME, json_ready, svg_chart
from .series import downsample

TOTAL_POINTS = 20_000  # across all curves of the overlay (per run: 100..1000)
SVG_SERIES = 12  # curves drawn in the no-JavaScript fallback


def curves_bundle(cmp: Comparison) -> dict | None:
    """Overlaid curves of the chosen metric, one trace per run."""
    if not cmp.metric:
        return None
    history = cmp.history(cmp.metric)
    if not history:
        return None
    per_run = max(100, min(1000, TOTAL_POINTS // max(1, len(history))))
    data: list[dict[str, Any]] = []
    svg_series: list[tuple[str, list[Any], list[Any]]] = []
    for i, (rid, points) in enumerate(history.items()):
        xs, ys = json_ready(*downsample(points, per_run))
        label = cmp.label(rid)
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
                + esc(cmp.metric)
                + " %{y:.6g}<extra></extra>",
            }
        )
        if len(svg_series) < SVG_SERIES:
            svg_series.append((label, xs, ys))
    layout = {
        "title": {"text": esc(cmp.metric), "font": {"size": 14}},
        "height": 320,
        "margin": {"l": 60, "r": 20, "t": 40, "b": 40},
        "xaxis": {"title": {"text": "step"}},
        "yaxis": {"title": {"text": esc(cmp.metric)}},
        "hovermode": "closest",
    }
    more = len(history) - len(svg_series)
    svg = svg_chart(svg_series, title=cmp.metric, max_points=200)
    if more > 0:
        svg += f'<div style="color:#666;font-size:0.85em">and {more} more runs</div>'
    return {
        PLOTLY_MIME: {"data": data, "layout": layout, "config": {"displaylogo": False}},
        "text/html": f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>',
        "text/plain": f"<figure: {cmp.metric} of {len(history)} runs>",
    }


def scatter_bundle(cmp: Comparison) -> dict | None:
    """Cost (or compute time) against the best objective, Pareto front marked."""
    if not cmp.metric:
        return None
    rows = cmp.table()
    axis = cost_axis(rows)
    key = f"{cmp.metric}_best"
    points = [r for r in rows if r.get(axis) is not None and r.get(key) is not None]
    if not points:
        return None
    front_ids = pareto_front(rows, key, maximize=not cmp.minimizes(cmp.metric), cost=axis)
    by_run = {r["run"]: r for r in points}
    front = [by_run[f] for f in front_ids if f in by_run]
    labels = [esc(cmp.label(r["run"])) for r in points]
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
            "text": [esc(cmp.label(r["run"])) for r in front],
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
            "text": f"best {esc(cmp.metric)} per {'dollar' if axis == 'cost' else 'second'}",
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
        + f"Pareto front ({esc(axis)}, best {esc(cmp.metric)}): {listing}</div>",
        "text/plain": f"<figure: {axis} vs best {cmp.metric}; front: {', '.join(r['run'] for r in front)}>",
    }


def parcoords_bundle(cmp: Comparison) -> dict | None:
    """Parallel coordinates, params -> best objective, for 3 runs or more."""
    if not cmp.metric or len(cmp.rows) < 3:
        return None
    key = f"{cmp.metric}_best"
    rows = [
        r
        for r in compare_table(
            cmp.rows, cmp.summaries, metrics=[cmp.metric], directions=cmp.directions
        )
        if r.get(key) is not None
    ]
    if len(rows) < 3:
        return None
    params: dict[str, None] = {}
    for row in cmp.rows:
        params.update(dict.fromkeys(as_dict(row.get("params"))))
    varying = [
        p for p in params if len({repr(as_dict(r.get("params")).get(p)) for r in cmp.rows}) > 1
    ]
    by_id = {r["id"]: as_dict(r.get("params")) for r in cmp.rows}
    dims = []
    for p in varying[:8]:
        values = [by_id[r["run"]].get(p) for r in rows]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) == len(values):
            dim: dict[str, Any] = {"label": esc(p), "values": nums}
            if all(v > 0 for v in nums) and max(nums) / min(nums) >= 100:
                dim = {"label": esc(f"log10 {p}"), "values": [math.log10(v) for v in nums]}
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
                "reversescale": cmp.minimizes(cmp.metric),
            },
            "dimensions": dims,
        }
    ]
    layout = {
        "title": {"text": f"params → best {esc(cmp.metric)}", "font": {"size": 14}},
        "height": 360,
        "margin": {"l": 60, "r": 60, "t": 90, "b": 30},
    }
    return {
        PLOTLY_MIME: {"data": data, "layout": layout, "config": {"displaylogo": False}},
        "text/html": f'<div class="tex2jax_ignore">parallel coordinates of {len(rows)} runs (needs plotly\'s renderer)</div>',
        "text/plain": f"<figure: parallel coordinates, {len(rows)} runs>",
    }
