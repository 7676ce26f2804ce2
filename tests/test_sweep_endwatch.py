"""The scheduler notices a trial's end when its exit event is written, not at its next poll."""

from __future__ import annotations

import json
import threading
import time

from runctl_jupyter.sweeps import scheduler as scheduler_module
from runctl_jupyter.sweeps.create import create
from runctl_jupyter.sweeps.endwatch import EndWatch


def _append_later(path, line: dict, delay: float) -> threading.Thread:
    def write():
        time.sleep(delay)
        with open(path, "a") as f:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_endwatch_wakes_on_an_exit_event_and_sleeps_through_metric_lines(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    events = run_dir / "events.jsonl"
    events.write_text('{"seq":1,"t":1.0,"type":"status","status":"running"}\n')
    watch = EndWatch()
    assert watch.wait([run_dir], 0.05) is False  # running, no exit event
    thread = _append_later(events, {"seq": 2, "t": 2.0, "type": "metric", "loss": 1.0}, 0.02)
    start = time.monotonic()
    assert watch.wait([run_dir], 0.3) is False  # a metric line is no end
    assert time.monotonic() - start >= 0.29
    thread.join()
    thread = _append_later(events, {"seq": 3, "t": 3.0, "type": "exit", "status": "succeeded"}, 0.1)
    start = time.monotonic()
    assert watch.wait([run_dir, tmp_path / "not-started-yet"], 30.0) is True
    assert time.monotonic() - start < 2.0
    thread.join()
    assert watch.wait([run_dir], 0.05) is False  # seen once: that exit does not wake it again


def test_the_next_trial_starts_as_soon_as_the_previous_one_ends_not_at_the_next_poll(
    session, monkeypatch
):
    # A poll so slow that only the exit-event watch can explain quick hand-overs.
    monkeypatch.setattr(scheduler_module, "POLL", 5.0)
    handle = create(
        session,
        cost_limit=None,
        code="x = 1",
        target=None,
        args=(),
        params=None,
        grid={"trial": [0, 1, 2]},
        space=None,
        search=None,
        trials=None,
        seed=None,
        max_parallel=1,
        objective=None,
        stop_on_failure=False,
        max_failures=None,
        prune=None,
        early_stop=None,
        experiment="handover",
        name=None,
        project=None,
        tags=(),
        backend=None,
        metrics=(),
        yes=True,
        max_hours=None,
        ship_objects=False,
        user_ns={},
        options=None,
    )
    start = time.monotonic()
    assert scheduler_module.Scheduler(handle.dir).run() == 0
    took = time.monotonic() - start
    rows = sorted(
        (session.store.get(run_id) for run_id in handle.run_ids()), key=lambda r: r["created"]
    )
    assert [r["status"] for r in rows] == ["succeeded"] * 3
    gaps = [later["created"] - earlier["ended"] for earlier, later in zip(rows, rows[1:])]
    assert all(gap < 1.0 for gap in gaps), gaps  # the old 5 s sleep would show here
    assert took < 12.0, took
