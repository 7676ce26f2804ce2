"""What the API hands back: a Run handle, tables and texts that show themselves
in a notebook (HTML, every run-supplied string escaped) and in a terminal (text)."""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from ..cost.prices import HOURS_PER_MONTH
from ..display.text import (
    format_cost,
    format_duration,
    format_metric,
    format_time,
    table_html,
    table_text,
)

if TYPE_CHECKING:
    from ..aws.commands import ResourceList
    from .control import RunControl


def one_line(row: dict[str, Any]) -> str:
    if row["status"] not in ("succeeded", "failed", "stopped", "lost"):
        return (
            f"run {row['id']} '{row.get('name')}' is {row['status']}: "
            f"`%runctl attach {row['id']}` follows it, `%runctl stop {row['id']}` stops it"
        )
    metrics = " ".join(
        f"{k}={format_metric(v)}" for k, v in (row.get("final_metrics") or {}).items()
    )
    from ..cost.spent import cost_phrase

    # the success line: "Training completed in 42m 10s — cost $0.31 (spot, saved $0.74 ...)"
    if row["status"] == "succeeded":
        parts = [
            f"Training completed in {format_duration(row.get('duration'))} — {cost_phrase(row)}",
            f"run {row['id']} '{row.get('name')}'",
        ]
        return " · ".join(parts + ([metrics] if metrics else []))
    parts = [f"run {row['id']} '{row.get('name')}' {row['status']}"]
    if row.get("reason"):
        parts[0] += f" ({row['reason']})"
    parts[0] += f" in {format_duration(row.get('duration'))}"
    if metrics:
        parts.append(metrics)
    parts.append(cost_phrase(row))
    return " · ".join(parts)


class Run:
    """A handle on one run; always reads the store, so it is never stale."""

    def __init__(self, session: RunControl, run_id: str) -> None:
        self.session = session
        self.id = run_id
        self.interrupted = False  # a dev session ended by Ctrl-C: the shell exits 130

    @property
    def row(self) -> dict[str, Any]:
        return self.session.store.get(self.id)

    @property
    def status(self) -> str:
        return cast(str, self.row["status"])

    @property
    def name(self) -> str:
        return cast(str, self.row["name"])

    @property
    def params(self) -> dict[str, Any]:
        return cast("dict[str, Any]", self.row["params"])

    @property
    def metrics(self) -> dict[str, float]:
        """The final value of each metric."""
        return cast("dict[str, float]", self.row["final_metrics"])

    def history(self, keys: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
        """Every logged point: {metric: [(step, value), ...]}."""
        return self.session.store.metrics(self.id, keys)

    def checkpoints(self) -> list[dict[str, Any]]:
        return self.session.store.checkpoints(self.id)

    def refresh(self) -> Run:
        self.session.store.refresh(self.id)
        return self

    def wait(self) -> Run:
        return self.session.wait(self)

    def stop(self, force: bool = False) -> Run:
        return self.session.stop(self.id, force=force)

    def logs(self) -> str:
        return str(self.session.logs(self.id))

    @property
    def record_path(self) -> str:
        return str(self.session.store.run_dir(self.id) / "record.ipynb")

    def __repr__(self) -> str:
        return one_line(self.row)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class LogText(str):
    """A run's output; shows as plain text, not as a quoted string."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class RunTable:
    """`runctl runs`: newest first."""

    HEADER = ["id", "name", "experiment", "status", "started", "duration", "metrics", "cost"]

    def __init__(
        self,
        rows: list[dict[str, Any]],
        summaries: dict[str, dict[str, dict[str, Any]]] | None = None,
        session: RunControl | None = None,
        filters: dict[str, str | None] | None = None,
    ) -> None:
        self.rows = rows
        self.summaries = summaries or {}
        self.session = session
        self.filters = {k: v for k, v in (filters or {}).items() if v is not None}

    def _ipython_display_(self) -> None:
        """In a kernel: the table with Attach/Stop for runs still going (display/);
        with teammates' runs (`--owner`) the static table, with their owners."""
        if not self.rows or "owner" in self.filters:  # a line that says why; whose runs
            from IPython.display import display

            display({"text/plain": str(self), "text/html": self._repr_html_()}, raw=True)
            return
        try:
            import ipywidgets

            from ..display._widgets import display_widget
            from ..display.runs_table import RunsTable
            from .liveview import follow_in_background
        except ImportError:
            print(str(self))
            return
        session = self.session
        followed = ipywidgets.Output()
        table = RunsTable(
            self.rows,
            on_attach=(lambda rid: follow_in_background(session, rid, followed))
            if session
            else None,
            on_stop=(lambda rid: session.backend_stop(rid)) if session else None,
            summaries=self.summaries,
        )
        table.show()
        if session is not None and any(
            r["status"] not in ("succeeded", "failed", "stopped", "lost") for r in self.rows
        ):
            display_widget(followed, "")  # no 'Output()' text in a saved notebook

    def _header(self) -> list[str]:  # `runs --owner`: whose run each is, after its name
        return self.HEADER[:2] + ["owner"] * ("owner" in self.filters) + self.HEADER[2:]

    def _cells(self) -> list[list[str]]:
        out = []
        for r in self.rows:
            metrics = " ".join(
                f"{k}={format_metric(v)}"
                for k, v in list((r.get("final_metrics") or {}).items())[:3]
            )
            status = r["status"] + (
                f" ({r['reason']})" if r.get("reason") and r["status"] != "succeeded" else ""
            )
            out.append(
                [
                    r["id"],
                    str(r.get("name") or ""),
                    str(r.get("experiment") or ""),
                    status,
                    format_time(r.get("started") or r.get("created")),
                    format_duration(r.get("duration")),
                    metrics,
                    format_cost(r),
                ]
            )
            if "owner" in self.filters:
                out[-1].insert(2, str(r.get("owner") or ""))
        return out

    def __len__(self) -> int:
        return len(self.rows)

    def __str__(self) -> str:
        if not self.rows and self.filters:
            shown = ", ".join(f"{k} {v}" for k, v in self.filters.items())
            return f"no runs with {shown}: `%runctl runs` (or `runctl runs`) lists them all"
        if not self.rows:
            return "no runs yet: start one with %%runctl train (or `runctl train SCRIPT.py`)"
        return table_text(self._header(), self._cells())

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(str(self))}</p>"
        return table_html(self._header(), self._cells())


