"""What sweeps hand back as text and tables: one-line summaries, the trial rows
(the plan folded with the store's live facts), `runctl sweeps` and `runctl show SWEEP`."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from ..display.text import (
    best_text,
    counts_text,
    fmt_params,
    format_duration,
    format_metric,
    table_html,
    table_text,
)
from .record import RUN_ENDED, SweepState, trial_group

if TYPE_CHECKING:
    from ..runs.control import RunControl

__all__ = ["SweepDetails", "SweepTable", "trial_rows"]


def trial_rows(
    session: RunControl,
    state: SweepState,
    rows: dict[str, dict[str, Any]] | None = None,
    summaries: dict[str, dict[str, dict[str, Any]]] | None = None,
) -> list[dict[str, Any]]:
    """Every trial (planned ones too) with its run's live facts from the store."""
    ids = [t["run_id"] for t in state.trials if t.get("run_id")]
    if rows is None:
        rows = {r["id"]: r for r in session.store.list_runs(sweep_id=state.id, limit=None)}
    if summaries is None:
        summaries = session.store.summaries(ids) if ids else {}
    objective = state.spec.get("objective") or {}
    metric, mode = objective.get("metric"), objective.get("mode") or "max"
    out = []
    for t in state.trials:
        run_id = t.get("run_id")
        row = rows.get(run_id) if run_id else None
        summary = summaries.get(run_id, {}) if run_id else {}
        stats = summary.get(metric) if metric else None
        status, reason = t.get("status"), t.get("reason")
        if row is not None and status not in RUN_ENDED:
            status, reason = row["status"], row.get("reason")
            if status == "queued":  # launched: its agent is booting
                status = "starting"
        best = t.get("objective")
        if best is None and stats:
            best = stats.get("max" if mode == "max" else "min")
        out.append(
            {
                "index": t["index"],
                "run": t.get("run_id"),
                "status": status,
                "reason": reason,
                "group": trial_group({**t, "status": status, "reason": reason}),
                "params": t.get("params") or {},
                "objective": best,
                "current": stats.get("last") if stats else None,
                "step": row.get("last_step") if row else None,
                "duration": row.get("duration") if row else None,
                "cost": row.get("cost") if row else None,
                "backend": row.get("backend") if row else None,
            }
        )
    return out


class SweepTable:
    HEADER = [
        "id",
        "name",
        "status",
        "trials",
        "done",
        "running",
        "queued",
        "failed",
        "best",
        "best params",
    ]

    def __init__(self, states: list[SweepState]) -> None:
        self.states = states

    def rows(self) -> list[dict[str, Any]]:
        out = []
        for s in self.states:
            best = s.best()
            metric = (s.spec.get("objective") or {}).get("metric")
            out.append(
                {
                    "id": s.id,
                    "name": s.name,
                    "status": s.display_status(),
                    "reason": s.reason,
                    "trials": s.n_planned,
                    **s.counts(),
                    "objective": metric,
                    "best": best["objective"] if best else None,
                    "best_params": best["params"] if best else None,
                    "best_run": best["run_id"] if best else None,
                }
            )
        return out

    def _cells(self) -> list[list[str]]:
        cells = []
        for r in self.rows():
            status = r["status"] + (
                f" ({r['reason']})" if r["reason"] and r["status"] != "succeeded" else ""
            )
            best = f"{r['objective']}={format_metric(r['best'])}" if r["best"] is not None else "-"
            cells.append(
                [
                    r["id"],
                    r["name"],
                    status,
                    str(r["trials"]),
                    str(r["done"]),
                    str(r["running"]),
                    str(r["queued"]),
                    str(r["failed"]),
                    best,
                    fmt_params(r["best_params"]) if r["best_params"] else "-",
                ]
            )
        return cells

    def __len__(self) -> int:
        return len(self.states)

    def __str__(self) -> str:
        if not self.states:
            return "no sweeps yet: start one with %%runctl sweep --grid KEY=V1,V2 (or `runctl sweep SCRIPT.py ...`)"
        return table_text(self.HEADER, self._cells())

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        if not self.states:
            return f"<p>{html.escape(str(self))}</p>"
        return table_html(self.HEADER, self._cells())


class SweepDetails:
    """`runctl show SWEEP`."""

    HEADER = ["trial", "run", "status", "objective", "params", "duration"]

    def __init__(self, state: SweepState, trials: list[dict[str, Any]]) -> None:
        self.state = state
        self.trial_list = trials

    def _fields(self) -> list[tuple[str, str]]:
        s = self.state
        spec = s.spec
        objective = spec.get("objective") or {}
        fields = [
            ("sweep", f"{s.id} ({s.name})"),
            ("status", s.display_status() + (f" ({s.reason})" if s.reason else "")),
            ("experiment", str(spec.get("experiment"))),
            (
                "search",
                f"{spec.get('search')} · seed {spec.get('seed')} · max parallel {spec.get('max_parallel')}",
            ),
            (
                "objective",
                f"{objective.get('metric')}:{objective.get('mode')}" if objective else "-",
            ),
            ("trials", f"{s.n_planned} ({counts_text(s)})"),
        ]
        if spec.get("grid"):
            fields.append(("grid", " ".join(f"{k}={v}" for k, v in spec["grid"].items())))
        if spec.get("space"):
            fields.append(
                (
                    "space",
                    " ".join(
                        f"{k}={d['dist']}{tuple(d['args'])}" for k, d in spec["space"].items()
                    ),
                )
            )
        if spec.get("fixed"):
            fields.append(("fixed", fmt_params(spec["fixed"])))
        best = best_text(s)
        if best:
            fields.append(("best", best.removeprefix("best ")))
        for warning in s.warnings[-5:]:
            fields.append(("warning", warning))
        for line in s.models:
            fields.append(("model", line))
        fields.append(("folder", str(s.dir)))
        return fields

    def _trial_cells(self) -> list[list[str]]:
        cells = []
        for t in self.trial_list:
            status = t["status"] + (
                f" ({t['reason']})" if t["reason"] and t["status"] != "succeeded" else ""
            )
            cells.append(
                [
                    str(t["index"]),
                    t["run"] or "-",
                    status,
                    format_metric(t["objective"]) if t["objective"] is not None else "-",
                    fmt_params(t["params"]),
                    format_duration(t["duration"]),
                ]
            )
        return cells

    def __str__(self) -> str:
        fields = self._fields()
        width = max(len(k) for k, _ in fields)
        head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)
        return head + "\n\n" + table_text(self.HEADER, self._trial_cells())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = {"text/plain": str(self)}
        try:
            from ..display.sweep_summary import static_summary

            bundle.update(static_summary(self.state, self.trial_list))
        except ImportError:
            bundle["text/html"] = table_html(["", ""], [[k, v] for k, v in self._fields()])
        bundle["text/plain"] = str(self)
        return bundle
