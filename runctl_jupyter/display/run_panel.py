"""RunPanel: the live view of one run in a cell's output.

Widget mode (a kernel with ipywidgets): header, progress bar, plotly FigureWidget
curves, Smooth, Stop / Open record and the log tail (run_widgets.py). HTML mode
(terminal IPython, or `live=False`): the same facts as HTML with an SVG chart
(run_live_html.py), updated through display handles. Either way `finish()`
closes every widget and leaves the static summary (`summary.static_outputs`) in
their place.

`update()` is O(new events) (run_feed.py); the drawing happens at most once per
`redraw_interval` seconds.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import run_live_html
from ._widgets import display_widget, leave_static
from .record_copy import RecordOpener
from .run_feed import RunFeed
from .run_widgets import RunWidgets
from .summary import static_outputs, static_summary

if TYPE_CHECKING:
    from IPython.display import DisplayHandle

__all__ = ["RunPanel"]

TERMINAL_INTERVAL = 5.0  # seconds between progress lines in terminal IPython


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


class RunPanel(RunFeed):
    """The live panel of one run; feed it with `update()`, end it with `finish()`."""

    def __init__(
        self,
        run: dict[str, Any],
        on_stop: Callable[[bool], None],
        record_path: str | None = None,
        log_tail_lines: int = 30,
        live: bool = True,
        *,
        widgets: bool | None = None,
        max_points: int = 2000,
        redraw_interval: float = 0.25,
    ) -> None:
        super().__init__(run, max_points=max_points, log_tail_lines=log_tail_lines)
        self.on_stop = on_stop
        self.record_path = record_path
        self.record = RecordOpener(record_path)  # the Open record button (widget mode)
        self.live = live
        self.redraw_interval = redraw_interval
        self._want_widgets = widgets
        self._dirty = True
        self._last_draw = -1e9
        self.redraws = 0
        self.mode: str | None = None  # "widgets" | "html" | "text" once shown
        self.finished = False
        self._terminal = False
        self._handle: DisplayHandle | None = None
        self._fig_handle: DisplayHandle | None = None
        self.ui = RunWidgets(self)

    @property
    def w(self) -> dict[str, Any]:
        """The widgets by name (empty until shown in widget mode)."""
        return self.ui.w

    def update(self, run: dict[str, Any], events: list[dict[str, Any]]) -> None:
        """Take a refreshed run row and the new events; redraw if the throttle allows."""
        super().update(run, events)
        self._dirty = True
        self._maybe_redraw()

    # ------------------------------------------------------------- rendering
    def header_html(self) -> str:
        return run_live_html.live_header_html(self)

    def progress_text(self) -> str:
        return run_live_html.progress_text(self)

    def status_line(self) -> str:
        """One line of plain text: id, status, progress, elapsed, cost."""
        return run_live_html.status_line(self)

    def progress_html(self) -> str:
        return run_live_html.progress_html(self)

    def log_html(self) -> str:
        return run_live_html.log_html(self)

    def live_html(self) -> str:
        return run_live_html.live_html(self, self.ui.message)

    def chart_html(self) -> str:
        return run_live_html.chart_html(self, self.ui.smoothing)

    def _maybe_redraw(self, force: bool = False) -> None:
        if self.finished or self.mode is None or not self._dirty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_interval:
            return
        self._last_draw = now
        self._dirty = False
        self.redraws += 1
        self.regroup()
        if self.mode == "widgets":
            self.ui.draw()
        elif self.mode == "html" and self._handle is not None and self._fig_handle is not None:
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
            self.ui.build()
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

    # ---------------------------------------------------------------- finish
    def finish(
        self, run: dict[str, Any], metrics: dict[str, list[tuple[int, float]]] | None = None
    ) -> None:
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
            outputs[0] = run_live_html.with_log_tail(outputs[0], self)
        leave_static(
            outputs,
            self._handle if shown else None,
            self._fig_handle,
            text_mode=self.mode == "text" or not _in_ipython(),
        )
        self.close()

    def close(self) -> None:
        """Close all widgets (their comms): no widget state stays in a saved notebook."""
        self.ui.close()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self.finished:
            return static_summary(
                self.run, {n: list(zip(*s.raw.points())) for n, s in self.series.items()}
            )
        return {
            "text/html": self.live_html() + self.chart_html(),
            "text/plain": self.progress_text(),
        }