def _spec(row: dict[str, Any]) -> dict[str, Any]:
    try:
        spec: dict[str, Any] = json.loads((Path(row["run_dir"]) / "spec.json").read_text())
        return spec
    except (KeyError, TypeError, OSError, ValueError):
        return {}


def _processes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """`processes  4 (2 nodes x 2 per node)` for a distributed run (from its spec.json)."""
    from ..distributed import describe

    text = describe(spec.get("distributed"))
    return [("processes", text)] if text else []


class RunDetails:
    """`runctl show RUN`: everything about one run."""

    def __init__(
        self,
        row: dict[str, Any],
        metrics: dict[str, list[tuple[int, float]]],
        checkpoints: list[dict[str, Any]],
    ) -> None:
        self.spec = _spec(row)
        # a fired run says why (schedules/): the notebook's summary reads it from the row
        self.row = {**row, "trigger": self.spec.get("trigger")}
        self.metrics = metrics
        self.checkpoints = checkpoints

    def _fields(self) -> list[tuple[str, str]]:
        from ..record.facts import trigger_text

        r = self.row
        fields = [
            ("run", f"{r['id']} ({r.get('name')})"),
            ("status", r["status"] + (f" ({r['reason']})" if r.get("reason") else "")),
            ("experiment", str(r.get("experiment"))),
            ("project", str(r.get("project"))),
            ("backend", str(r.get("backend"))),
            *_processes(self.spec),
            ("started", format_time(r.get("started") or r.get("created"))),
            ("duration", format_duration(r.get("duration"))),
            ("attempts", str(r.get("attempt") or 1)),
            ("cost", format_cost(r)),
            ("params", " ".join(f"{k}={v!r}" for k, v in (r.get("params") or {}).items()) or "-"),
        ]
        for name, points in self.metrics.items():
            values = [v for _, v in points]
            if values:
                fields.append(
                    (
                        f"metric {name}",
                        f"last={format_metric(values[-1])} min={format_metric(min(values))} "
                        f"max={format_metric(max(values))} points={len(values)}",
                    )
                )
        if self.checkpoints:
            last = self.checkpoints[-1]
            fields.append(
                (
                    "checkpoints",
                    f"{len(self.checkpoints)}, latest step {last['step']}: {last['path']}",
                )
            )
        error = r.get("error")
        if error:
            fields.append(("error", f"{error.get('type')}: {error.get('message')}"))
            if error.get("output"):  # a rank killed by a signal: its last lines, its stacks
                fields.append(("last output", "\n" + str(error["output"]).rstrip("\n")))
        if trigger_text(r.get("trigger")):
            fields.append(("fired by", trigger_text(r.get("trigger"))))
        fields.append(("folder", str(r.get("run_dir"))))
        return fields

    def __str__(self) -> str:
        fields = self._fields()
        width = max(len(k) for k, _ in fields)
        return "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _ipython_display_(self) -> None:
        """In a notebook: the run's summary table, then its figure (two outputs, so
        plotly's renderer never hides the table)."""
        try:
            from ..display.summary import display_static
        except ImportError:  # no plotly/ipywidgets: the text form
            print(str(self))
            return
        display_static(
            self.row,
            self.metrics,
            self.row.get("run_dir") and f"{self.row['run_dir']}/record.ipynb",
        )


