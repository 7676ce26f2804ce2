"""SweepPanel: the live view of a sweep in a cell's output.

Widgets (a kernel with ipywidgets): header with status and done/running/queued/
failed counts, a progress bar, Stop sweep, a dropdown + Stop trial, the trial table
(running trials first, then the best finished ones), and one plotly FigureWidget
with parallel coordinates (params -> objective) above the best-so-far curve.
`finish()` closes every widget (the FigureWidget's plotly.js module swapped for an
empty one first, as RunPanel does, so nbclient's saved widget state stays small)
and leaves the static summary (sweep_summary.py) in their place.

Drawing is throttled (`redraw_interval`) and bounded: the table shows at most
`max_rows` trials and the figure every finished trial, so 500 trials stay quick.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._format import esc
from ._widgets import display_widget, leave_static
from .sweep_figure import figure_bundle, figure_data, figure_layout
from .sweep_summary import static_outputs, static_summary, summary_text
from .sweep_table import header_html, table_html

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

__all__ = ["SweepPanel"]


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
    ) -> None:
        self.state = state
        self.trials: list[dict[str, Any]] = []
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
        self._figure_key: tuple[tuple[int, Any], ...] = ()
        self._handle: DisplayHandle | None = None
        self._fig_handle: DisplayHandle | None = None
        self.w: dict[str, Any] = {}

    # ------------------------------------------------------------ data
    def update(self, state: Any, trials: list[dict[str, Any]]) -> None:
        self.state, self.trials = state, trials
        self._dirty = True
        self._maybe_redraw()

    def running(self) -> list[dict[str, Any]]:
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
            sweep_id = getattr(self.state, "id", "")
            note = f"runctl sweep {sweep_id}: live panel (`%runctl compare --sweep {sweep_id}` shows its trials)"
            self._handle = display_widget(self.w["top"], note, display_id=panel_id)
            # the figure takes its place once a trial has an objective: until then
            # (and in a sweep without --objective) it would be 520 px of empty axes
            self._fig_handle = display({"text/plain": ""}, raw=True, display_id=fig_id)
        else:
            self.mode = "html"
            self._handle = display(self._live_bundle(), raw=True, display_id=panel_id)
            self._fig_handle = display({"text/plain": ""}, raw=True, display_id=fig_id)
        self.redraw()

    def _live_bundle(self) -> dict[str, str]:
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
        elif self.mode == "html" and self._handle is not None:
            self._handle.update(self._live_bundle(), raw=True)
            fig = figure_bundle(self.state, self.trials)
            if fig is not None and self._fig_handle is not None:
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
        if parcoords is None or markers is None or line is None:
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
            display_widget(fig, "", handle=self._fig_handle)

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
    def finish(self, state: Any, trials: list[dict[str, Any]]) -> None:
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

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return static_summary(self.state, self.trials) if self.finished else self._live_bundle()
