"""Killed processes and a locked store: each case asserts nothing is lost beyond the
last checkpoint, and the resumed run ends with an uninterrupted run's numbers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from fault_helpers import TRAIN, expected_metrics, wait_ended, wait_for, wait_step

PARAMS = {"seed": 11, "steps": 60, "delay": 0.03}
EVERY_5 = {"checkpoint_every": {"every": 5, "unit": "steps"}}


def _pid_alive(pid: int) -> bool:
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _runner_pid(session, run_id: str) -> int:
    running = [e for e in session.store.events(run_id) if e.get("status") == "running"]
    return running[-1]["pid"]


def _agent_pid(session, run_id: str) -> int:
    return json.loads((session.store.run_dir(run_id) / "agent.json").read_text())["pid"]


def _assert_complete(session, run_id: str) -> None:
    metrics = session.store.metrics(run_id)
    assert [s for s, _ in metrics["w"]] == list(range(PARAMS["steps"]))  # no gap
    assert metrics == expected_metrics(PARAMS["seed"], PARAMS["steps"])  # same numbers


def test_agent_sigkilled_run_is_lost_then_resumes_with_nothing_lost(session):
    # No periodic checkpoint: the one saved when the agent died is the only one.
    run = session.train(code=TRAIN, params=PARAMS, detach=True)
    wait_step(session, run.id, 17)
    runner = _runner_pid(session, run.id)
    os.kill(_agent_pid(session, run.id), signal.SIGKILL)

    row = wait_ended(session, run.id)
    assert (row["status"], row["reason"]) == ("lost", "agent")
    wait_for(lambda: not _pid_alive(runner), 10, "the training process dies with its agent")
    # it got SIGTERM (PDEATHSIG) and saved its registered state, which no agent sent
    (saved,) = (session.store.run_dir(run.id) / "checkpoints").iterdir()
    assert session.store.checkpoints(run.id) == []

    session.resume(run.id, detach=True)
    row = wait_ended(session, run.id)
    assert (row["status"], row["attempt"]) == ("succeeded", 2)
    _assert_complete(session, run.id)
    (indexed,) = session.store.checkpoints(run.id)  # sent by attempt 2's agent
    assert indexed["path"] == str(saved) and indexed["attempt"] == 2
    recovered = [e for e in session.store.events(run.id) if e.get("recovered")]
    assert any(e["type"] == "checkpoint" for e in recovered)
    first = min(
        e["step"]
        for e in session.store.events(run.id)
        if e["type"] == "metric" and e["attempt"] == 2 and not e.get("recovered")
    )
    assert first == indexed["step"] + 1


def test_training_process_sigkilled_fails_clearly_then_resumes(session):
    run = session.train(code=TRAIN, params=PARAMS, options=EVERY_5, detach=True)
    wait_step(session, run.id, 12)
    os.kill(_runner_pid(session, run.id), signal.SIGKILL)

    row = wait_ended(session, run.id)
    assert (row["status"], row["reason"]) == ("failed", "signal")
    assert row["error"]["message"] == "the training process was killed by SIGKILL"
    kept = session.store.metrics(run.id)["w"]
    assert [s for s, _ in kept] == list(range(len(kept))) and len(kept) >= 13

    session.resume(run.id, detach=True)
    row = wait_ended(session, run.id)
    assert (row["status"], row["attempt"]) == ("succeeded", 2)
    _assert_complete(session, run.id)


def test_kernel_killed_the_run_goes_on_and_is_recorded(session, home):
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "RUNCTL_HOME": str(home)}
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=os.getcwd())
    try:
        params = " ".join(f"-p {k}={v}" for k, v in PARAMS.items())
        kc.execute("%load_ext runctl_jupyter")
        kc.execute(f"%%runctl train {params} --name from-kernel\n{TRAIN}")
        run_id = wait_for(
            lambda: [r["id"] for r in session.store.list_runs() if r["name"] == "from-kernel"],
            30,
            "the kernel starts a run",
        )[0]
        wait_step(session, run_id, 10)
        kernel_pid = km.provisioner.process.pid
        os.kill(kernel_pid, signal.SIGKILL)  # the kernel dies mid-cell, blocking on the run
        wait_for(lambda: km.provisioner.process.poll() is not None, 10, "the kernel is gone")
    finally:
        kc.stop_channels()
        km.cleanup_resources()
    row = wait_ended(session, run_id)
    assert (row["status"], row["attempt"]) == ("succeeded", 1)
    _assert_complete(session, run_id)
    assert (session.store.run_dir(run_id) / "record.ipynb").exists()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


def test_store_locked_by_another_writer_waits_and_loses_nothing(session):
    first = session.train(code=TRAIN, params=PARAMS, detach=True)
    wait_step(session, first.id, 3)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(session.store.db_path), "1.5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert locker.stdout.readline().strip() == "locked"
    locked_at = time.time()
    started = time.monotonic()
    second = session.train(code=TRAIN, params=PARAMS, detach=True)  # indexes the new run
    waited = time.monotonic() - started
    assert locker.wait(timeout=10) == 0
    assert waited >= 1.0  # it really waited for the lock, and raised nothing

    for run in (first, second):
        row = wait_ended(session, run.id)
        assert (row["status"], row["attempt"]) == ("succeeded", 1)
        _assert_complete(session, run.id)
    # the agent never needs the database: the first run went on logging under the lock
    during = [
        e
        for e in session.store.events(first.id)
        if e["type"] == "metric" and locked_at < e["t"] < locked_at + 1.2
    ]
    assert len(during) >= 10
