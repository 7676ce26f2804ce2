"""Live and static views of runs: RunPanel, ComparePanel, RunsTable, SweepPanel.

Widget modules import ipywidgets/plotly at their top; import them from here only
when a panel is needed (the package root never imports display/).
"""

from __future__ import annotations

__all__ = [
    "ComparePanel",
    "RunPanel",
    "RunsTable",
    "SweepPanel",
    "process_ui_events",
    "runs_text",
    "static_summary",
]


def __getattr__(name: str):  # lazy: `from runctl_jupyter.display import RunPanel`
    if name == "RunPanel":
        from .run_panel import RunPanel

        return RunPanel
    if name == "static_summary":
        from .summary import static_summary

        return static_summary
    if name == "ComparePanel":
        from .compare_panel import ComparePanel

        return ComparePanel
    if name in ("RunsTable", "runs_text"):
        from . import runs_table

        return getattr(runs_table, name)
    if name == "SweepPanel":
        from .sweep_panel import SweepPanel

        return SweepPanel
    if name == "process_ui_events":
        from .uipoll import process_ui_events

        return process_ui_events
    raise AttributeError(name)
