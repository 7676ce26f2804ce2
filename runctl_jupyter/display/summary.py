"""Static outputs of a run: the HTML summary table and the figure bundle.

Left in the cell when a run ends (and shown by `%runctl show`): readable in a saved
notebook without a kernel, without widget state, trusted or not.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from ._format import (
    FINAL,
    as_dict,
    badge,
    error_text,
    esc,
    fmt_cost,
    fmt_duration,
    fmt_num,
    fmt_time,
    fmt_value,
    lower_is_better,
    run_elapsed,
)
from .figures import PLOTLY_MIME, json_ready, scatter, subplot_layout, svg_chart
from .series import downsample, group_by_scale

STATIC_POINTS = 1000  # per trace in a saved figure (min/max of 500 buckets)


def metric_stats(points: list[tuple[int, float]]) -> dict[str, Any]:
    """final, min, max, last step and count of one metric's full history."""
    last = last_step = None
    lo, hi = math.inf, -math.inf
    count = 0
    for step, value in points:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        count += 1
        last, last_step = value, step
        if value < lo:
            lo = value
        if value > hi:
            hi = value
    return {
        "last": last,
        "min": lo if count else None,
        "max": hi if count else None,
        "last_step": last_step,
        "count": count,
    }


def best_of(name: str, stats: dict) -> tuple[float | None, str]:
    """The best value and its direction arrow ("↓" lower is better, "↑" higher)."""
    if lower_is_better(name):
        return stats.get("min"), "↓"
    return stats.get("max"), "↑"


def _metric_rows(run: dict, metrics: dict) -> list[dict]:
    rows = []
    for name, points in (metrics or {}).items():
        stats = metric_stats(points)
        best, arrow = best_of(name, stats)
        rows.append({"metric": name, "best": best, "arrow": arrow, **stats})
    if not rows:  # no history at hand: the row's final metrics still say something
        for name, value in as_dict(run.get("final_metrics")).items():
            rows.append(
                {
                    "metric": name,
                    "last": value,
                    "best": None,
                    "arrow": "",
                    "min": None,
                    "max": None,
                    "last_step": run.get("last_step"),
                    "count": None,
                }
            )
    return rows


TABLE_STYLE = "border-collapse:collapse;font-size:0.9em;margin:4px 12px 4px 0"
CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"
CELL_L = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"


