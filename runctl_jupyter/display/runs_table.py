"""`%runctl runs`: a table of runs, with Attach / Stop for the runs still going.

The table itself is a static HTML output (readable in a saved notebook); only
the action buttons of active runs are widgets. `runs_text()` is the shell form.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._format import (
    FINAL,
    as_dict,
    badge,
    esc,
    fmt_cost,
    fmt_duration,
    fmt_num,
    fmt_time,
    run_elapsed,
)
from .summary import CELL, CELL_L, TABLE_STYLE

if TYPE_CHECKING:
    from IPython.display import DisplayHandle
    from ipywidgets import VBox

__all__ = ["RunsTable", "runs_text", "runs_html"]

MAX_METRICS = 3
# {run id: {metric: {"last": ..., ...}}}, as the store's `summaries` gives them
Summaries = dict[str, dict[str, dict[str, Any]]]


def _metrics(
    row: dict[str, Any], summaries: Summaries | None = None
) -> list[tuple[str, float | None]]:
    if summaries and row.get("id") in summaries:
        items = [(k, v.get("last")) for k, v in summaries[row["id"]].items()]
    else:
        items = list(as_dict(row.get("final_metrics")).items())
    return items[:MAX_METRICS]


def _metrics_text(row: dict[str, Any], summaries: Summaries | None = None) -> str:
    return " ".join(f"{k}={fmt_num(v)}" for k, v in _metrics(row, summaries))


def _active(row: dict[str, Any]) -> bool:
    return row.get("status") not in FINAL and row.get("status") != "lost"


def runs_text(rows: list[dict[str, Any]], summaries: Summaries | None = None) -> str:
    """A plain text table for the shell (`runctl runs`)."""
    header = ["RUN", "NAME", "STATUS", "EXPERIMENT", "METRICS", "STARTED", "DURATION", "COST"]
    table = [header]
    for row in rows:
        status = row.get("status") or ""
        if row.get("reason") and status not in ("running", "succeeded"):
            status += f" ({row['reason']})"
        table.append(
            [
                str(row.get("id") or ""),
                str(row.get("name") or ""),
                status,
                str(row.get("experiment") or ""),
                _metrics_text(row, summaries),
                fmt_time(row.get("started") or row.get("created")),
                fmt_duration(run_elapsed(row)),
                fmt_cost(row),
            ]
        )
    if len(table) == 1:
        return "no runs"
    # one line a run whatever a name holds: newlines and tabs become spaces
    table = [[" ".join(cell.split()) if cell else "" for cell in line] for line in table]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in table
    )


def runs_html(rows: list[dict[str, Any]], summaries: Summaries | None = None) -> str:
    """The same table as HTML, every run-supplied string escaped."""
    if not rows:
        return "<div>no runs</div>"
    head = ["run", "status", "experiment", "metrics", "started", "duration", "cost"]
    body = []
    for row in rows:
        reason = (
            f' <span style="color:#666">({esc(row["reason"])})</span>'
            if row.get("reason") and row.get("status") not in ("running", "succeeded")
            else ""
        )
        cells = [
            f'<td style="{CELL_L}"><b>{esc(row.get("name") or "")}</b> <code>{esc(row.get("id"))}</code></td>',
            f'<td style="{CELL_L}">{badge(row.get("status"))}{reason}</td>',
            f'<td style="{CELL_L}">{esc(row.get("experiment") or "")}</td>',
            f'<td style="{CELL_L}">{esc(_metrics_text(row, summaries))}</td>',
            f'<td style="{CELL_L}">{esc(fmt_time(row.get("started") or row.get("created")))}</td>',
            f'<td style="{CELL}">{esc(fmt_duration(run_elapsed(row)))}</td>',
            f'<td style="{CELL}">{esc(fmt_cost(row))}</td>',
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    header = "".join(f'<th style="{CELL_L}">{esc(h)}</th>' for h in head)
    return (
        f'<div class="runctl-runs tex2jax_ignore mathjax_ignore"><table style="{TABLE_STYLE}"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


class RunsTable:
    """The runs table; `on_attach(run_id)` and `on_stop(run_id)` act on a run."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        on_attach: Callable[[str], object] | None = None,
        on_stop: Callable[[str], object] | None = None,
        summaries: Summaries | None = None,
        *,
        widgets: bool | None = None,
    ) -> None:
        self.rows = list(rows)
        self.on_attach = on_attach
        self.on_stop = on_stop
        self.summaries = summaries
        self._want_widgets = widgets
        self._handle: DisplayHandle | None = None
        self._actions: VBox | None = None
        self.buttons: dict[str, dict[str, Any]] = {}
        self.message = ""

    def __str__(self) -> str:
        return runs_text(self.rows, self.summaries)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        return {"text/html": runs_html(self.rows, self.summaries), "text/plain": str(self)}

    def _ipython_display_(self) -> None:
        # returned from `%runctl runs`: the table and, for active runs, the buttons
        self.show()

    def show(self) -> None:
        """The static table, then Attach/Stop buttons for active runs (in a kernel)."""
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if shell is None:
            print(str(self))
            return
        self._handle = display(
            self._repr_mimebundle_(), raw=True, display_id=f"runctl-runs-{uuid.uuid4().hex}"
        )
        use_widgets = self._want_widgets
        if use_widgets is None:
            use_widgets = getattr(shell, "kernel", None) is not None
        active = [r for r in self.rows if _active(r)]
        if use_widgets and active and (self.on_attach or self.on_stop):
            from ._widgets import display_widget

            display_widget(self._build_actions(active), "")

    def _build_actions(self, active: list[dict[str, Any]]) -> VBox:
        import ipywidgets as W

        lines = []
        for row in active:
            rid = row["id"]
            label = W.HTML(
                f"<b>{esc(row.get('name') or '')}</b> <code>{esc(rid)}</code> {badge(row.get('status'))}"
            )
            buttons = {}
            if self.on_attach:
                buttons["attach"] = W.Button(
                    description="Attach", icon="eye", tooltip=f"follow run {rid}"
                )
                buttons["attach"].on_click(
                    lambda _b, rid=rid: self._act(self.on_attach, rid, "attach")
                )
            if self.on_stop:
                buttons["stop"] = W.Button(
                    description="Stop", icon="stop", tooltip=f"stop run {rid} (graceful)"
                )
                buttons["stop"].on_click(lambda _b, rid=rid: self._act(self.on_stop, rid, "stop"))
            self.buttons[rid] = buttons
            lines.append(W.HBox([label, *buttons.values()]))
        self._message = W.HTML("")
        self._actions = W.VBox([*lines, self._message])
        return self._actions

    def _act(self, action: Callable[[str], object], run_id: str, what: str) -> None:
        try:
            action(run_id)
        except Exception as exc:  # shown next to the buttons: a click has no traceback
            self.message = f"{what} {run_id} failed: {type(exc).__name__}: {exc}"
        else:
            self.message = f"{what}: {run_id}"
            if what == "stop" and "stop" in self.buttons.get(run_id, {}):
                self.buttons[run_id]["stop"].disabled = True
        if self._actions is not None:
            self._message.value = esc(self.message)

    def update(self, rows: list[dict[str, Any]], summaries: Summaries | None = None) -> None:
        """Redraw the table with fresh rows (e.g. after a Stop)."""
        self.rows = list(rows)
        if summaries is not None:
            self.summaries = summaries
        if self._handle is not None:
            self._handle.update(self._repr_mimebundle_(), raw=True)

    def close(self) -> None:
        if self._actions is not None:
            from ._widgets import close_all

            close_all([self._actions])
            self._actions = None
