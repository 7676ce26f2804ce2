"""A comparison as a table: HTML for the notebook (sort arrow, Pareto star) and
aligned text for a terminal, with the same columns: the run, the params that differ,
each metric's final and best value, duration and cost.
"""

from __future__ import annotations

from ..compare import cost_axis
from ._format import badge, esc, fmt_cost, fmt_duration, fmt_num, fmt_value
from .comparison import Comparison
from .summary import CELL, CELL_L, TABLE_STYLE
from .text import table_text as aligned_text


def table_html(cmp: Comparison) -> str:
    rows = cmp.table()
    if not rows:
        return "<div>no runs to compare</div>"
    metric_cols = cmp.metric_columns()
    param_cols = cmp.param_columns(rows)
    by_id = dict(zip(cmp.run_ids, cmp.rows))
    head = ["run", "status"] + param_cols + metric_cols + ["duration", "cost"]
    if cmp.metric:
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
        if cmp.metric:
            cells.append(f'<td style="{CELL}">{"★" if r.get("pareto") else ""}</td>')
        html_rows.append("<tr>" + "".join(cells) + "</tr>")
    arrow = " ↓" if cmp.descending else " ↑"
    header = "".join(
        f'<th style="{CELL_L if i < 2 + len(param_cols) else CELL}">{esc(h)}{arrow if h == cmp.sort_by else ""}</th>'
        for i, h in enumerate(head)
    )
    note = ""
    if not cmp.all_params:
        note = '<div style="color:#666;font-size:0.85em">params that differ between the runs</div>'
    if cmp.metric:
        axis = cost_axis(rows)
        note += (
            f'<div style="color:#666;font-size:0.85em">★ Pareto front: no other run has lower '
            f"{esc(axis)} and a better best {esc(cmp.metric)}</div>"
        )
    return (
        f'<div class="runctl-compare tex2jax_ignore mathjax_ignore"><div style="overflow-x:auto"><table style="{TABLE_STYLE}">'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(html_rows)}</tbody></table></div>{note}</div>"
    )


def table_text(cmp: Comparison) -> str:
    """The table for a terminal: the same columns as the HTML one, aligned."""
    rows = cmp.table()
    if not rows:
        return "no runs to compare"
    metric_cols = cmp.metric_columns()
    param_cols = cmp.param_columns(rows)
    by_id = dict(zip(cmp.run_ids, cmp.rows))
    header = ["run", "name", "status", *param_cols, *metric_cols, "duration", "cost"]
    lines = []
    for r in rows:
        lines.append(
            [r["run"], r["name"] or "", r["status"] or ""]
            + [fmt_value(r.get(c)) for c in param_cols]
            + [fmt_num(r.get(c)) for c in metric_cols]
            + [fmt_duration(r.get("duration")), fmt_cost(by_id.get(r["run"], {}))]
        )
    return aligned_text(header, lines)
