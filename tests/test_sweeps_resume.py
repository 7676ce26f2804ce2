"""Sweeps that outlive their notebook: stop, resume, a killed kernel, a killed scheduler, two at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from agent_helpers import wait_for

from runctl_jupyter.errors import RunctlError
from runctl_jupyter.sweeps.handle import Sweep
from runctl_jupyter.sweeps.record import SweepState, all_sweeps, scheduler_alive

ROOT = Path(__file__).resolve().parent.parent

LOOP = """
import time
ckpt = runctl.load_checkpoint()
start = ckpt + 1 if ckpt is not None else 0
for step in range(start, steps):
    runctl.log(step=step, acc=step * lr)
    runctl.save_checkpoint(step)
    if runctl.should_stop:
        break
    time.sleep(pause)
"""


@pytest.fixture(autouse=True)
def _no_scheduler_left(session):
    yield
    for state in all_sweeps(session.store.home):
        if scheduler_alive(state.dir):
            (state.dir / "control.json").write_text('{"stop": true}')


def runs_of(session, sw) -> list[dict]:
    session.store.refresh()
    return session.store.list_runs(sweep_id=sw.id, limit=None)


def test_a_stopped_sweep_resumes_without_rerunning_finished_trials(session):
    sw = session.sweep(
        code=LOOP,
        grid={"lr": [1, 2, 3]},
        params={"steps": 8, "pause": 0.05},
        objective="acc:max",
        detach=True,
    )
    wait_for(lambda: sw.state.counts()["done"] >= 1, timeout=30)
    wait_for(lambda: sw.state.counts()["running"] == 1, timeout=30)
    sw.stop()
    wait_for(lambda: sw.state.status == "stopped", timeout=30)
    state = sw.state
    assert state.reason == "user" and state.counts()["queued"] == 1
    cut = [t for t in state.trials if t["status"] == "stopped"]
    assert len(cut) == 1 and cut[0]["reason"] == "sweep"
    done_before = {t["index"]: t["run_id"] for t in state.trials if t["status"] == "succeeded"}

    resumed = session.sweep(resume=sw.id[:5])
    state = resumed.state
    assert state.status == "succeeded" and state.counts()["done"] == 3
    assert {
        t["index"]: t["run_id"] for t in state.trials if t["index"] in done_before
    } == done_before
    rows = runs_of(session, sw)
    assert len(rows) == 3  # the cut trial went on under its own run id
    again = session.store.get(cut[0]["run_id"])
    assert again["attempt"] == 2 and again["status"] == "succeeded"
    assert session.store.metrics(again["id"], ["acc"])["acc"][-1][0] == 7  # from its checkpoint
    with pytest.raises(RunctlError, match="nothing left to run"):
        session.sweep(resume=sw.id)


def test_the_sweep_goes_on_when_the_kernel_dies(session, home, tmp_path):
    script = textwrap.dedent(
        f"""
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session
        s = Session(config=Runctl(home={str(home)!r}))
        s.sweep(code={LOOP!r}, grid={{"lr": [1, 2, 3]}}, params={{"steps": 5, "pause": 0.05}},
                objective="acc:max", max_parallel=1, name="orphan")
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    kernel = subprocess.Popen([sys.executable, "-c", script], env=env, cwd=str(tmp_path))
    found = wait_for(lambda: all_sweeps(home), timeout=30)[0]
    wait_for(lambda: SweepState(found.dir).counts()["running"] == 1, timeout=30)
    kernel.send_signal(signal.SIGKILL)
    kernel.wait()
    wait_for(lambda: SweepState(found.dir).status == "succeeded", timeout=60)
    assert SweepState(found.dir).counts()["done"] == 3


def test_a_killed_scheduler_leaves_an_orphaned_sweep_that_resume_finishes(session):
    sw = session.sweep(
        code=LOOP,
        grid={"lr": [1, 2, 3]},
        params={"steps": 6, "pause": 0.1},
        objective="acc:max",
        detach=True,
    )
    wait_for(lambda: sw.state.counts()["running"] == 1, timeout=30)
    first = sw.state.trials[0]["run_id"]
    wait_for(lambda: session.store.refresh(first) is not None and session.store.get(first)["status"] == "running", timeout=30)  # fmt: skip
    pid = json.loads((sw.dir / "scheduler.json").read_text())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not scheduler_alive(sw.dir), timeout=10)
    assert sw.status == "orphaned" and "--resume" in repr(sw)
    running = next(t for t in sw.state.trials if t["run_id"])
    # the trial is its own process: it finishes with no scheduler around
    wait_for(
        lambda: (
            session.store.refresh(running["run_id"]) is not None
            and session.store.get(running["run_id"])["status"] == "succeeded"
        ),
        timeout=30,
    )
    done = session.sweep(resume=sw.id)
    state = done.state
    assert state.status == "succeeded" and state.counts()["done"] == 3
    assert len(runs_of(session, sw)) == 3  # the finished trial was not rerun
    assert state.trials[0]["run_id"] == running["run_id"]


