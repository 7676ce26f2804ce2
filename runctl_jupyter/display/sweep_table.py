"""A sweep as HTML: the header (status, counts, best trial, spend) and the trials
table, running trials first, then the best finished ones. The live SweepPanel
redraws both; the static summary keeps them.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ._format import badge, esc, fmt_duration, fmt_num, fmt_value
from .summary import CELL, CELL_L, TABLE_STYLE

GROUP_COLORS = {
    "done": "#2e7d32",
    "running": "#1e88e5",
    "queued": "#757575",
    "failed": "#c62828",
    "stopped": "#6d4c41",
    "pruned": "#ef6c00",
}


def objective_of(state: Any) -> tuple[str | None, str]:
    """(metric, "min" | "max") of the sweep's objective; no metric without --objective."""
    obj = state.spec.get("objective") or {}
    return obj.get("metric"), obj.get("mode") or "max"


def number(value: Any) -> float | None:
    """A finite float from a number; None for bools, nan, inf and anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def ordered(trials: list[dict], mode: str) -> list[dict]:
    """Running first, then finished best first, then the rest (queued, failed, ...) by index."""
    sign = -1.0 if mode == "max" else 1.0

    def key(t: dict) -> tuple:
        obj = number(t.get("objective"))
        if t["group"] == "running":
            return (0, t["index"])
        if obj is not None:
            return (1, sign * obj, t["index"])
        return (2 if t["group"] != "queued" else 3, t["index"])

    return sorted(trials, key=key)


def counts_html(state: Any) -> str:
    counts = state.counts()
    bits = []
    for group in ("done", "running", "queued", "failed", "pruned", "stopped"):
        n = counts.get(group, 0)
        if n or group in ("done", "running", "queued", "failed"):
            bits.append(
                f'<span class="runctl-count-{group}" style="color:{GROUP_COLORS[group]}">'
                f"<b>{n}</b> {group}</span>"
            )
    return " · ".join(bits)


def header_html(state: Any, trials: list[dict]) -> str:
    metric, mode = objective_of(state)
    status = state.display_status()
    bits = [
        f'<b style="font-size:1.05em">sweep {esc(state.name)}</b>',
        f"<code>{esc(state.id)}</code>",
        badge(status),
    ]
    if state.reason and status != "succeeded":
        bits.append(f'<span style="color:#666">({esc(state.reason)})</span>')
    bits.append(f"experiment <b>{esc(state.spec.get('experiment'))}</b>")
    bits.append(f"{esc(state.spec.get('search'))} · {esc(state.n_planned)} trials")
    if state.started:
        end = state.ended or time.time()
        bits.append(f"elapsed {esc(fmt_duration(max(0.0, end - state.started)))}")
    best = state.best()
    if metric and best is not None:
        params = ", ".join(f"{esc(k)}={esc(fmt_value(v))}" for k, v in best["params"].items())
        bits.append(
            f"best <b>{esc(metric)}={esc(fmt_num(best['objective']))}</b> ({esc(mode)}) "
            f"trial {esc(best['index'])}: {params}"
        )
    elif metric:
        bits.append(f"objective {esc(metric)}:{esc(mode)}")
    spent, limit = sum(float(t.get("cost") or 0) for t in trials), state.spec.get("cost_limit")
    if spent or limit:  # the sweep's spend (and its --cost-limit)
        bits.append(f"cost <b>${spent:.2f}</b>" + (f" of ${float(limit):.2f}" if limit else ""))
    html_ = (
        '<div class="runctl-header tex2jax_ignore mathjax_ignore" style="line-height:1.8">'
        + " · ".join(bits)
        + "</div>"
    )
    html_ += f'<div class="runctl-counts">{counts_html(state)}</div>'
    for warning in state.warnings[-3:]:
        html_ += f'<div class="runctl-warning" style="color:#ef6c00">⚠ {esc(warning)}</div>'
    return html_


def table_html(state: Any, trials: list[dict], max_rows: int = 30) -> str:
    metric, mode = objective_of(state)
    keys: list[str] = []
    for t in trials:
        for k in t["params"]:
            if k not in keys:
                keys.append(k)
    rows = ordered(trials, mode)
    shown = rows[:max_rows]
    head = ["trial", "run", "status", *keys]
    if metric:
        head += [f"{metric} (best)", f"{metric} (now)"]
    head += ["step", "duration", "cost"]
    body = []
    for t in shown:
        status = t["status"] or "queued"
        why = f" {esc(t['reason'])}" if t.get("reason") and status != "succeeded" else ""
        cells = [
            esc(t["index"]),
            f"<code>{esc(t['run'])}</code>" if t["run"] else "",
            badge(status) + why,
            *(esc(fmt_value(t["params"].get(k))) for k in keys),
        ]
        if metric:
            cells += [esc(fmt_num(t.get("objective"))), esc(fmt_num(t.get("current")))]
        cost = t.get("cost")
        cells += [
            esc(fmt_num(t.get("step"))),
            esc(fmt_duration(t.get("duration"))),
            "local" if (t.get("backend") or "local") == "local" else esc(f"${cost or 0:.2f}"),
        ]
        body.append(
            "<tr>"
            + "".join(
                f'<td style="{CELL_L if i < 3 else CELL}">{c}</td>' for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    head_html = "".join(
        f'<th style="{CELL_L if i < 3 else CELL}">{esc(h)}</th>' for i, h in enumerate(head)
    )
    more = ""
    if len(rows) > len(shown):
        more = f'<div style="color:#666">… and {len(rows) - len(shown)} more trials</div>'
    return (
        f'<table class="runctl-sweep-trials tex2jax_ignore mathjax_ignore" style="{TABLE_STYLE}"><thead><tr>{head_html}'
        f"</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"
    )
