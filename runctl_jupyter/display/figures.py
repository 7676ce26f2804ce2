"""Plotly figure specs as plain dicts, and a small inline SVG chart.

The plotly dicts feed both the live FigureWidget and the static
`application/vnd.plotly.v1+json` output. The SVG chart is the static fallback
inside `text/html`: it needs no JavaScript, so it shows in untrusted notebooks,
on GitHub and wherever plotly's renderer is missing.
"""

from __future__ import annotations

import math

from ._format import esc, finite, fmt_num, round_sig

PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def subplot_layout(n_groups: int, title: str | None = None, x_title: str = "step") -> dict:
    """Stacked subplots sharing the x axis, one per scale group."""
    n = max(1, n_groups)
    gap = 0.06
    height = (1.0 - gap * (n - 1)) / n
    layout: dict = {
        "height": 220 + 160 * (n - 1),
        "margin": {"l": 60, "r": 20, "t": 40 if title else 20, "b": 40},
        "hovermode": "x unified",
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        "template": "plotly_white",
    }
    if title:
        layout["title"] = {"text": esc(title), "font": {"size": 14}}
    for i in range(n):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, top - height), top], "anchor": f"x{suffix}"}
        last = i == n - 1
        # every axis states its title: a live figure merges a new layout into the old one
        xaxis: dict = {
            "anchor": f"y{suffix}",
            "showticklabels": last,
            "title": {"text": x_title if last else ""},
        }
        if i:
            xaxis["matches"] = "x"
        layout[f"xaxis{suffix}"] = xaxis
    return layout


def axis_refs(group_index: int) -> tuple[str, str]:
    suffix = "" if group_index == 0 else str(group_index + 1)
    return f"x{suffix}", f"y{suffix}"


def scatter(name: str, xs: list, ys: list, group_index: int, color_index: int, **extra) -> dict:
    xref, yref = axis_refs(group_index)
    trace = {
        "type": "scatter",
        "mode": "lines",
        "name": esc(name),
        "x": xs,
        "y": ys,
        "xaxis": xref,
        "yaxis": yref,
        "line": {"color": PALETTE[color_index % len(PALETTE)], "width": 1.6},
        "hovertemplate": "step %{x}<br>" + esc(name) + " %{y:.6g}<extra></extra>",
    }
    trace.update(extra)
    return trace


def json_ready(xs: list, ys: list) -> tuple[list, list]:
    """Rounded, nan-free lists: small and valid JSON for a saved notebook."""
    out_x, out_y = [], []
    for x, y in zip(xs, ys):
        y = finite(y)
        if y is None:
            continue
        out_x.append(x if isinstance(x, int) else round_sig(float(x)))
        out_y.append(round_sig(y))
    return out_x, out_y


def svg_chart(
    series: list[tuple[str, list, list]],
    width: int = 640,
    height: int = 200,
    max_points: int = 300,
    title: str | None = None,
) -> str:
    """A dependency-free line chart: one polyline per series, min/max labels, legend.

    All series share one chart, each normalised to its own range when their
    scales differ by more than a decade (then the y labels are per series in the
    legend).
    """
    drawable = [(name, xs, ys) for name, xs, ys in series if xs]
    if not drawable:
        return ""
    pad_l, pad_r, pad_t, pad_b = 64, 10, 22 if title else 8, 22
    plot_w, plot_h = width - pad_l - pad_r, height - pad_t - pad_b
    x_min = min(min(xs) for _, xs, _ in drawable)
    x_max = max(max(xs) for _, xs, _ in drawable)
    lows = [min(ys) for _, _, ys in drawable]
    highs = [max(ys) for _, _, ys in drawable]
    y_min, y_max = min(lows), max(highs)
    peaks = [max(abs(lo), abs(hi)) or 1.0 for lo, hi in zip(lows, highs)]
    shared = max(peaks) / min(peaks) <= 10
    x_span = (x_max - x_min) or 1

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 18 * len(drawable)}" '
        f'viewBox="0 0 {width} {height + 18 * len(drawable)}" style="font:11px sans-serif">'
    ]
    if title:
        parts.append(f'<text x="{pad_l}" y="14" font-weight="bold">{esc(title)}</text>')
    parts.append(
        f'<rect x="{pad_l}" y="{pad_t}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>'
    )
    if shared:
        parts.append(
            f'<text x="{pad_l - 4}" y="{pad_t + 9}" text-anchor="end">{esc(fmt_num(y_max))}</text>'
        )
        parts.append(
            f'<text x="{pad_l - 4}" y="{pad_t + plot_h}" text-anchor="end">{esc(fmt_num(y_min))}</text>'
        )
    parts.append(f'<text x="{pad_l}" y="{height - 6}">{esc(fmt_num(x_min))}</text>')
    parts.append(
        f'<text x="{pad_l + plot_w}" y="{height - 6}" text-anchor="end">step {esc(fmt_num(x_max))}</text>'
    )
    for i, (name, xs, ys) in enumerate(drawable):
        lo, hi = (y_min, y_max) if shared else (lows[i], highs[i])
        span = (hi - lo) or 1.0
        stride = max(1, math.ceil(len(xs) / max_points))
        coords = []
        for j in range(0, len(xs), stride):
            px = pad_l + (xs[j] - x_min) / x_span * plot_w
            py = pad_t + plot_h - (ys[j] - lo) / span * plot_h
            coords.append(f"{px:.1f},{py:.1f}")
        if len(xs) > 1 and (len(xs) - 1) % stride:
            px = pad_l + (xs[-1] - x_min) / x_span * plot_w
            py = pad_t + plot_h - (ys[-1] - lo) / span * plot_h
            coords.append(f"{px:.1f},{py:.1f}")
        color = PALETTE[i % len(PALETTE)]
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{" ".join(coords)}"/>'
        )
        label = esc(name) if shared else f"{esc(name)} [{esc(fmt_num(lo))} … {esc(fmt_num(hi))}]"
        y_leg = height + 18 * i + 12
        parts.append(f'<rect x="{pad_l}" y="{y_leg - 8}" width="12" height="3" fill="{color}"/>')
        parts.append(f'<text x="{pad_l + 18}" y="{y_leg}">{label}</text>')
    parts.append("</svg>")
    return "".join(parts)
