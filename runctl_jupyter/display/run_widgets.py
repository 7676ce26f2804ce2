"""The widgets of a live RunPanel: header, progress bar, Stop (then Force kill,
confirmed), Smooth, Open record, the plotly FigureWidget of the curves and the log
tail; drawn from the panel's feed, and closed so no widget state stays behind.

ipywidgets and plotly are imported only when the widgets are built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._format import FINAL, esc
from .figures import scatter, subplot_layout
from .run_live_html import live_header_html, log_html, progress_text

if TYPE_CHECKING:
    from .run_panel import RunPanel


def _array(values: list, empty: bool = False):
    """numpy arrays pass plotly's validation ~3x faster than lists (numpy is optional)."""
    try:
        import numpy as np
    except ImportError:
        return values
    return np.asarray(values, dtype=float) if values or empty else values


class RunWidgets:
    """The widget tree of one panel (`w`, by name); built once, then redrawn."""

    def __init__(self, panel: RunPanel):
        self.panel = panel
        self.w: dict = {}
        self._widgets: list = []  # everything to close, layouts and styles included
        self._drawn_counts: dict[str, int] = {}
        self._trace_index: dict[str, int] = {}
        self._n_groups_drawn = 1
        self.smoothing = False
        self._stop_presses = 0
        self.message = ""

    def build(self) -> None:
        import ipywidgets as W
        import plotly.graph_objects as go

        def track(widget):
            self._widgets.append(widget)
            return widget

        panel, w = self.panel, self.w
        w["header"] = track(W.HTML(live_header_html(panel)))
        w["progress"] = track(
            W.IntProgress(
                value=0, min=0, max=max(1, panel.total or 1), layout=W.Layout(width="240px")
            )
        )
        w["progress_text"] = track(W.HTML(esc(progress_text(panel))))
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
        w["open_record"], w["record"] = map(track, panel.record.build(W, panel.run))
        w["open_record"].on_click(lambda _b: panel.record.click(panel.run))
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
        w["log"] = track(W.HTML(log_html(panel)))
        w["bottom"] = track(W.VBox([fig, w["log"]]))
        for widget in list(self._widgets):  # layouts and styles are widgets (comms) too
            for attr in ("layout", "style"):
                sub = getattr(widget, attr, None)
                if isinstance(sub, W.Widget) and sub not in self._widgets:
                    self._widgets.append(sub)
        self._n_groups_drawn = 1
        self._update_stop_button()

    def draw(self) -> None:
        panel, w = self.panel, self.w
        w["header"].value = live_header_html(panel)
        if panel.step is None and panel.phase_fraction is not None:  # --prewarm's read
            w["progress"].max, w["progress"].value = 1000, int(1000 * panel.phase_fraction)
            w["progress"].layout.visibility = "visible"
        elif panel.total:
            w["progress"].max = max(1, panel.total)
            w["progress"].value = max(0, min(panel.step or 0, panel.total))
            w["progress"].layout.visibility = "visible"
        else:
            w["progress"].layout.visibility = "hidden"
        w["progress_text"].value = esc(progress_text(panel))
        w["log"].value = log_html(panel)
        w["message"].value = (
            f'<span style="color:#c62828">{esc(self.message)}</span>' if self.message else ""
        )
        self._update_stop_button()
        fig = w["figure"]
        if len(panel.groups) != self._n_groups_drawn:
            fig.update_layout(subplot_layout(len(panel.groups)))
            self._n_groups_drawn = len(panel.groups)
        for name, g in panel.group_of.items():
            if name not in self._trace_index:
                self._trace_index[name] = len(fig.data)
                fig.add_trace(scatter(name, [], [], g, len(self._trace_index) - 1))
        with fig.batch_update():
            for name, idx in self._trace_index.items():
                s = panel.series[name]
                if self._drawn_counts.get(name) == s.count:
                    continue
                self._drawn_counts[name] = s.count
                xs, ys = (s.smooth if self.smoothing else s.raw).points()
                fig.data[idx].x = _array(xs)
                fig.data[idx].y = _array(ys)

    # -------------------------------------------------------------- controls
    def _update_stop_button(self) -> None:
        stop = self.w.get("stop")
        if stop is None:
            return
        ended = self.panel.run.get("status") in FINAL
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
            self.panel.on_stop(force)
        except Exception as exc:  # show it in the panel: a click has no traceback to print to
            self.message = f"Stop failed: {type(exc).__name__}: {exc}"
        else:
            self.message = "Killing the run…" if force else "Stopping the run (graceful)…"
        if "message" in self.w:
            self.w["message"].value = f'<span style="color:#c62828">{esc(self.message)}</span>'

    def _on_smooth(self, change) -> None:
        self.smoothing = bool(change["new"])
        self._drawn_counts.clear()
        self.panel.redraw()

    # ----------------------------------------------------------------- close
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
