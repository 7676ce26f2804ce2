"""Following a sweep live: the SweepPanel in a kernel, a line per trial in a terminal.

The scheduler runs the sweep in its own process; this only reads the sweep folder
and the store. Kernel > Interrupt detaches (or stops the sweep with
c.Runctl.on_interrupt = "stop").
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from ..display.text import counts_text, fmt_params, format_metric
from ..errors import RunctlError, RunFailed
from .record import FINAL, RUN_ENDED, SweepState, request_stop, scheduler_alive, trial_group
from .results import trial_rows

if TYPE_CHECKING:
    from .handle import Sweep

__all__ = ["PanelSweepView", "TextSweepView", "watch"]

WATCH_INTERVAL = 0.1


def watch(session: Any, handle: Sweep) -> Sweep:
    """Follow a sweep live until it ends (panel in a kernel, text in a terminal)."""
    view = _make_view(session, handle)
    follower = _Follower(session, handle, view)
    try:
        orphaned = follower.follow()
    except KeyboardInterrupt:
        if session.config.on_interrupt != "stop":
            view.finish(follower.state, trial_rows(session, follower.state))
            print(
                f"detached from sweep {handle.id}: it goes on. `%runctl sweep --resume {handle.id}` "
                f"shows it again; `%runctl sweeps` lists sweeps.",
                file=sys.stderr,
            )
            return handle
        request_stop(handle.dir)  # c.Runctl.on_interrupt = "stop": the same panel shows it stop
        orphaned = follower.follow()
    state = follower.state
    view.finish(state, trial_rows(session, state, follower.rows, follower.summaries))
    if session.shell is not None:
        session.shell.user_ns["_runctl_sweep"] = handle
    if orphaned:
        raise RunctlError(
            f"the scheduler of sweep {handle.id} exited before the sweep ended (see "
            f"{handle.dir / 'scheduler.log'}); `%runctl sweep --resume {handle.id}` continues it"
        )
    if state.status == "failed":
        _raise_failed(session, state)
    return handle


class _Follower:
    """Reads a sweep's log (new lines only) and its trials' rows, and feeds a view."""

    def __init__(self, session: Any, handle: Sweep, view: Any):
        self.session, self.handle, self.view = session, handle, view
        self.state = SweepState(handle.dir)
        self.rows: dict = {}
        self.summaries: dict = {}
        self.last_read = 0.0

    def follow(self) -> bool:
        """Until the sweep ends; True if its scheduler died first (orphaned)."""
        session, state, view = self.session, self.state, self.view
        while True:
            state.refresh()
            now = time.monotonic()
            ended = state.status in FINAL
            if ended or now - self.last_read >= view.read_interval:
                self.last_read = now
                self.rows = {
                    r["id"]: r for r in session.store.list_runs(sweep_id=state.id, limit=None)
                }
                ids = [t["run_id"] for t in state.trials if t.get("run_id")]
                self.summaries = session.store.summaries(ids) if ids else {}
                view.update(state, trial_rows(session, state, self.rows, self.summaries))
            if ended:
                return False
            if not scheduler_alive(self.handle.dir):
                state.refresh()
                if state.status not in FINAL:
                    return True
                continue
            view.idle(WATCH_INTERVAL)


def _raise_failed(session: Any, state: SweepState) -> None:
    failed = [t for t in state.trials if trial_group(t) == "failed" and t.get("run_id")]
    message = f"sweep {state.id} ({state.name}) failed ({state.reason}): {counts_text(state)}."
    if failed:
        first = failed[0]
        try:
            row = session.store.get(first["run_id"])
        except RunctlError:
            row = {}
        error = row.get("error") or {}
        detail = f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": .")
        message += (
            f" Trial {first['index']} (run {first['run_id']}) {row.get('status', 'failed')}: {detail}. "
            f"`%runctl logs {first['run_id']}` has its output."
        )
        raise RunFailed(first["run_id"], message, error.get("traceback"))
    raise RunctlError(message)


class TextSweepView:
    """For the shell: a line per trial that starts or ends, and the best so far."""

    read_interval = 0.25

    def __init__(self, handle: Sweep, out: Any = None):
        self.out = out or sys.stderr
        self.seen: dict[int, str] = {}
        self.status: str | None = None

    def update(self, state: SweepState, trials: list[dict]) -> None:
        for t in trials:
            key = f"{t['status']}/{t['reason']}"
            if t["run"] is None or self.seen.get(t["index"]) == key:
                continue
            self.seen[t["index"]] = key
            if t["status"] in ("starting", "running") or t["status"] in RUN_ENDED:
                value = (
                    f" objective={format_metric(t['objective'])}"
                    if t["objective"] is not None and t["status"] in RUN_ENDED
                    else ""
                )
                why = f" ({t['reason']})" if t["reason"] and t["status"] != "succeeded" else ""
                self.out.write(
                    f"[runctl] trial {t['index']} run {t['run']} {t['status']}{why}{value}"
                    f" [{fmt_params(t['params'])}] · {counts_text(state)}\n"
                )
        if state.status != self.status:
            self.status = state.status
            self.out.write(f"[runctl] sweep {state.id} ({state.name}): {state.status}\n")
        self.out.flush()

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def finish(self, state: SweepState, trials: list[dict]) -> None:
        for warning in state.warnings:
            self.out.write(f"[runctl] warning: {warning}\n")
        self.out.flush()


class PanelSweepView:
    """Adapts display.SweepPanel; widget messages are handled while the cell blocks."""

    read_interval = 0.5

    def __init__(self, session: Any, handle: Sweep):
        from ..display.sweep_panel import SweepPanel
        from ..display.uipoll import process_ui_events

        self.shell = session.shell
        self._poll = process_ui_events
        self.panel = SweepPanel(
            handle.state,
            on_stop_trial=lambda run_id: session.backend_stop(run_id),
            on_stop_sweep=lambda: request_stop(handle.dir),
        )
        self.panel.show()

    def update(self, state: SweepState, trials: list[dict]) -> None:
        self.panel.update(state, trials)

    def idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._poll(self.shell)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    def finish(self, state: SweepState, trials: list[dict]) -> None:
        self.panel.finish(state, trials)


def _make_view(session: Any, handle: Sweep) -> Any:
    from ..runs.liveview import in_kernel

    if in_kernel(session.shell):
        try:
            return PanelSweepView(session, handle)
        except ImportError:  # the panel needs ipywidgets + plotly
            pass
    return TextSweepView(handle)
