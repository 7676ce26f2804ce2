"""The static summary of a sweep: what a finished SweepPanel leaves in the cell and
`runctl show SWEEP` shows. The header and trials table, a text twin for terminals,
and the figure bundle when a trial has an objective.
"""

from __future__ import annotations

from typing import Any

from ._format import esc, fmt_num, fmt_value
from .figures import PLOTLY_MIME
from .sweep_figure import figure_bundle
from .sweep_table import header_html, objective_of, ordered, table_html
from .text import sweep_line


def summary_html(state: Any, trials: list[dict], max_rows: int = 20) -> str:
    return (
        f'<div class="runctl-sweep-summary" data-sweep-id="{esc(state.id)}">'
        + header_html(state, trials)
        + table_html(state, trials, max_rows=max_rows)
        + "</div>"
    )


def summary_text(state: Any, trials: list[dict], max_rows: int = 20) -> str:
    metric, mode = objective_of(state)
    lines = [sweep_line(state)]
    for t in ordered(trials, mode)[:max_rows]:
        params = " ".join(f"{k}={fmt_value(v)}" for k, v in t["params"].items())
        value = (
            f" {metric}={fmt_num(t['objective'])}"
            if metric and t.get("objective") is not None
            else ""
        )
        lines.append(f"  trial {t['index']} {t['run'] or '-'} {t['status']}{value} [{params}]")
    lines += [f"  warning: {w}" for w in state.warnings[-3:]]
    return "\n".join(lines)


def static_outputs(state: Any, trials: list[dict]) -> list[dict]:
    """[summary bundle, figure bundle (if any trial has an objective)]."""
    outputs = [
        {"text/html": summary_html(state, trials), "text/plain": summary_text(state, trials)}
    ]
    fig = figure_bundle(state, trials)
    if fig is not None:
        outputs.append(fig)
    return outputs


def static_summary(state: Any, trials: list[dict]) -> dict:
    """One bundle (for `runctl show SWEEP`): HTML table + SVG, the plotly figure, text."""
    bundle = {"text/plain": summary_text(state, trials)}
    html_part = summary_html(state, trials)
    fig = figure_bundle(state, trials)
    if fig is not None:
        html_part += fig["text/html"]
        bundle[PLOTLY_MIME] = fig[PLOTLY_MIME]
    bundle["text/html"] = html_part
    return bundle
