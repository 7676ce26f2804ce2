"""RunPanel: the live view of one run in a cell's output.

Widget mode (a kernel with ipywidgets): header, progress bar, plotly FigureWidget
curves, smoothing toggle, Stop / Open record controls and the log tail. HTML mode
(terminal IPython, or `live=False`): the same facts as HTML with an SVG chart,
updated through display handles. Either way `finish()` closes every widget and
leaves the static summary (`summary.static_outputs`) in their place.

`update()` is O(new events): it only appends to bounded series and deques; the
drawing happens at most once per `redraw_interval` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from collections.abc import Callable

from ._format import FINAL, LOCAL_COST, as_dict, esc, fmt_cost, fmt_duration, run_elapsed
from ._widgets import display_widget, leave_static
from .figures import scatter, subplot_layout, svg_chart
from .record_copy import RecordOpener
from .series import MetricSeries
from .summary import display_static, header_html, static_outputs, static_summary

__all__ = ["RunPanel", "display_static", "static_outputs", "static_summary"]

ETA_WINDOW = 30.0  # seconds of recent steps used for the step rate
TERMINAL_INTERVAL = 5.0  # seconds between progress lines in terminal IPython
MAX_GROUPS = 4


def kernel_has_widgets() -> bool:
    """True inside a Jupyter kernel (widgets can render); False in terminal IPython/plain Python."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    return get_ipython() is not None


def _array(values: list, empty: bool = False):
    """numpy arrays pass plotly's validation ~3x faster than lists (numpy is optional)."""
    try:
        import numpy as np
    except ImportError:
        return values
    return np.asarray(values, dtype=float) if values or empty else values


