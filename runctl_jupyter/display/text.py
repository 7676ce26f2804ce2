"""Text for terminals and text/plain outputs: numbers, durations, costs, times,
aligned tables (and their plain HTML twins), a sweep's one-line summary."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def format_metric(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else str(value)


def format_cost(row: dict) -> str:
    if row.get("backend", "local") == "local":
        return "$0 (local)"
    return f"${row.get('cost') or 0:.2f}"


def format_time(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def table_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def table_html(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return (
        f"<table class='runctl-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def fmt_params(params: dict) -> str:
    return " ".join(
        f"{k}={format_metric(v) if isinstance(v, float) else v}" for k, v in params.items()
    )


def counts_text(state: Any) -> str:
    c = state.counts()
    parts = [f"{c['done']} done", f"{c['running']} running", f"{c['queued']} queued"]
    for key in ("failed", "pruned", "stopped"):
        if c[key]:
            parts.append(f"{c[key]} {key}")
    return ", ".join(parts)


def best_text(state: Any) -> str:
    best = state.best()
    metric = (state.spec.get("objective") or {}).get("metric")
    if best is None or not metric:
        return ""
    return (
        f"best {metric}={format_metric(best['objective'])} (trial {best['index']}, run "
        f"{best['run_id']}: {fmt_params(best['params'])})"
    )


def sweep_line(state: Any) -> str:
    status = state.display_status()
    text = f"sweep {state.id} '{state.name}' {status}"
    if state.reason and status != "succeeded":
        text += f" ({state.reason})"
    text += f": {state.n_planned} trials ({counts_text(state)})"
    best = best_text(state)
    if best:
        text += f" · {best}"
    if status == "orphaned":
        text += f" · `%runctl sweep --resume {state.id}` continues it"
    return text
