"""The agent supervises real processes: output, metrics, stop, signals, resume."""

from __future__ import annotations

import json
import os
import signal
import time

from agent_helpers import events_of, exit_event, make_run_dir, run_agent, start_agent, wait_for

from runctl_jupyter.agent.output import MetricParser
from runctl_jupyter.procs import process_start


def test_a_successful_run_streams_metrics_checkpoints_and_output(tmp_path):
    run_dir = make_run_dir(
        tmp_path,
        """
        for epoch in range(epochs):
            runctl.log(step=epoch, loss=1 / (epoch + 1), lr=lr)
            runctl.save_checkpoint({"epoch": epoch})
            print("epoch", epoch)
        """,
        params={"epochs": 3, "lr": 0.5},
    )
    events = run_agent(run_dir)
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert [e["status"] for e in events if e["type"] == "status"] == ["starting", "running"]
    metrics = [e for e in events if e["type"] == "metric"]
    assert [m["step"] for m in metrics] == [0, 1, 2]
    assert metrics[-1]["values"] == {"loss": 1 / 3, "lr": 0.5}
    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [0, 1, 2]
    assert (run_dir / checkpoints[-1]["path"]).exists()
    logs = "".join(e["text"] for e in events if e["type"] == "log")
    assert logs == "epoch 0\nepoch 1\nepoch 2\n"
    assert (run_dir / "stdout.log").read_text() == logs
    final = exit_event(events)
    assert final["status"] == "succeeded" and final["exit_code"] == 0 and final["reason"] is None
    assert json.loads((run_dir / "agent.json").read_text())["attempt"] == 1


def test_an_exception_fails_the_run_with_the_users_traceback(tmp_path):
    run_dir = make_run_dir(tmp_path, "x = 1\ndef f():\n    return 1 / 0\nf()\n")
    final = exit_event(run_agent(run_dir))
    assert final["status"] == "failed" and final["reason"] == "exception"
    error = final["error"]
    assert error["type"] == "ZeroDivisionError"
    assert "return 1 / 0" in error["traceback"] and "line 3, in f" in error["traceback"]
    assert "runner.py" not in error["traceback"]
    assert "ZeroDivisionError" in (run_dir / "stdout.log").read_text()


def test_stop_interrupts_code_that_never_checks_should_stop(tmp_path):
    run_dir = make_run_dir(
        tmp_path, "import time\nwhile True:\n    time.sleep(0.01)\n", grace_seconds=30
    )
    proc = start_agent(run_dir)
    wait_for(lambda: any(e.get("status") == "running" for e in events_of(run_dir)))
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert time.monotonic() - started < 5  # not the 30 s grace period
    final = exit_event(events_of(run_dir))
    assert final["status"] == "stopped" and final["reason"] == "user"


def test_stop_is_graceful_for_code_that_checks_should_stop(tmp_path):
    run_dir = make_run_dir(
        tmp_path,
        """
        import time
        step = 0
        while not runctl.should_stop:
            step += 1
            runctl.log(step=step, x=step)
            time.sleep(0.01)
        runctl.save_checkpoint({"step": step})
        print("saved at", step)
        """,
    )
    proc = start_agent(run_dir)
    wait_for(lambda: any(e["type"] == "metric" for e in events_of(run_dir)))
    (run_dir / "control.json").write_text(
        json.dumps({"stop": True, "force": False, "reason": "user"})
    )
    proc.communicate(timeout=20)
    events = events_of(run_dir)
    assert exit_event(events)["status"] == "stopped"
    assert any(e["type"] == "checkpoint" for e in events)
    assert "saved at" in (run_dir / "stdout.log").read_text()


def test_code_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path):
    run_dir = make_run_dir(
        tmp_path,
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring", flush=True)
        while True:
            time.sleep(0.01)
        """,
        grace_seconds=1,
    )
    proc = start_agent(run_dir)
    wait_for(
        lambda: (
            "ignoring" in (run_dir / "stdout.log").read_text()
            if (run_dir / "stdout.log").exists()
            else False
        )
    )
    started = time.monotonic()
    (run_dir / "control.json").write_text(json.dumps({"stop": True}))
    proc.communicate(timeout=20)
    assert 0.9 < time.monotonic() - started < 8
    assert exit_event(events_of(run_dir))["status"] == "stopped"


def test_a_training_process_killed_by_sigkill_fails_the_run(tmp_path):
    run_dir = make_run_dir(
        tmp_path, "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    )
    proc = start_agent(run_dir)
    pid = int(
        wait_for(
            lambda: (
                (run_dir / "stdout.log").exists() and (run_dir / "stdout.log").read_text().strip()
            )
        )
    )
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=20)
    final = exit_event(events_of(run_dir))
    assert final["status"] == "failed" and final["reason"] == "signal"
    assert final["error"]["type"] == "SIGKILL"


def test_the_training_process_dies_with_a_killed_agent(tmp_path):
    run_dir = make_run_dir(
        tmp_path, "import os, time\nprint(os.getpid(), flush=True)\ntime.sleep(60)\n"
    )
    proc = start_agent(run_dir)
    pid = int(
        wait_for(
            lambda: (
                (run_dir / "stdout.log").exists() and (run_dir / "stdout.log").read_text().strip()
            )
        )
    )
    proc.kill()
    proc.wait()
    wait_for(lambda: process_start(pid) is None, timeout=10)


def test_max_hours_stops_the_run_with_its_reason(tmp_path):
    run_dir = make_run_dir(
        tmp_path,
        "import time\nwhile not runctl.should_stop:\n    time.sleep(0.01)\n",
        max_hours=0.5 / 3600,
    )
    final = exit_event(run_agent(run_dir))
    assert final["status"] == "stopped" and final["reason"] == "max-hours"


def test_metrics_are_parsed_from_printed_lines(tmp_path):
    run_dir = make_run_dir(
        tmp_path,
        """
        import json
        print("epoch=0 loss=0.5 acc: 0.8")
        print(json.dumps({"loss": 0.25, "acc": 0.9}))
        print("nothing here")
        """,
        metrics=["loss", "acc"],
    )
    metrics = [e for e in run_agent(run_dir) if e["type"] == "metric"]
    assert [(m["step"], m["values"]) for m in metrics] == [
        (0, {"loss": 0.5, "acc": 0.8}),
        (1, {"loss": 0.25, "acc": 0.9}),
    ]


def test_metric_parser_ignores_names_inside_other_words():
    parser = MetricParser(["loss"])
    assert parser.parse("val_loss=0.3") is None
    assert parser.parse("step 7 loss = 1e-3")["values"] == {"loss": 0.001}


def test_a_second_attempt_continues_the_stream_and_sees_the_checkpoint(tmp_path):
    code = """
    ckpt = runctl.load_checkpoint()
    start = ckpt["epoch"] + 1 if ckpt else 0
    for epoch in range(start, 4):
        runctl.log(step=epoch, x=epoch)
        runctl.save_checkpoint({"epoch": epoch})
        if epoch == 1 and ckpt is None:
            raise RuntimeError("interrupted")
    print("started at", start)
    """
    run_dir = make_run_dir(tmp_path, code)
    first = run_agent(run_dir)
    assert exit_event(first)["status"] == "failed"
    events = run_agent(run_dir, attempt=2)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert exit_event(events)["status"] == "succeeded" and exit_event(events)["attempt"] == 2
    second = [e["step"] for e in events if e["type"] == "metric" and e["attempt"] == 2]
    assert second == [2, 3]
    log = (run_dir / "stdout.log").read_text()
    assert "=== attempt 2 ===" in log and "started at 2" in log
