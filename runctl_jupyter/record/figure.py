"""The record's metrics figure: a plotly figure dict built without plotly. Stdlib only."""

from __future__ import annotations

import html
import math
from typing import Any

MAX_POINTS = 2_000


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most `max_points` points: the ends, plus each bucket's min and max (spikes survive)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(1, (max_points - 2) // 2)
    size = (n - 2) / buckets
    keep = {0, n - 1}
    for b in range(buckets):
        lo, hi = 1 + int(b * size), 1 + int((b + 1) * size)
        if lo >= hi:
            continue
        segment = ys[lo:hi]
        keep.add(lo + segment.index(min(segment)))
        keep.add(lo + segment.index(max(segment)))
    index = sorted(keep)
    return [xs[i] for i in index], [ys[i] for i in index]


def metrics_figure(series: dict[str, tuple[list, list]], title: str = "metrics") -> dict:
    """A plotly figure dict: one line per metric vs step; metrics whose scales differ
    by more than 10x go on their own stacked subplot."""
    groups: list[list[str]] = []
    magnitude: dict[str, float] = {}
    for name, (_, ys) in series.items():
        top = max((abs(y) for y in ys), default=0.0)
        magnitude[name] = math.log10(top) if top > 0 else 0.0
        for group in groups:
            if abs(magnitude[group[0]] - magnitude[name]) <= 1.0:
                group.append(name)
                break
        else:
            groups.append([name])
    n = max(1, len(groups))
    gap = 0.08
    height = (1.0 - gap * (n - 1)) / n
    layout: dict[str, Any] = {
        "title": {"text": html.escape(title)},
        "height": 260 + 180 * (n - 1),
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "hovermode": "x unified",
    }
    data = []
    for i, group in enumerate(groups):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, top - height), top], "anchor": f"x{suffix}"}
        xaxis: dict[str, Any] = {"anchor": f"y{suffix}", "showticklabels": i == n - 1}
        if i:
            xaxis["matches"] = "x"
        if i == n - 1:
            xaxis["title"] = {"text": "step"}
        layout[f"xaxis{suffix}"] = xaxis
        for name in group:
            xs, ys = downsample(*series[name])
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": html.escape(name),
                    "x": xs,
                    "y": [float(f"{y:.7g}") for y in ys],
                    "xaxis": f"x{suffix}",
                    "yaxis": f"y{suffix}",
                }
            )
    return {"data": data, "layout": layout}
