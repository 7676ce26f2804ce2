"""Per-run early stopping in the agent (--early-stop), on real agent processes."""

from __future__ import annotations

from agent_helpers import exit_event, make_run_dir, run_agent

from runctl_jupyter.agent.early_stop import EarlyStop

PLATEAU = """
import time
for step in range(200):
    loss = max(1.0 - step * 0.1, 0.5)   # improves until step 5, then flat
    runctl.log(step=step, val_loss=loss)
    if runctl.should_stop:
        print("stopping at", step)
        break
    time.sleep(0.02)
"""


def test_a_run_whose_metric_stops_improving_is_stopped_with_reason_and_step(tmp_path):
    early = {"metric": "val_loss", "mode": "min", "patience": 3, "min_delta": 0.0, "warmup": 0}
    run_dir = make_run_dir(tmp_path, PLATEAU, early_stop=early)
    events = run_agent(run_dir)
    final = exit_event(events)
    assert final["status"] == "stopped" and final["reason"] == "early-stop"
    assert final["early_stop"]["best_step"] == 5 and final["early_stop"]["step"] == 8
    warning = next(e for e in events if e["type"] == "warning" and e.get("code") == "early-stop")
    assert "step 8" in warning["message"] and "val_loss" in warning["message"]
    steps = [e["step"] for e in events if e["type"] == "metric"]
    assert max(steps) < 60  # stopped soon after, not after 200 steps


def test_early_stop_in_the_runs_options_is_read_too(tmp_path):
    early = {"metric": "val_loss", "mode": "min", "patience": 2, "min_delta": 0.0, "warmup": 0}
    run_dir = make_run_dir(tmp_path, PLATEAU, options={"early_stop": early})
    final = exit_event(run_agent(run_dir))
    assert final["reason"] == "early-stop" and final["early_stop"]["step"] == 7


def test_a_run_that_keeps_improving_is_not_early_stopped(tmp_path):
    code = "for step in range(30):\n    runctl.log(step=step, acc=step / 30)\n"
    early = {"metric": "acc", "mode": "max", "patience": 2, "min_delta": 0.0, "warmup": 0}
    final = exit_event(run_agent(make_run_dir(tmp_path, code, early_stop=early)))
    assert final["status"] == "succeeded" and "early_stop" not in final


def test_min_delta_and_warmup_count():
    es = EarlyStop(
        {"metric": "acc", "mode": "max", "patience": 2, "min_delta": 0.05, "warmup": 2}, []
    )
    assert es.observe(0, {"acc": 0.9}) is None and es.best is None  # warmup: not watched
    assert es.observe(2, {"acc": 0.5}) is None
    assert es.observe(3, {"acc": 0.54}) is None  # +0.04 is not an improvement (min_delta)
    detail = es.observe(4, {"acc": 0.53})
    assert detail == {
        "metric": "acc",
        "mode": "max",
        "step": 4,
        "best": 0.5,
        "best_step": 2,
        "patience": 2,
    }


def test_without_a_metric_or_mode_it_watches_the_first_monitored_metric_by_its_name():
    es = EarlyStop({"patience": 1}, ["val_loss", "acc"])
    assert es.observe(0, {"acc": 0.1, "val_loss": 2.0}) is None
    assert es.mode == "min"
    assert es.observe(1, {"val_loss": 2.5})["metric"] == "val_loss"
