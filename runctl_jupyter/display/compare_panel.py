"""ComparePanel: runs side by side.

Everything it shows is a static output (HTML table, plotly figure bundles with
an SVG fallback), each under its own display id; the only widgets are a few small
controls (metric, sort, all params) whose callbacks replace those outputs. So a
saved notebook keeps the comparison as it was last shown, with or without a
kernel, and no plotly.js widget state. What is compared and how it is sorted is the
`Comparison` (comparison.py); compare_tables.py and compare_figures.py draw it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from . import compare_figures, compare_tables
from ._widgets import close_all, display_widget
from .comparison import Comparison
from .figures import PLOTLY_MIME

if TYPE_CHECKING:
    from IPython.display import DisplayHandle
    from ipywidgets import HBox, ToggleButton, Widget

    from ..store import Store

__all__ = ["ComparePanel", "compare"]


class ComparePanel(Comparison):
    """Compare runs read from a `Store`: `ComparePanel(store, ids).show()`."""

    def __init__(
        self,
        store: Store,
        run_ids: list[str],
        metric: str | None = None,
        *,
        objective: str | None = None,
        widgets: bool | None = None,
    ) -> None:
        super().__init__(store, run_ids, metric, objective=objective)
        self._want_widgets = widgets
        self._handles: list[DisplayHandle] = []
        self._widgets: list[Widget] = []
        self._syncing = False
        self.w: dict[str, Widget] = {}

    # -------------------------------------------------------------- outputs
    def table_html(self) -> str:
        return compare_tables.table_html(self)

    def table_text(self) -> str:
        """The table for a terminal: the same columns as the HTML one, aligned."""
        return compare_tables.table_text(self)

    def curves_bundle(self) -> dict[str, Any] | None:
        """Overlaid curves of the chosen metric, one trace per run."""
        return compare_figures.curves_bundle(self)

    def scatter_bundle(self) -> dict[str, Any] | None:
        """Cost (or compute time) against the best objective, Pareto front marked."""
        return compare_figures.scatter_bundle(self)

    def parcoords_bundle(self) -> dict[str, Any] | None:
        """Parallel coordinates, params -> best objective, for 3 runs or more."""
        return compare_figures.parcoords_bundle(self)

    def outputs(self) -> list[dict[str, Any]]:
        """The static outputs, in order: table, curves, cost vs objective, parallel coordinates."""
        table = {"text/html": self.table_html(), "text/plain": self.table_text()}
        figures = [self.curves_bundle(), self.scatter_bundle(), self.parcoords_bundle()]
        return [table] + [f if f is not None else {"text/plain": ""} for f in figures]

    # --------------------------------------------------------------- display
    def show(self) -> None:
        """Controls (in a kernel) and the static outputs, each under a display id."""
        from IPython import get_ipython
        from IPython.display import display

        outputs = self.outputs()
        if get_ipython() is None:
            print(outputs[0]["text/plain"])
            return
        use_widgets = self._want_widgets
        if use_widgets is None:
            use_widgets = getattr(get_ipython(), "kernel", None) is not None
        if use_widgets:
            display_widget(self._build_controls(), "")  # the controls mean nothing without a kernel
        self._handles = [
            display(b, raw=True, display_id=f"runctl-cmp-{uuid.uuid4().hex}") for b in outputs
        ]

    def refresh(self) -> None:
        """Redraw the outputs after a control changed."""
        for handle, bundle in zip(self._handles, self.outputs()):
            if PLOTLY_MIME in bundle:
                # JupyterLab reuses a renderer whose mime type stays the same, and
                # plotly's renderer ignores new data once drawn: switch the mime type
                # for a moment so a fresh renderer draws the new figure
                handle.update({"text/plain": ""}, raw=True)
            handle.update(bundle, raw=True)

    def _build_controls(self) -> HBox:
        import ipywidgets as W

        params = self.param_columns(self.table()) if self.rows else []
        columns = (
            ["run", "name", "status", "duration", "cost"]
            + [c for m in self.metrics for c in (f"{m}_best", f"{m}_final")]
            + params
        )
        w = self.w
        w["metric"] = W.Dropdown(
            options=self.metrics or [""], value=self.metric or "", description="metric"
        )
        w["sort"] = W.Dropdown(
            options=columns,
            value=self.sort_by if self.sort_by in columns else "run",
            description="sort by",
        )
        w["descending"] = W.ToggleButton(value=self.descending, tooltip="reverse the order")
        self._label_order(w["descending"])
        w["all_params"] = W.Checkbox(value=False, description="all params", indent=False)
        w["box"] = W.HBox([w["metric"], w["sort"], w["descending"], w["all_params"]])
        w["metric"].observe(self._on_metric, names="value")
        w["sort"].observe(self._on_sort, names="value")
        w["descending"].observe(self._on_descending, names="value")
        w["all_params"].observe(self._on_all_params, names="value")
        self._widgets = list(w.values())
        return w["box"]

    def _on_metric(self, change: dict[str, Any]) -> None:
        self.metric = change["new"] or None
        if self.metric:
            self._syncing = True
            try:
                self.sort_by = self.w["sort"].value = f"{self.metric}_best"
                self.descending = self.w["descending"].value = not self.minimizes(self.metric)
            finally:
                self._syncing = False
        self.refresh()

    def _on_sort(self, change: dict[str, Any]) -> None:
        self.sort_by = change["new"]
        if not self._syncing:
            self.refresh()

    @staticmethod
    def _label_order(button: ToggleButton) -> None:
        """The toggle says the order shown (not the one a click gives)."""
        down = bool(button.value)
        button.description = "descending" if down else "ascending"
        button.icon = "sort-amount-desc" if down else "sort-amount-asc"

    def _on_descending(self, change: dict[str, Any]) -> None:
        self.descending = bool(change["new"])
        self._label_order(self.w["descending"])
        if not self._syncing:
            self.refresh()

    def _on_all_params(self, change: dict[str, Any]) -> None:
        self.all_params = bool(change["new"])
        self.refresh()

    def close(self) -> None:
        """Close the controls; the static outputs stay as they are."""
        close_all(self._widgets)
        self._widgets = []

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": self.table_html(), "text/plain": self.table_text()}

    def _ipython_display_(self) -> None:
        # returned from `%runctl compare`: all outputs, not just the table
        self.show()

    def __str__(self) -> str:
        return self.table_text()


def compare(
    store: Store,
    refs: tuple[str, ...] | list[str] = (),
    experiment: str | None = None,
    sweep: str | None = None,
    metric: str | None = None,
    objective: str | None = None,
    limit: int | None = 500,
) -> ComparePanel:
    """The panel for `%runctl compare RUN RUN ... | --experiment EXP | --sweep SWEEP`.

    Refs are run ids, id prefixes or names (`store.resolve`); an experiment or a
    sweep id selects all its runs (newest first, at most `limit`).
    """
    from ..errors import RunctlError

    ids: list[str] = [store.resolve(ref) for ref in refs]
    if experiment is not None or sweep is not None:
        rows = store.list_runs(experiment=experiment, sweep_id=sweep, limit=limit)
        ids += [row["id"] for row in reversed(rows)]  # oldest first, like a sweep's trials
    ids = list(dict.fromkeys(ids))
    if not ids:
        where = (
            f"experiment {experiment!r}"
            if experiment
            else f"sweep {sweep!r}"
            if sweep
            else "the arguments"
        )
        raise RunctlError(
            f"no runs to compare in {where}: give run ids or names "
            "(%runctl compare RUN RUN ...), --experiment NAME or --sweep SWEEP; `%runctl runs` lists runs"
        )
    store.refresh()  # new events of runs still going
    return ComparePanel(store, ids, metric=metric, objective=objective)