def _table(headers: list[str], rows: list[list[str]], left_cols: int = 1) -> str:
    head = "".join(
        f'<th style="{CELL_L if i < left_cols else CELL}">{esc(h)}</th>'
        for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td style="{CELL_L if i < left_cols else CELL}">{cell}</td>'
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return (
        f'<table style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


OPEN_RECORD_COMMAND = "runctl:open-record"  # the JupyterLab extension's command, args {"run": id}


def record_link(record_path: str | None, run_id: str | None = None) -> str:
    """How to open a run's record from an output.

    A relative link when the record is below the notebook's folder (JupyterLab
    opens it); otherwise the path as text. With a run id, also a command-linker
    button for the runctl JupyterLab extension (it copies the record into the
    lab's tree and opens it); outside JupyterLab that button does nothing.
    """
    if not record_path:
        return ""
    path = os.path.abspath(os.fspath(record_path))
    try:
        rel = os.path.relpath(path)
    except ValueError:  # another drive
        rel = ".."
    if rel.startswith(".."):
        shown = f'<code title="the run\'s executed record notebook">{esc(path)}</code>'
    else:
        shown = f'<a href="{esc(rel)}" target="_blank" title="{esc(path)}">{esc(rel)}</a>'
    if not run_id:
        return shown
    args = esc(json.dumps({"run": str(run_id)}))
    button = (
        f'<button data-commandlinker-command="{OPEN_RECORD_COMMAND}" data-commandlinker-args="{args}" '
        'title="open the record in JupyterLab">open record</button>'
    )
    return f"{button} {shown}"


def header_html(run: dict, extra: str = "") -> str:
    name = run.get("name") or ""
    bits = [
        f'<b style="font-size:1.05em">{esc(name) or esc(run.get("id"))}</b>',
        f"<code>{esc(run.get('id'))}</code>",
        badge(run.get("status")),
    ]
    if run.get("reason") and run.get("status") not in ("running", "succeeded"):
        bits.append(f'<span style="color:#666">({esc(run.get("reason"))})</span>')
    if run.get("experiment"):
        bits.append(f"experiment <b>{esc(run.get('experiment'))}</b>")
    where = run.get("backend") or "local"
    instance = run.get("instance_type") or as_dict(run.get("target")).get("instance_type")
    if instance:
        where += f" / {instance}"
    bits.append(esc(where))
    if run.get("attempt") and int(run.get("attempt") or 1) > 1:
        bits.append(f"attempt {esc(run.get('attempt'))}")
    if extra:
        bits.append(extra)
    return (
        '<div class="runctl-header tex2jax_ignore mathjax_ignore" style="line-height:1.8">'
        + " · ".join(bits)
        + "</div>"
    )


def summary_html(run: dict, metrics: dict, record_path: str | None = None) -> str:
    """Header, final/best metrics, params, duration and cost, as one HTML block."""
    rows = _metric_rows(run, metrics)
    status = run.get("status")
    facts = [
        ("status", badge(status) + (f" {esc(run.get('reason'))}" if run.get("reason") else "")),
        ("duration", esc(fmt_duration(run_elapsed(run)))),
        ("cost", esc(fmt_cost(run))),
        ("started", esc(fmt_time(run.get("started") or run.get("created")))),
    ]
    if run.get("exit_code") not in (None, 0):
        facts.append(("exit code", esc(run.get("exit_code"))))
    err = error_text(run.get("error"))
    if err:
        facts.append(("error", f'<span style="color:#c62828">{esc(err)}</span>'))
    from ..record.facts import trigger_text

    if trigger_text(run.get("trigger")):
        facts.append(("fired by", esc(trigger_text(run.get("trigger")))))
    link = record_link(record_path, run.get("id"))
    if link:
        facts.append(("record", link))
    facts_html = _table(["", ""], [[f"<b>{esc(k)}</b>", v] for k, v in facts], left_cols=2)
    metric_html = ""
    if rows:
        metric_html = _table(
            ["metric", "final", "best", "min", "max", "last step"],
            [
                [
                    esc(r["metric"]),
                    esc(fmt_num(r["last"])),
                    (esc(fmt_num(r["best"])) + f" {r['arrow']}") if r["best"] is not None else "",
                    esc(fmt_num(r["min"])),
                    esc(fmt_num(r["max"])),
                    esc(fmt_num(r["last_step"])),
                ]
                for r in rows
            ],
        )
    params = as_dict(run.get("params"))
    params_html = ""
    if params:
        params_html = _table(
            ["param", "value"],
            [[esc(k), esc(fmt_value(v))] for k, v in params.items()],
            left_cols=2,
        )
    blocks = "".join(
        f'<div style="display:inline-block;vertical-align:top">{b}</div>'
        for b in (metric_html, params_html, facts_html)
        if b
    )
    final_note = "" if status in FINAL else " (not finished)"
    return (
        f'<div class="runctl-summary tex2jax_ignore mathjax_ignore" data-run-id="{esc(run.get("id"))}">'
        + header_html(run, extra=esc(final_note.strip()) if final_note else "")
        + f"<div>{blocks}</div></div>"
    )


def summary_text(run: dict, metrics: dict) -> str:
    lines = [
        f"run {run.get('id')} {run.get('name') or ''} [{run.get('status')}"
        + (f": {run.get('reason')}" if run.get("reason") else "")
        + "]",
        f"  experiment {run.get('experiment') or '-'} · {run.get('backend') or 'local'} · "
        f"duration {fmt_duration(run_elapsed(run)) or '-'} · cost {fmt_cost(run)}",
    ]
    for r in _metric_rows(run, metrics):
        best = f" best {fmt_num(r['best'])}{r['arrow']}" if r["best"] is not None else ""
        lines.append(
            f"  {r['metric']}: final {fmt_num(r['last'])}{best} (step {fmt_num(r['last_step'])})"
        )
    params = as_dict(run.get("params"))
    if params:
        lines.append("  params: " + ", ".join(f"{k}={fmt_value(v)}" for k, v in params.items()))
    err = error_text(run.get("error"))
    if err:
        lines.append(f"  error: {err}")
    return "\n".join(lines)


def figure_spec(
    metrics: dict, title: str | None = None, max_points: int = STATIC_POINTS
) -> dict | None:
    """The plotly figure (plain dict) of a run's metric curves, one subplot per scale."""
    reduced = {}
    scales = {}
    for name, points in (metrics or {}).items():
        xs, ys = json_ready(*downsample(points, max_points))
        if not xs:
            continue
        reduced[name] = (xs, ys)
        peak = max(abs(min(ys)), abs(max(ys)))
        scales[name] = math.log10(peak) if peak > 0 else 0.0
    if not reduced:
        return None
    groups = group_by_scale(scales)
    data = []
    color = 0
    for g, members in enumerate(groups):
        for name in members:
            xs, ys = reduced[name]
            data.append(scatter(name, xs, ys, g, color))
            color += 1
    return {
        "data": data,
        "layout": subplot_layout(len(groups), title=title),
        "config": {"displaylogo": False},
    }


def figure_bundle(run: dict, metrics: dict) -> dict | None:
    """{plotly mime, text/html (inline SVG, no JavaScript), text/plain} of the curves."""
    title = f"{run.get('name') or run.get('id')} ({run.get('status')})"
    spec = figure_spec(metrics, title=title)
    if spec is None:
        return None
    svg = svg_chart([(esc_free_name(t), t["x"], t["y"]) for t in spec["data"]], title=title)
    names = ", ".join(metrics)
    return {
        PLOTLY_MIME: spec,
        "text/html": f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>',
        "text/plain": f"<figure: {names}>",
    }


def esc_free_name(trace: dict) -> str:
    """Trace names are stored escaped for plotly; svg_chart escapes again, so unescape once."""
    import html

    return html.unescape(trace["name"])


def static_outputs(run: dict, metrics: dict, record_path: str | None = None) -> list[dict]:
    """The outputs a finished panel leaves: [summary bundle, figure bundle (if any)].

    Two outputs because a frontend shows one mime type per output: with plotly's
    renderer installed, a single bundle would show the figure and hide the table.
    """
    outputs = [
        {
            "text/html": summary_html(run, metrics, record_path),
            "text/plain": summary_text(run, metrics),
        }
    ]
    fig = figure_bundle(run, metrics)
    if fig is not None:
        outputs.append(fig)
    return outputs


def static_summary(run: dict, metrics: dict, record_path: str | None = None) -> dict:
    """One mime bundle: text/html (table + SVG chart), the plotly figure, text/plain.

    For `%runctl show`. Displaying `static_outputs()` one by one is better where
    plotly's JupyterLab renderer is installed (it would pick the figure only).
    """
    html_part = summary_html(run, metrics, record_path)
    bundle: dict = {"text/plain": summary_text(run, metrics)}
    fig = figure_bundle(run, metrics)
    if fig is not None:
        html_part += fig["text/html"]
        bundle[PLOTLY_MIME] = fig[PLOTLY_MIME]
    bundle["text/html"] = html_part
    return bundle


def display_static(run: dict, metrics: dict, record_path: str | None = None) -> None:
    """Display a run's static outputs (table, then figure) in the current cell:
    what `%runctl show` should use (one bundle would lose the table where plotly's
    renderer is installed, as it outranks HTML)."""
    from IPython.display import display

    for bundle in static_outputs(run, metrics, record_path):
        display(bundle, raw=True)
