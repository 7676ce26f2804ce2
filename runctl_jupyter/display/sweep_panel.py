"""SweepPanel: the live view of a sweep in a cell's output.

Widgets (a kernel with ipywidgets): header with status and done/running/queued/
failed counts, a progress bar, Stop sweep, a dropdown + Stop trial, the trial table
(running trials first, then the best finished ones), and one plotly FigureWidget
with parallel coordinates (params -> objective) above the best-so-far curve.
`finish()` closes every widget (the FigureWidget's plotly.js module swapped for an
empty one first, as RunPanel does, so nbclient's saved widget state stays small)
and leaves the static summary: an HTML table and a plotly figure bundle with an
SVG fallback.

Drawing is throttled (`redraw_interval`) and bounded: the table shows at most
`max_rows` trials and the figure every finished trial, so 500 trials stay quick.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable
from typing import Any

from ._format import badge, esc, fmt_duration, fmt_num, fmt_value
from ._widgets import leave_static
from .figures import PALETTE, PLOTLY_MIME, json_ready, svg_chart
from .summary import CELL, CELL_L, TABLE_STYLE
from .text import sweep_line

__all__ = ["SweepPanel", "figure_spec", "static_outputs", "static_summary", "summary_html"]

GROUP_COLORS = {
    "done": "#2e7d32",
    "running": "#1e88e5",
    "queued": "#757575",
    "failed": "#c62828",
    "stopped": "#6d4c41",
    "pruned": "#ef6c00",
}
MAX_CATEGORIES = 30


# ---------------------------------------------------------------- facts


def _objective(state: Any) -> tuple[str | None, str]:
    obj = state.spec.get("objective") or {}
    return obj.get("metric"), obj.get("mode") or "max"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def ordered(trials: list[dict], mode: str) -> list[dict]:
    """Running first, then finished best first, then the rest (queued, failed, ...) by index."""
    sign = -1.0 if mode == "max" else 1.0

    def key(t: dict) -> tuple:
        obj = _num(t.get("objective"))
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
    metric, mode = _objective(state)
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
    metric, mode = _objective(state)
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


def summary_html(state: Any, trials: list[dict], max_rows: int = 20) -> str:
    return (
        f'<div class="runctl-sweep-summary" data-sweep-id="{esc(state.id)}">'
        + header_html(state, trials)
        + table_html(state, trials, max_rows=max_rows)
        + "</div>"
    )


def summary_text(state: Any, trials: list[dict], max_rows: int = 20) -> str:
    metric, mode = _objective(state)
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


# ---------------------------------------------------------------- figures


def _dimension(label: str, values: list[Any]) -> dict | None:
    nums = [_num(v) for v in values]
    if all(n is not None for n in nums):
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
    metric, mode = _objective(state)
    if not metric:
        return None, None, None
    scored = sorted(
        (t for t in trials if _num(t.get("objective")) is not None), key=lambda t: t["index"]
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
    metric, _ = _objective(state)
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
    if parcoords is None:
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
    metric, _ = _objective(state)
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


# ---------------------------------------------------------------- the panel


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


class SweepPanel:
    """The live panel of a sweep; feed it with `update()`, end it with `finish()`."""

    def __init__(
        self,
        state: Any,
        on_stop_trial: Callable[[str], Any],
        on_stop_sweep: Callable[[], Any],
        *,
        widgets: bool | None = None,
        max_rows: int = 30,
        redraw_interval: float = 0.5,
    ):
        self.state = state
        self.trials: list[dict] = []
        self.on_stop_trial = on_stop_trial
        self.on_stop_sweep = on_stop_sweep
        self.max_rows = max_rows
        self.redraw_interval = redraw_interval
        self._want_widgets = widgets
        self.mode: str | None = None
        self.finished = False
        self.redraws = 0
        self._last_draw = -1e9
        self._dirty = True
        self._message = ""
        self._figure_key: tuple = ()
        self._handle = None
        self._fig_handle = None
        self.w: dict[str, Any] = {}

    # ------------------------------------------------------------ data
    def update(self, state: Any, trials: list[dict]) -> None:
        self.state, self.trials = state, trials
        self._dirty = True
        self._maybe_redraw()

    def running(self) -> list[dict]:
        return [t for t in self.trials if t["group"] == "running" and t["run"]]

    # ------------------------------------------------------------ display
    def show(self) -> None:
        if self.mode is not None:
            return
        use_widgets = self._want_widgets
        if use_widgets is None:
            from .run_panel import kernel_has_widgets

            use_widgets = kernel_has_widgets()
        if not _in_ipython():
            self.mode = "text"
            return
        from IPython.display import display

        panel_id, fig_id = f"runctl-{uuid.uuid4().hex}", f"runctl-fig-{uuid.uuid4().hex}"
        if use_widgets:
            self.build_widgets()
            self._handle = display(self.w["top"], display_id=panel_id)
            # the figure takes its place once a trial has an objective: until then
            # (and in a sweep without --objective) it would be 520 px of empty axes
            self._fig_handle = display({"text/plain": ""}, raw=True, display_id=fig_id)
        else:
            self.mode = "html"
            self._handle = display(self._live_bundle(), raw=True, display_id=panel_id)
            self._fig_handle = display({"text/plain": ""}, raw=True, display_id=fig_id)
        self.redraw()

    def _live_bundle(self) -> dict:
        return {
            "text/html": header_html(self.state, self.trials)
            + table_html(self.state, self.trials, self.max_rows),
            "text/plain": summary_text(self.state, self.trials),
        }

    def build_widgets(self) -> None:
        import ipywidgets as W
        import plotly.graph_objects as go

        w = self.w
        w["header"] = W.HTML(header_html(self.state, self.trials))
        w["progress"] = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="240px"))
        w["stop_sweep"] = W.Button(
            description="Stop sweep",
            icon="stop",
            tooltip="Stop running trials; queued ones wait for --resume",
        )
        w["stop_sweep"].on_click(lambda _b: self._stop_sweep())
        w["trial"] = W.Dropdown(options=[], description="trial", layout=W.Layout(width="260px"))
        w["stop_trial"] = W.Button(
            description="Stop trial", tooltip="Stop the chosen trial (graceful)"
        )
        w["stop_trial"].on_click(lambda _b: self._stop_trial())
        w["message"] = W.HTML("")
        w["controls"] = W.HBox(
            [w["progress"], w["stop_sweep"], w["trial"], w["stop_trial"]],
            layout=W.Layout(align_items="center"),
        )
        w["table"] = W.HTML(table_html(self.state, self.trials, self.max_rows))
        w["top"] = W.VBox([w["header"], w["controls"], w["message"], w["table"]])
        w["figure"] = go.FigureWidget(layout=figure_layout(self.state))
        self.mode = "widgets"

    def _maybe_redraw(self, force: bool = False) -> None:
        if self.finished or self.mode is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_interval:
            return
        self._last_draw, self._dirty = now, False
        self.redraws += 1
        if self.mode == "widgets":
            self._draw_widgets()
        elif self.mode == "html":
            self._handle.update(self._live_bundle(), raw=True)
            fig = figure_bundle(self.state, self.trials)
            if fig is not None:
                self._fig_handle.update({"text/html": fig["text/html"], "text/plain": ""}, raw=True)

    def redraw(self) -> None:
        self._dirty = True
        self._maybe_redraw(force=True)

    def _draw_widgets(self) -> None:
        w = self.w
        w["header"].value = header_html(self.state, self.trials)
        counts = self.state.counts()
        total = max(1, self.state.n_planned)
        w["progress"].max = total
        w["progress"].value = min(total, total - counts["queued"] - counts["running"])
        w["table"].value = table_html(self.state, self.trials, self.max_rows)
        options = [(f"{t['index']} · {t['run']}", t["run"]) for t in self.running()]
        if [o[1] for o in options] != [o[1] for o in w["trial"].options]:
            chosen, ids = w["trial"].value, [o[1] for o in options]
            w["trial"].options = options
            if ids:  # ipywidgets leaves an empty choice; Stop trial must show what it stops
                w["trial"].value = chosen if chosen in ids else ids[0]
        ended = self.state.status in ("succeeded", "failed", "stopped")
        w["stop_sweep"].disabled = ended or self._message.startswith("Stopping the sweep")
        w["stop_trial"].disabled = ended or not options
        w["message"].value = (
            f'<span style="color:#c62828">{esc(self._message)}</span>' if self._message else ""
        )
        self._draw_figure()

    def _draw_figure(self) -> None:
        key = tuple(
            (t["index"], t.get("objective")) for t in self.trials if t.get("objective") is not None
        )
        if key == self._figure_key:
            return
        self._figure_key = key
        parcoords, markers, line = figure_data(self.state, self.trials)
        if parcoords is None:
            return
        fig = self.w["figure"]
        first = not fig.data
        with fig.batch_update():
            if first:
                fig.add_trace(parcoords)
                fig.add_trace(markers)
                fig.add_trace(line)
            else:
                fig.data[0].dimensions = parcoords["dimensions"]
                fig.data[0].line.color = parcoords["line"]["color"]
                for trace, new in ((fig.data[1], markers), (fig.data[2], line)):
                    trace.x, trace.y = new["x"], new["y"]
        if first and self._fig_handle is not None:
            self._fig_handle.update(fig)

    # ------------------------------------------------------------ controls
    def _stop_sweep(self) -> None:
        try:
            self.on_stop_sweep()
        except Exception as exc:  # a click has no traceback to print to: show it
            self._message = f"Stop failed: {type(exc).__name__}: {exc}"
        else:
            self._message = (
                "Stopping the sweep: running trials stop, queued ones wait for --resume…"
            )
        self.redraw()

    def _stop_trial(self) -> None:
        run_id = self.w["trial"].value if "trial" in self.w else None
        if not run_id:
            return
        try:
            self.on_stop_trial(run_id)
        except Exception as exc:
            self._message = f"Stop failed: {type(exc).__name__}: {exc}"
        else:
            self._message = f"Stopping run {run_id} (graceful)…"
        self.redraw()

    # ------------------------------------------------------------ the end
    def finish(self, state: Any, trials: list[dict]) -> None:
        """Close every widget and leave the static summary in their place."""
        if self.finished:
            return
        self.state, self.trials = state, trials
        outputs = static_outputs(state, trials)
        self.finished = True
        # replace the views first, then close the widgets behind them (as the RunPanel does)
        leave_static(
            outputs,
            self._handle,
            self._fig_handle,
            text_mode=self.mode == "text" or not _in_ipython(),
        )
        self.close()

    def close(self) -> None:
        """Close all widgets; the figure's plotly.js module and data are emptied first
        (nbclient keeps the last state of every widget, closed or not)."""
        fig = self.w.get("figure")
        if fig is not None:
            try:
                with fig.batch_update():
                    if len(fig.data) == 3:
                        fig.data[0].dimensions = []
                        fig.data[0].line.color = []
                        for trace in fig.data[1:]:
                            trace.x, trace.y = [], []
                fig._esm = "export default {};"
            except Exception:  # closing matters more than shrinking
                pass
        if self.w:
            from ._widgets import close_all

            close_all([self.w["top"], fig])
        self.w = {}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return static_summary(self.state, self.trials) if self.finished else self._live_bundle()
