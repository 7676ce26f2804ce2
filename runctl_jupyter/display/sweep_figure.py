"""The figure of a sweep: parallel coordinates (params -> objective) above each
finished trial's objective and the best so far, as plotly dicts. The same data
feeds the live FigureWidget and the saved bundle, whose SVG fallback draws the
objective curves without JavaScript.
"""

from __future__ import annotations

import math
from typing import Any

from ._format import esc, fmt_value
from .figures import PALETTE, PLOTLY_MIME, json_ready, svg_chart
from .sweep_table import number, objective_of

MAX_CATEGORIES = 30


def _dimension(label: str, values: list[Any]) -> dict | None:
    found = [number(v) for v in values]
    nums = [n for n in found if n is not None]
    if len(nums) == len(found):
        positive = all(n > 0 for n in nums)
        lo, hi = (min(nums), max(nums)) if nums else (0, 0)
        if positive and lo > 0 and hi / lo >= 100:  # a log-uniform kind of range
            return {
                "label": f"log10({esc(label)})",
                "values": [round(math.log10(n), 6) for n in nums],
            }
        return {"label": esc(label), "values": nums}
    texts = [fmt_value(v) for v in values]
    cats = list(dict.fromkeys(texts))[:MAX_CATEGORIES]
    index = {c: i for i, c in enumerate(cats)}
    return {
        "label": esc(label),
        "values": [index.get(t, len(cats) - 1) for t in texts],
        "tickvals": list(range(len(cats))),
        "ticktext": [esc(c) for c in cats],
    }


def figure_data(state: Any, trials: list[dict]) -> tuple[dict | None, dict | None, dict | None]:
    """(parallel coordinates trace, objective markers, best-so-far line) of the finished trials."""
    metric, mode = objective_of(state)
    if not metric:
        return None, None, None
    scored = sorted(
        (t for t in trials if number(t.get("objective")) is not None), key=lambda t: t["index"]
    )
    if not scored:
        return None, None, None
    keys: list[str] = []
    for t in scored:
        keys += [k for k in t["params"] if k not in keys]
    objective = [float(t["objective"]) for t in scored]
    dims = [_dimension(k, [t["params"].get(k) for t in scored]) for k in keys]
    dims.append({"label": esc(metric), "values": objective})
    parcoords = {
        "type": "parcoords",
        "domain": {"x": [0.0, 1.0], "y": [0.5, 1.0]},
        "line": {
            "color": objective,
            "colorscale": "Viridis",
            "reversescale": mode == "min",
            "showscale": True,
            "colorbar": {"len": 0.45, "y": 0.77},
        },
        "dimensions": dims,
    }
    xs = [t["index"] for t in scored]
    best, running = [], None
    for v in objective:
        running = v if running is None else (max(running, v) if mode == "max" else min(running, v))
        best.append(running)
    markers = {
        "type": "scatter",
        "mode": "markers",
        "name": esc(f"{metric} of a trial"),
        "x": xs,
        "y": objective,
        "marker": {"color": PALETTE[0], "size": 6},
        "hovertemplate": "trial %{x}<br>" + esc(metric) + " %{y:.6g}<extra></extra>",
    }
    line = {
        "type": "scatter",
        "mode": "lines",
        "name": "best so far",
        "x": xs,
        "y": best,
        "line": {"color": PALETTE[1], "width": 2, "shape": "hv"},
        "hovertemplate": "trial %{x}<br>best %{y:.6g}<extra></extra>",
    }
    return parcoords, markers, line


def figure_layout(state: Any) -> dict:
    metric, _ = objective_of(state)
    return {
        "height": 520,
        "margin": {"l": 60, "r": 40, "t": 50, "b": 40},
        "template": "plotly_white",
        "xaxis": {"domain": [0.0, 1.0], "anchor": "y", "title": {"text": "trial"}},
        "yaxis": {"domain": [0.0, 0.36], "anchor": "x", "title": {"text": esc(metric or "")}},
        "legend": {"orientation": "h", "y": 0.4, "x": 0},
        "showlegend": True,
    }


def figure_spec(state: Any, trials: list[dict]) -> dict | None:
    parcoords, markers, line = figure_data(state, trials)
    if parcoords is None or markers is None or line is None:
        return None
    markers["x"], markers["y"] = json_ready(markers["x"], markers["y"])
    line["x"], line["y"] = json_ready(line["x"], line["y"])
    return {
        "data": [parcoords, markers, line],
        "layout": {**figure_layout(state), "title": {"text": esc(f"sweep {state.name}")}},
        "config": {"displaylogo": False},
    }


def figure_bundle(state: Any, trials: list[dict]) -> dict | None:
    spec = figure_spec(state, trials)
    if spec is None:
        return None
    metric, _ = objective_of(state)
    _, markers, line = spec["data"]
    svg = svg_chart(
        [
            (f"{metric} of a trial", markers["x"], markers["y"]),
            ("best so far", line["x"], line["y"]),
        ],
        title=f"sweep {state.name}: {metric} by trial",
    )
    return {
        PLOTLY_MIME: spec,
        "text/html": f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>',
        "text/plain": f"<figure: sweep {state.name}, {metric} by trial>",
    }
