"""Budget (issue 5): the SweepPanel stays responsive with 500 trials.

Measured on the whole live cycle a blocking `%%runctl sweep` cell goes through
(sweeps/watch.py's follower): read the sweep log, list the sweep's 500 runs and
their metric summaries from the store, build the trial rows, redraw the panel.
Widget messages (a Stop click) are handled between two cycles, so a cycle is
the longest a click waits.
"""

from __future__ import annotations

import json
import os
import statistics
import time

from runctl_jupyter.display.sweep_panel import SweepPanel
from runctl_jupyter.events import FORMAT, EventWriter
from runctl_jupyter.sweeps.handle import Sweep
from runctl_jupyter.sweeps.record import SPEC_FILE, append_log, take_lock, write_json
from runctl_jupyter.sweeps.watch import _Follower

TRIALS, RUNNING, QUEUED, STEPS = 500, 3, 17, 20
CYCLE_BUDGET = 0.5  # seconds: a click is answered within half a second


def _run_folder(runs_dir, run_id: str, index: int, now: float, ended: bool) -> None:
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    params = {"lr": 10 ** -(index % 5), "act": "relu" if index % 2 else "tanh"}
    spec = {
        "format": 1, "run_id": run_id, "name": f"big-{index}", "experiment": "big",
        "project": "default", "owner": "test", "tags": [], "kind": "cell", "entry": "code.py",
        "script_path": None, "args": [], "params": params, "objects": [], "workdir": str(runs_dir),
        "python": "python3", "metrics": [], "max_hours": None, "grace_seconds": 10,
        "heartbeat_seconds": 5, "backend": "local", "target": {}, "sync": None,
        "created": now - 100, "rerun_of": None, "sweep_id": "sbig",
    }  # fmt: skip
    (folder / "spec.json").write_text(json.dumps(spec))
    (folder / "params.json").write_text(json.dumps(params))
    writer = EventWriter(folder, attempt=1)
    writer.write("status", t=now - 99, status="starting", format=FORMAT)
    writer.write("status", t=now - 98, status="running")
    for step in range(STEPS):
        writer.write("metric", t=now - 90 + step, step=step, values={"acc": index / TRIALS + step})
    if not ended:  # alive: a heartbeat just now (no agent.json, so no pid to check)
        writer.write("heartbeat", t=now, pid=0)
    else:
        writer.write("exit", t=now - 50, status="succeeded", reason=None, exit_code=0, error=None, duration=49.0)  # fmt: skip
    writer.flush()
    writer._file.close()


def _big_sweep(home):
    now = time.time()
    sweep_dir = home / "sweeps" / "sbig"
    sweep_dir.mkdir(parents=True)
    plan = [{"lr": 10 ** -(i % 5), "act": "relu" if i % 2 else "tanh"} for i in range(TRIALS)]
    write_json(
        sweep_dir / SPEC_FILE,
        {
            "format": 1, "sweep_id": "sbig", "name": "big", "experiment": "big",
            "search": "grid", "objective": {"metric": "acc", "mode": "max"},
            "n_trials": TRIALS, "plan": plan, "created": now,
        },
    )  # fmt: skip
    append_log(sweep_dir, type="status", status="running")
    started = TRIALS - QUEUED
    for i in range(started):
        ended = i < started - RUNNING
        _run_folder(home / "runs", f"r{i:09d}", i, now, ended)
        if ended:
            append_log(sweep_dir, type="trial", index=i, run_id=f"r{i:09d}", status="succeeded", reason=None, objective=i / TRIALS + STEPS - 1)  # fmt: skip
        else:
            append_log(sweep_dir, type="trial", index=i, run_id=f"r{i:09d}", status="running")
    return sweep_dir


class _TimedView:
    """The live panel, drawn on every cycle (no throttle: the worst case), timed per cycle."""

    read_interval = 0.0

    def __init__(self, panel: SweepPanel, sweep_dir, cycles: int):
        self.panel, self.sweep_dir, self.cycles = panel, sweep_dir, cycles
        self.marks: list[float] = []
        self.trials: list[dict] = []

    def update(self, state, trials) -> None:
        self.trials = trials
        self.panel.update(state, trials)

    def idle(self, seconds: float) -> None:  # where widget messages would be handled
        self.marks.append(time.perf_counter())
        if len(self.marks) == self.cycles:
            append_log(self.sweep_dir, type="status", status="succeeded")


def test_a_live_sweep_panel_with_500_trials_answers_a_click_within_half_a_second(session, home):
    sweep_dir = _big_sweep(home)
    session.store.reindex()
    lock = take_lock(sweep_dir)  # the sweep looks scheduled (its scheduler holds this lock)
    handle = Sweep(session, sweep_dir)
    panel = SweepPanel(handle.state, lambda run_id: None, lambda: None, redraw_interval=0.0)
    panel.build_widgets()
    view = _TimedView(panel, sweep_dir, cycles=6)
    try:
        assert _Follower(session, handle, view).follow() is False
    finally:
        panel.close()
        os.close(lock)
    cycles = [b - a for a, b in zip(view.marks, view.marks[1:])]
    assert len(cycles) == 5
    # every trial was read from the store and drawn
    assert len(view.trials) == TRIALS
    assert sum(1 for t in view.trials if t["group"] == "running") == RUNNING
    assert sum(1 for t in view.trials if t["step"] == STEPS - 1) == TRIALS - QUEUED
    assert panel.redraws >= 6
    # one cycle also builds the figure's traces for the first time (plotly's validators
    # load then): a one-off; every other cycle is the steady state of a live sweep
    steady = sorted(cycles)[:-1]
    assert max(steady) < CYCLE_BUDGET and statistics.median(cycles) < CYCLE_BUDGET, cycles
