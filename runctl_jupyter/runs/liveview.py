"""How a live run is shown while the API waits on it.

A view has `update(row, events)`, `idle(seconds)`, `finish(row, metrics)` and
`detached(row)`. In a kernel it is the RunPanel (display/), in a terminal a
text view that streams the run's output and prints a line per status change.
The display layer sits above the API, so the panel is looked up lazily here
and only when a kernel is there to show it.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from ..display.debug_attach import attach_lines
from ..display.text import format_metric


def interrupt_line(event: dict) -> str:
    """One line for an `interrupt` event: what AWS announced, for which attempt and when."""
    kind = event.get("kind") or "spot"
    what = "spot interruption notice" if kind == "spot" else f"{kind} notice"
    action = f" ({event['action']} at {event['action_time']})" if event.get("action") else ""
    return f"attempt {event.get('attempt', 1)}: {what}{action}: saving a checkpoint and stopping"


class TextView:
    """For the shell: the run's output as it comes, status changes, a summary."""

    METRIC_EVERY = 5.0

    def __init__(self, run: Any, out: Any = None, err: Any = None) -> None:
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.status = None
        self.last_metric_print = 0.0
        self.latest: dict[str, float] = {}
        self.step = None
        self.run_id = run.id

    def update(self, row: dict, events: list[dict]) -> None:
        for event in events:
            kind = event.get("type")
            if kind == "log":
                (self.err if event.get("stream") == "stderr" else self.out).write(event["text"])
            elif kind == "metric":
                self.latest.update(event.get("values", {}))
                self.step = event.get("step")
            elif kind == "warning":
                self.err.write(f"[runctl] warning: {event.get('message')}\n")
            elif kind == "interrupt":
                self.err.write(f"[runctl] {interrupt_line(event)}\n")
            elif kind == "debugger":  # train --debug: where and how to attach
                for line in attach_lines(event):  # launch.json's entry as is, to copy
                    self.err.write(f"{line}\n" if line.startswith("{") else f"[runctl] {line}\n")
        if row["status"] != self.status:
            self.status = row["status"]
            self.err.write(f"[runctl] run {row['id']} ({row.get('name')}): {self.status}\n")
        now = time.monotonic()
        if (
            self.latest
            and row["status"] not in ("succeeded", "failed", "stopped", "lost")
            and now - self.last_metric_print >= self.METRIC_EVERY
        ):
            shown = " ".join(f"{k}={format_metric(v)}" for k, v in self.latest.items())
            self.err.write(f"[runctl] step {self.step}: {shown}\n")
            self.last_metric_print = now
        self.out.flush()

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def finish(self, row: dict, metrics: dict) -> None:
        pass  # the caller shows the returned Run, whose repr is the one-line summary

    def detached(self, row: dict) -> None:
        pass


class PanelView:
    """Adapts display.RunPanel to the view protocol and keeps Stop clickable
    while the cell blocks (pending widget messages are processed in idle())."""

    replays_history = True  # Session._follow: the first update has every event so far

    def __init__(self, session: Any, run: Any) -> None:
        from ..display.run_panel import RunPanel
        from ..display.uipoll import process_ui_events

        self.session = session
        self.shell = session.shell
        self._process_ui_events = process_ui_events
        self.panel = RunPanel(
            run.row,
            on_stop=lambda force: session.backend_stop(run.id, force),
            record_path=run.record_path,
            log_tail_lines=session.config.log_tail_lines,
        )
        self.panel.show()

    def update(self, row: dict, events: list[dict]) -> None:
        self.panel.update(row, events)

    def idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._process_ui_events(self.shell)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    def finish(self, row: dict, metrics: dict) -> None:
        self.panel.finish(row, metrics)

    def detached(self, row: dict) -> None:
        self.panel.finish(row, self.session.store.metrics(row["id"]))


def in_kernel(shell: Any) -> bool:
    return shell is not None and getattr(shell, "kernel", None) is not None


def make_view(session: Any, run: Any) -> Any:
    from .debugging import with_debugger

    if in_kernel(session.shell):
        try:
            return with_debugger(session, run, PanelView(session, run))
        except ImportError:  # the panel needs ipywidgets + plotly
            pass
    return with_debugger(session, run, TextView(run))


def follow_in_background(
    session: Any, run_id: str, output: Any = None, interval: float = 0.25
) -> threading.Thread:
    """A live RunPanel for a run, updated from a thread, so the kernel stays free
    (the runs table's Attach button). The panel is shown now, in `output` (an
    ipywidgets Output) if given; later updates go through its display handles
    and widgets, which need no output context."""
    from ..display.run_panel import RunPanel
    from .results import Run

    run = Run(session, run_id)
    panel = RunPanel(
        run.row,
        on_stop=lambda force: session.backend_stop(run_id, force),
        record_path=run.record_path,
        log_tail_lines=session.config.log_tail_lines,
    )
    if output is not None:
        with output:
            panel.show()
    else:
        panel.show()
    ended = ("succeeded", "failed", "stopped", "lost")
    from .debugging import with_debugger

    view = with_debugger(session, run, panel)  # a --debug run: attach settings, forwarding

    def follow() -> None:
        first = True
        while True:
            events = session.store.refresh(run_id)
            if first:  # the panel starts from the whole history, not only what is new
                events, first = session.store.events(run_id), False
            row = session.store.get(run_id)
            view.update(row, events)
            if row["status"] in ended:
                view.finish(row, session.store.metrics(run_id))
                return
            time.sleep(interval)

    thread = threading.Thread(target=follow, name=f"runctl-follow-{run_id}", daemon=True)
    thread.start()
    return thread