PARTIAL_EXIT = 3  # the shell's exit code for a listing that could not read everything


class ReportText(LogText):
    """A command's text report; `exit_code` is PARTIAL_EXIT when its listing was partial."""

    exit_code = 0

    def __new__(cls, text: str, partial: bool = False) -> ReportText:
        report = super().__new__(cls, text)
        report.exit_code = PARTIAL_EXIT if partial else 0
        return report


class ResourceTable:
    """`runctl resources`: runctl-managed cloud resources (text in a shell, a table in a
    notebook) with $/h, $/month and dollars so far; under it, what could not be read."""

    def __init__(
        self, listing: ResourceList, costs: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.listing = listing
        self.failures = list(getattr(listing, "failures", []))
        costs = costs or {}
        self.rows = []
        self._rates: list[tuple[str, float]] = []  # (kind, $/h) unrounded, for the totals
        for row in listing.rows():
            cost = costs.get(row["id"]) or {}
            rate, spent = cost.get("rate"), cost.get("spent")
            self._rates.append((row["kind"], rate or 0.0))
            row["usd_per_h"] = None if rate is None else round(rate, 4)
            row["usd_per_month"] = None if rate is None else round(rate * HOURS_PER_MONTH, 2)
            row["usd_so_far"] = None if spent is None else round(spent, 2)
            row["priced"] = cost.get("basis") or None
            self.rows.append(row)

    @property
    def exit_code(self) -> int:
        return PARTIAL_EXIT if self.failures else 0

    def warnings(self) -> list[str]:
        """One line per describe call that failed, then what that means."""
        if not self.failures:
            return []
        from ..aws.inventory import partial_note

        return [f"could not read {f.describe()}" for f in self.failures] + [
            partial_note(self.failures)
        ]

    def burn(self) -> str:
        compute = sum(rate for kind, rate in self._rates if kind == "instance")
        storage = sum(rate for kind, rate in self._rates if kind != "instance")
        return (
            f"burn rate ${compute + storage:.3f}/h (instances ${compute:.3f}/h, "
            f"storage ${storage * HOURS_PER_MONTH:.2f}/month)"
        )

    def __str__(self) -> str:
        if not self.rows:
            return "\n".join(["no runctl-managed resources", *self.warnings()])
        header = list(self.rows[0])
        cells = [["-" if r[k] is None else str(r[k]) for k in header] for r in self.rows]
        return "\n".join([table_text(header, cells), self.burn(), *self.warnings()])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        warn = "".join(
            f'<div style="color:#b45309;font-weight:600">&#9888; {html.escape(line)}</div>'
            for line in self.warnings()
        )
        if not self.rows:
            return warn + "<pre>no runctl-managed resources</pre>"
        header = list(self.rows[0])
        cells = [["" if r.get(k) is None else str(r.get(k)) for k in header] for r in self.rows]
        return warn + table_html(header, cells) + f"<div>{html.escape(self.burn())}</div>"


def elapsed(row: dict[str, Any]) -> float:
    start = row.get("started") or row.get("created") or time.time()
    return (row.get("ended") or time.time()) - start


# format_duration: the API's own, from display/text.py
__all__ = ["PARTIAL_EXIT", "LogText", "ReportText", "ResourceTable", "Run", "RunDetails",
           "RunTable", "elapsed", "format_duration", "one_line"]  # fmt: skip