def test_retry_failed_resumes_failed_trials_only_when_asked(session, tmp_path):
    flag = tmp_path / "broken"
    flag.write_text("")
    code = "import os\nif lr == 2 and os.path.exists(flag):\n    raise OSError('disk')\nrunctl.log(step=0, acc=lr)\n"
    sw = session.sweep(
        code=code, grid={"lr": [1, 2]}, params={"flag": str(flag)}, objective="acc:max"
    )
    assert sw.state.counts()["failed"] == 1
    with pytest.raises(RunctlError, match="--retry-failed reruns"):
        session.sweep(resume=sw.id)
    flag.unlink()
    state = session.sweep(resume=sw.id, retry_failed=True).state
    assert state.counts()["done"] == 2 and state.counts()["failed"] == 0
    assert len(runs_of(session, sw)) == 2


def test_two_sweeps_at_once_keep_their_trials_apart(session):
    a = session.sweep(code=LOOP, grid={"lr": [1, 2]}, params={"steps": 3, "pause": 0.02}, name="a", detach=True)  # fmt: skip
    b = session.sweep(code=LOOP, grid={"lr": [5, 6, 7]}, params={"steps": 3, "pause": 0.02}, name="b", max_parallel=2, detach=True)  # fmt: skip
    a.wait()
    b.wait()
    assert a.state.status == b.state.status == "succeeded"
    assert sorted(r["params"]["lr"] for r in runs_of(session, a)) == [1, 2]
    assert sorted(r["params"]["lr"] for r in runs_of(session, b)) == [5, 6, 7]
    assert {r["experiment"] for r in runs_of(session, b)} == {"b"}


def test_resume_attaches_to_a_sweep_that_is_still_running(session):
    sw = session.sweep(
        code=LOOP, grid={"lr": [1, 2]}, params={"steps": 4, "pause": 0.05}, detach=True
    )
    with pytest.raises(RunctlError, match="needs it stopped first"):
        session.sweep(resume=sw.id, retry_failed=True)
    again = session.sweep(resume=sw.id)
    assert isinstance(again, Sweep) and again.state.status == "succeeded"
    wait_for(lambda: not scheduler_alive(sw.dir), timeout=10)  # it exits after its last record
    assert len(runs_of(session, sw)) == 2


def test_a_trial_whose_launch_was_cut_short_is_started_on_resume(session, monkeypatch):
    from runctl_jupyter.sweeps import launching
    from runctl_jupyter.sweeps import scheduler as S
    from runctl_jupyter.sweeps.create import create
    from runctl_jupyter.sweeps.record import append_log

    handle = create(session, code=LOOP, target=None, args=(), params={"steps": 2, "pause": 0.01}, grid={"lr": [1, 2]}, space=None, search=None, trials=None, seed=None, max_parallel=1, objective="acc:max", stop_on_failure=False, max_failures=None, prune=None, early_stop=None, experiment=None, name=None, project=None, tags=(), backend=None, metrics=(), yes=False, max_hours=None, ship_objects=True, user_ns={}, options={})  # fmt: skip
    # a scheduler that died between creating trial 0's run and starting its agent
    dead = S.Scheduler(handle.dir)
    spec = dead._create_run(0, {"lr": 1})
    append_log(handle.dir, type="trial", index=0, run_id=spec["run_id"], status="starting")
    monkeypatch.setattr(launching, "LAUNCH_GRACE", 0.0)
    assert S.Scheduler(handle.dir, resume=True).run() == 0  # in this process, to the end
    state = SweepState(handle.dir)
    assert state.status == "succeeded" and state.counts()["done"] == 2
    assert state.trials[0]["run_id"] == spec["run_id"]
    assert any("was never started" in w for w in state.warnings)


def test_ctrl_c_on_a_blocking_sweep_detaches_and_the_sweep_goes_on(home, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import time\nfrom runctl_jupyter.runtime import runctl\n"
        "for step in range(6):\n    runctl.log(step=step, acc=step)\n    time.sleep(0.1)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), RUNCTL_HOME=str(home))
    shell = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runctl_jupyter.cli",
            "sweep",
            str(script),
            "--grid",
            "lr=1,2",
            "--name",
            "ctrlc",
        ],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    found = wait_for(lambda: all_sweeps(home), timeout=30)[0]
    wait_for(lambda: SweepState(found.dir).counts()["running"] == 1, timeout=30)
    shell.send_signal(signal.SIGINT)
    _, err = shell.communicate(timeout=30)
    assert shell.returncode == 130 and f"detached from sweep {found.id}: it goes on" in err
    wait_for(lambda: SweepState(found.dir).status == "succeeded", timeout=60)
    assert SweepState(found.dir).counts()["done"] == 2
