"""A run that is alive but silent: a warning, or a stop with --stop-on-stall; and a
run that goes long without a checkpoint gets a warning."""

from __future__ import annotations

import json
import time

from fault_helpers import wait_ended

HANGS = """
import time
print("loading data", flush=True)
time.sleep(hang)
print("done", flush=True)
"""


def test_stall_stops_the_run_with_stop_on_stall(session):
    started = time.monotonic()
    run = session.train(
        code=HANGS,
        params={"hang": 30},
        options={"stall_minutes": 0.02, "stop_on_stall": True},  # 1.2 s of silence
        detach=True,
    )
    row = wait_ended(session, run.id, timeout=15)
    assert (row["status"], row["reason"]) == ("stopped", "stall")
    assert time.monotonic() - started < 10  # not the 30 s the code would have hung
    warning = next(e for e in session.store.events(run.id) if e.get("code") == "stall")
    assert "stalled" in warning["message"] and "--stop-on-stall" in warning["message"]
    assert warning["silent_seconds"] >= 1.2


def test_stall_only_warns_without_stop_on_stall(session):
    run = session.train(
        code=HANGS, params={"hang": 2.5}, options={"stall_minutes": 0.02}, detach=True
    )
    row = wait_ended(session, run.id)
    assert row["status"] == "succeeded"
    warnings = [e for e in session.store.events(run.id) if e.get("code") == "stall"]
    assert len(warnings) == 1  # once per silence, not every tick
    assert f"runctl stop {run.id}" in warnings[0]["message"]


NO_CHECKPOINT = """
for step in range(12):
    runctl.log(step=step, loss=1.0 / (step + 1))
"""


def test_a_run_without_checkpoints_past_twice_the_interval_gets_a_warning(session):
    run = session.train(
        code=NO_CHECKPOINT, options={"checkpoint_every": {"every": 3, "unit": "steps"}}, detach=True
    )
    assert wait_ended(session, run.id)["status"] == "succeeded"
    warnings = [e for e in session.store.events(run.id) if e.get("code") == "checkpoint"]
    assert len(warnings) == 1
    assert "runctl.register_checkpoint" in warnings[0]["message"]


def test_the_command_line_options_reach_the_run(session, home, tmp_path, capsys):
    from runctl_jupyter.cli import main

    script = tmp_path / "train.py"
    script.write_text("from runctl_jupyter.runtime import runctl\nrunctl.log(step=0, loss=1.0)\n")
    code = main(
        [
            "train",
            str(script),
            "--checkpoint-every",
            "10m",
            "--keep-checkpoints",
            "3",
            "--stall-minutes",
            "5",
            "--stop-on-stall",
            "--max-interruptions",
            "2",
        ]
    )
    assert code == 0, capsys.readouterr()
    session.store.refresh()
    (row,) = session.store.list_runs()
    options = json.loads((session.store.run_dir(row["id"]) / "spec.json").read_text())["options"]
    assert options["checkpoint_every"] == {"every": 10.0, "unit": "minutes"}
    assert (options["keep_checkpoints"], options["stall_minutes"]) == (3, 5.0)
    assert options["stop_on_stall"] is True and options["max_interruptions"] == 2