class RunPanel:
    """The live panel of one run; feed it with `update()`, end it with `finish()`."""

    def __init__(
        self,
        run: dict,
        on_stop: Callable[[bool], None],
        record_path: str | None = None,
        log_tail_lines: int = 30,
        live: bool = True,
        *,
        widgets: bool | None = None,
        max_points: int = 2000,
        redraw_interval: float = 0.25,
    ):
        self.run = dict(run)
        self.on_stop = on_stop
        self.record_path = record_path
        self.record = RecordOpener(record_path)  # the Open record button (widget mode)
        self.live = live
        self.max_points = max_points
        self.redraw_interval = redraw_interval
        self._want_widgets = widgets
        self.series: dict[str, MetricSeries] = {}
        self.log_tail: deque[tuple[str, str]] = deque(maxlen=max(1, log_tail_lines))
        self.warnings: deque[str] = deque(maxlen=3)
        self.step: int | None = None
        self.total: int | None = self._initial_total(self.run)
        self._total_logged = False
        self._total_from_params = self.total is not None
        self._rate: deque[tuple[float, int]] = deque()
        self._last_seq = 0
        self._groups: list[list[str]] = []
        self._group_of: dict[str, int] = {}
        self._drawn_counts: dict[str, int] = {}
        self._trace_index: dict[str, int] = {}
        self._smoothing = False
        self._stop_presses = 0
        self._message = ""
        self._dirty = True
        self._last_draw = -1e9
        self.redraws = 0
        self.mode: str | None = None  # "widgets" | "html" | "text" once shown
        self.finished = False
        self._terminal = False
        self._handle = None
        self._fig_handle = None
        self._widgets: list = []
        self.w: dict = {}

    # ----------------------------------------------------------------- data
    @staticmethod
    def _initial_total(run: dict) -> int | None:
        total = run.get("total")
        if not total:
            total = as_dict(run.get("params")).get("epochs")
        try:
            return int(total) if total else None
        except (TypeError, ValueError):
            return None

    def update(self, run: dict, events: list[dict]) -> None:
        """Take a refreshed run row and the new events; redraw if the throttle allows."""
        if run:
            self.run = dict(run)
            if self.total is None and self._total_from_params:
                self.total = self._initial_total(self.run)
        series = self.series
        for event in events:
            seq = event.get("seq")
            if isinstance(seq, int):
                if seq <= self._last_seq:
                    continue  # already seen: duplicates are harmless
                self._last_seq = seq
            kind = event.get("type")
            if kind == "metric":
                step = event.get("step")
                values = event.get("values") or {}
                if not isinstance(step, int):
                    step = (self.step or 0) + 1
                for name, value in values.items():
                    s = series.get(name)
                    if s is None:
                        s = series[name] = MetricSeries(str(name), self.max_points)
                    try:
                        s.add(step, float(value))
                    except (TypeError, ValueError):
                        continue
                self.step = step
                total = event.get("total")
                if isinstance(total, int) and total > 0:
                    self.total = total
                    self._total_logged = True
                elif not self._total_logged and self.total and step > self.total:
                    self.total = None  # `epochs` was not what the steps count (batches, say)
                    self._total_from_params = False
                t = event.get("t")
                if isinstance(t, (int, float)):
                    rate = self._rate
                    if not rate or t - rate[-1][0] >= 0.2:
                        rate.append((t, step))
                        while len(rate) > 2 and t - rate[0][0] > ETA_WINDOW:
                            rate.popleft()
            elif kind == "log":
                stream = event.get("stream") or "stdout"
                text = event.get("text") or ""
                for line in str(text).splitlines()[-self.log_tail.maxlen :]:
                    self.log_tail.append((stream, line))
            elif kind == "warning":
                self.warnings.append(str(event.get("message") or ""))
            elif kind == "cost":
                if isinstance(event.get("dollars"), (int, float)):
                    self.run["cost"] = max(self.run.get("cost") or 0.0, event["dollars"])
                if isinstance(event.get("rate"), (int, float)):
                    self.run["rate"] = event["rate"]
        self._dirty = True
        self._maybe_redraw()

    def eta(self) -> float | None:
        """Seconds left from the recent step rate, when the total is known."""
        if not self.total or self.step is None or len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return max(0.0, (self.total - self.step) / ((s1 - s0) / (t1 - t0)))

    def _regroup(self) -> bool:
        """Give new metrics a subplot (sticky: a metric never moves). True if layout changed."""
        new = [n for n in self.series if n not in self._group_of and self.series[n].count]
        if not new:
            return False
        changed = False
        for name in new:
            scale = self.series[name].scale
            target = None
            for g, members in enumerate(self._groups):
                if abs(self.series[members[0]].scale - scale) <= 1.0:
                    target = g
                    break
            if target is None:
                if len(self._groups) < MAX_GROUPS:
                    self._groups.append([])
                    target = len(self._groups) - 1
                    changed = True
                else:
                    target = min(
                        range(len(self._groups)),
                        key=lambda g: abs(self.series[self._groups[g][0]].scale - scale),
                    )
            self._groups[target].append(name)
            self._group_of[name] = target
        return True if changed else bool(new)

    # ------------------------------------------------------------- rendering
    def header_html(self) -> str:
        run = self.run
        facts = []
        elapsed = run_elapsed(run)
        if elapsed is not None:
            facts.append(f"elapsed {esc(fmt_duration(elapsed))}")
        if run.get("status") not in FINAL:
            eta = self.eta()
            if eta is not None:
                facts.append(f"ETA {esc(fmt_duration(eta))}")
        cost = fmt_cost(run)
        if cost != LOCAL_COST:  # the header already names the local backend once
            facts.append(f'<span class="runctl-cost">{esc(cost)}</span>')
        html_ = header_html(run, extra=" · ".join(facts))
        if self.warnings:
            html_ += "".join(f'<div style="color:#ef6c00">⚠ {esc(w)}</div>' for w in self.warnings)
        return html_

    def progress_text(self) -> str:
        if self.step is None:
            return "waiting for the first metric…"
        if self.total:
            pct = 100.0 * min(self.step, self.total) / self.total
            return f"step {self.step} / {self.total} ({pct:.0f}%)"
        return f"step {self.step}"

    def status_line(self) -> str:
        """One line of plain text: id, status, progress, elapsed, cost."""
        run = self.run
        bits = [
            f"run {run.get('id')} {run.get('name') or ''}".rstrip(),
            f"[{run.get('status')}]",
            self.progress_text(),
        ]
        elapsed = run_elapsed(run)
        if elapsed is not None:
            bits.append(f"elapsed {fmt_duration(elapsed)}")
        bits.append(fmt_cost(run))
        return " · ".join(bits)

    def progress_html(self) -> str:
        text = esc(self.progress_text())
        if not self.total or self.step is None:
            return f'<div class="runctl-progress">{text}</div>'
        pct = 100.0 * min(max(self.step, 0), self.total) / self.total
        return (
            '<div class="runctl-progress" style="display:flex;align-items:center;gap:8px">'
            '<div style="width:240px;height:10px;background:#e0e0e0;border-radius:5px">'
            f'<div style="width:{pct:.1f}%;height:10px;background:#1e88e5;border-radius:5px"></div></div>'
            f"<span>{text}</span></div>"
        )

    def log_html(self) -> str:
        if not self.log_tail:
            return ""
        lines = []
        for stream, line in self.log_tail:
            if stream == "stderr":
                lines.append(
                    f'<span class="runctl-stderr" style="color:#c62828">! {esc(line)}</span>'
                )
            else:
                lines.append(f"  {esc(line)}")
        return (
            '<pre class="runctl-log tex2jax_ignore mathjax_ignore" style="max-height:22em;overflow:auto;font-size:0.85em;'
            'margin:4px 0;padding:4px;background:#f7f7f7">' + "\n".join(lines) + "</pre>"
        )

    def _with_log_tail(self, bundle: dict) -> dict:
        """The summary bundle with the panel's last lines of output below it (HTML,
        escaped; text/plain stays the summary: the output may hold anything)."""
        n, run_id = len(self.log_tail), self.run.get("id")
        title = f"last {n} line{'s' if n != 1 else ''} of output (%runctl logs {run_id} has all)"
        return {
            **bundle,
            "text/html": bundle["text/html"]
            + f'<div style="color:#666;font-size:0.85em;margin-top:6px">{esc(title)}</div>'
            + self.log_html(),
        }

    def traces(self) -> list[tuple[str, int, list, list]]:
        """(name, subplot, xs, ys) of each metric, smoothed when the toggle is on."""
        out = []
        for name, g in self._group_of.items():
            s = self.series[name]
            xs, ys = (s.smooth if self._smoothing else s.raw).points()
            out.append((name, g, xs, ys))
        return out

    def live_html(self) -> str:
        return (
            self.header_html()
            + self.progress_html()
            + (f'<div style="color:#c62828">{esc(self._message)}</div>' if self._message else "")
            + self.log_html()
        )

    def chart_html(self) -> str:
        svg = svg_chart([(name, xs, ys) for name, _, xs, ys in self.traces()])
        return (
            f'<div class="runctl-figure tex2jax_ignore mathjax_ignore">{svg}</div>' if svg else ""
        )

    def _maybe_redraw(self, force: bool = False) -> None:
        if self.finished or self.mode is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_interval:
            return
        self._last_draw = now
        self._dirty = False
        self.redraws += 1
        self._regroup()
        if self.mode == "widgets":
            self._draw_widgets()
        elif self.mode == "html":
            self._handle.update(
                {"text/html": self.live_html(), "text/plain": self.status_line()}, raw=True
            )
            if not self._terminal:  # a terminal prints every update: no chart there
                self._fig_handle.update(
                    {"text/html": self.chart_html(), "text/plain": ""}, raw=True
                )

    def redraw(self) -> None:
        """Draw now, ignoring the throttle (e.g. before a long wait)."""
        self._dirty = True
        self._maybe_redraw(force=True)

    # --------------------------------------------------------------- display
    def show(self) -> None:
        """Display the panel in the current output (two outputs with display ids)."""
        if self.mode is not None:
            return
        use_widgets = self._want_widgets
        if use_widgets is None:
            use_widgets = self.live and kernel_has_widgets()
        if not _in_ipython():
            self.mode = "text"
            print(self.progress_text(), flush=True)
            return
        from IPython.display import display

        panel_id, fig_id = f"runctl-{uuid.uuid4().hex}", f"runctl-fig-{uuid.uuid4().hex}"
        if use_widgets:
            self._build_widgets()
            self.mode = "widgets"
            note = f"runctl run {self.run.get('id')}: live panel (`%runctl attach {self.run.get('id')}` shows it again)"
            self._handle = display_widget(self.w["top"], note, display_id=panel_id)
            self._fig_handle = display_widget(self.w["bottom"], "", display_id=fig_id)
        else:
            self.mode = "html"
            if not kernel_has_widgets():  # terminal IPython prints each update as text
                self._terminal = True
                self.redraw_interval = max(self.redraw_interval, TERMINAL_INTERVAL)
            self._handle = display(
                {"text/html": self.live_html(), "text/plain": self.status_line()},
                raw=True,
                display_id=panel_id,
            )
            self._fig_handle = display(
                {"text/html": self.chart_html(), "text/plain": ""}, raw=True, display_id=fig_id
            )
        self.redraw()

    def _build_widgets(self) -> None:
        import ipywidgets as W
        import plotly.graph_objects as go

        def track(widget):
            self._widgets.append(widget)
            return widget

        w = self.w
        w["header"] = track(W.HTML(self.header_html()))
        w["progress"] = track(
            W.IntProgress(
                value=0, min=0, max=max(1, self.total or 1), layout=W.Layout(width="240px")
            )
        )
        w["progress_text"] = track(W.HTML(esc(self.progress_text())))
        w["stop"] = track(
            W.Button(description="Stop", icon="stop", tooltip="Stop the run gracefully")
        )
        w["stop"].on_click(self._on_stop_click)
        w["confirm_text"] = track(
            W.HTML("Kill the run now? Work since the last checkpoint is lost.")
        )
        w["confirm_yes"] = track(W.Button(description="Kill now", button_style="danger"))
        w["confirm_no"] = track(W.Button(description="Cancel"))
        w["confirm_yes"].on_click(lambda _b: self._force_stop())
        w["confirm_no"].on_click(lambda _b: self._hide_confirm())
        w["confirm"] = track(
            W.HBox(
                [w["confirm_text"], w["confirm_yes"], w["confirm_no"]],
                layout=W.Layout(display="none"),
            )
        )
        w["smooth"] = track(
            W.ToggleButton(value=False, description="Smooth", tooltip="EMA smoothing of the curves")
        )
        w["smooth"].observe(self._on_smooth, names="value")
        w["open_record"], w["record"] = map(track, self.record.build(W, self.run))
        w["open_record"].on_click(lambda _b: self.record.click(self.run))
        w["message"] = track(W.HTML(""))
        w["controls"] = track(
            W.HBox(
                [
                    w["progress"],
                    w["progress_text"],
                    w["stop"],
                    w["smooth"],
                    w["open_record"],
                    w["record"],
                ],
                layout=W.Layout(align_items="center"),
            )
        )
        w["top"] = track(W.VBox([w["header"], w["controls"], w["confirm"], w["message"]]))
        fig = go.FigureWidget(layout=subplot_layout(1))
        go.Scatter()  # plotly imports a trace type's validators on first use: now, not mid-run
        w["figure"] = track(fig)
        w["log"] = track(W.HTML(self.log_html()))
        w["bottom"] = track(W.VBox([fig, w["log"]]))
        for widget in list(self._widgets):  # layouts and styles are widgets (comms) too
            for attr in ("layout", "style"):
                sub = getattr(widget, attr, None)
                if isinstance(sub, W.Widget) and sub not in self._widgets:
                    self._widgets.append(sub)
        self._n_groups_drawn = 1
        self._update_stop_button()

    def _draw_widgets(self) -> None:
        w = self.w
        w["header"].value = self.header_html()
        if self.total:
            w["progress"].max = max(1, self.total)
            w["progress"].value = max(0, min(self.step or 0, self.total))
            w["progress"].layout.visibility = "visible"
        else:
            w["progress"].layout.visibility = "hidden"
        w["progress_text"].value = esc(self.progress_text())
        w["log"].value = self.log_html()
        w["message"].value = (
            f'<span style="color:#c62828">{esc(self._message)}</span>' if self._message else ""
        )
        self._update_stop_button()
        fig = w["figure"]
        if len(self._groups) != self._n_groups_drawn:
            fig.update_layout(subplot_layout(len(self._groups)))
            self._n_groups_drawn = len(self._groups)
        for name, g in self._group_of.items():
            if name not in self._trace_index:
                self._trace_index[name] = len(fig.data)
                fig.add_trace(scatter(name, [], [], g, len(self._trace_index) - 1))
        with fig.batch_update():
            for name, idx in self._trace_index.items():
                s = self.series[name]
                if self._drawn_counts.get(name) == s.count:
                    continue
                self._drawn_counts[name] = s.count
                xs, ys = (s.smooth if self._smoothing else s.raw).points()
                fig.data[idx].x = _array(xs)
                fig.data[idx].y = _array(ys)

    # -------------------------------------------------------------- controls
    def _update_stop_button(self) -> None:
        stop = self.w.get("stop")
        if stop is None:
            return
        ended = self.run.get("status") in FINAL
        stop.disabled = ended or self._stop_presses >= 3
        if self._stop_presses == 1:
            stop.description = "Force kill…"
            stop.button_style = "warning"
            stop.tooltip = "Press again to kill the run without waiting"

    def _on_stop_click(self, _button=None) -> None:
        if self._stop_presses == 0:
            self._stop_presses = 1
            self._call_stop(False)
        else:
            self._show_confirm()
        self._update_stop_button()

    def _show_confirm(self) -> None:
        if "confirm" in self.w:
            self.w["confirm"].layout.display = "flex"

    def _hide_confirm(self) -> None:
        if "confirm" in self.w:
            self.w["confirm"].layout.display = "none"

    def _force_stop(self) -> None:
        self._stop_presses = 3
        self._hide_confirm()
        self._call_stop(True)
        self._update_stop_button()

    def _call_stop(self, force: bool) -> None:
        try:
            self.on_stop(force)
        except Exception as exc:  # show it in the panel: a click has no traceback to print to
            self._message = f"Stop failed: {type(exc).__name__}: {exc}"
        else:
            self._message = "Killing the run…" if force else "Stopping the run (graceful)…"
        if "message" in self.w:
            self.w["message"].value = f'<span style="color:#c62828">{esc(self._message)}</span>'

    def _on_smooth(self, change) -> None:
        self._smoothing = bool(change["new"])
        self._drawn_counts.clear()
        self.redraw()

    # ---------------------------------------------------------------- finish
    def finish(self, run: dict, metrics: dict[str, list[tuple[int, float]]] | None = None) -> None:
        """Close every live widget and leave the static summary in their place."""
        if self.finished:
            return
        if run:
            self.run = dict(run)
        if not metrics:  # no store history at hand: the panel's own (bounded) series
            metrics = {n: list(zip(*s.raw.points())) for n, s in self.series.items() if s.count}
        outputs = static_outputs(self.run, metrics, self.record.finish(self.run))
        self.finished = True
        # replace the views first, then close the widgets behind them
        shown = self.mode in ("widgets", "html")
        if shown and self.log_tail:  # the lines watched live stay in the saved notebook
            outputs[0] = self._with_log_tail(outputs[0])
        leave_static(
            outputs,
            self._handle if shown else None,
            self._fig_handle,
            text_mode=self.mode == "text" or not _in_ipython(),
        )
        self.close()

    def close(self) -> None:
        """Close all widgets (their comms): no widget state stays in a saved notebook.

        A FigureWidget's state holds plotly.js itself (~5 MB of `_esm`). JupyterLab
        drops closed widgets when it saves, but nbclient keeps the last state it saw
        of every widget, closed or not; so the figure's module is swapped for an
        empty one (and its data cleared) before it is closed.
        """
        fig = self.w.get("figure")
        if fig is not None and self._widgets:
            try:
                with fig.batch_update():  # overwrite the data buffers nbclient keeps
                    for trace in fig.data:
                        trace.x = _array([], empty=True)
                        trace.y = _array([], empty=True)
                fig._esm = "export default {};"
            except Exception:  # closing matters more than shrinking
                pass
        for widget in reversed(self._widgets):
            try:
                widget.close()
            except Exception:  # a comm already gone is closed enough
                pass
        self._widgets.clear()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        if self.finished:
            return static_summary(
                self.run, {n: list(zip(*s.raw.points())) for n, s in self.series.items()}
            )
        return {
            "text/html": self.live_html() + self.chart_html(),
            "text/plain": self.progress_text(),
        }
