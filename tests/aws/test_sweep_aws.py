"""An AWS sweep on the played instance: a finished trial's instance takes the next trial."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session
from runctl_jupyter.sweeps.instances import InstancePool
from runctl_jupyter.sweeps.record import FINAL, read_log, request_stop, scheduler_alive

QUICK = "runctl.log(step=0, acc=lr * 10)\nrunctl.log(step=1, acc=lr * 20)\n"


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # the scheduler is its own process: it reads c.AWSBackend from the IPython profile
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text(
        "c.AWSBackend.aws_poll = 0.1\nc.AWSBackend.fast_poll = 0.2\n"
        "c.AWSBackend.poll_interval = 0.2\nc.AWSBackend.max_poll_interval = 0.5\n"
    )
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.AWSBackend.aws_poll = 0.1
    session = Session(config=Runctl(config=cfg))
    yield session
    for path in (tmp_path / "home" / "sweeps").glob("*"):  # a failing test leaves none running
        if scheduler_alive(path):
            request_stop(path)


def _wait(handle, seconds: float = 300.0) -> None:
    deadline = time.monotonic() + seconds
    while handle.state.status not in FINAL or scheduler_alive(handle.dir):
        log = (handle.dir / "scheduler.log").read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"the sweep did not end:\n{log}"
        time.sleep(0.2)


def _all_instances(aws) -> list[dict]:
    res = aws.ec2.describe_instances()["Reservations"]
    return [i for r in res for i in r["Instances"]]


def test_an_aws_sweep_with_max_parallel_1_runs_every_trial_on_one_instance(aws, instance, session):
    setup(aws)
    handle = session.sweep(
        code=QUICK,
        grid={"lr": [0.1, 0.2, 0.3]},
        objective="acc:max",
        max_parallel=1,
        backend="aws",
        options={"instance_type": "t3.micro"},
        detach=True,
    )
    _wait(handle)
    trials = handle.trials()
    assert [t["status"] for t in trials] == ["succeeded"] * 3, (
        trials,
        (handle.dir / "scheduler.log").read_text()[-3000:],
    )
    assert handle.state.status == "succeeded"
    assert abs(handle.best["objective"] - 6.0) < 1e-9  # lr=0.3: its events came back from S3

    launched = _all_instances(aws)
    assert len(launched) == 1  # one launch for three trials
    instance_id = launched[0]["InstanceId"]
    facts = [
        json.loads((session.store.run_dir(run_id) / "aws.json").read_text())
        for run_id in handle.run_ids()
    ]
    assert [f["instance_id"] for f in facts] == [instance_id] * 3
    assert [f["reused"] for f in facts] == [False, True, True]
    assert facts[0]["keep"] is True
    # the sweep ended its instance: nothing runctl launched is left running
    assert launched[0]["State"]["Name"] in ("shutting-down", "terminated")
    records, _ = read_log(handle.dir)
    events = [(r["event"], r["instance_id"]) for r in records if r.get("type") == "instance"]
    assert events == [("launched", instance_id), ("terminated", instance_id)]


def _moto_instance(aws) -> str:
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"], MinCount=1, MaxCount=1, InstanceType="t3.micro"
    )["Instances"][0]["InstanceId"]


def _state(aws, instance_id: str) -> str:
    res = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def test_a_kept_instance_that_died_is_replaced_by_a_new_launch(aws, session):
    records: list[dict] = []
    pool = InstancePool(session, {"backend": "aws", "options": {}}, lambda **r: records.append(r))
    assert pool.options(0) == {"keep": True}  # nothing kept yet: a new launch
    first = _moto_instance(aws)
    pool.started(0, {"instance_id": first, "region": "us-east-1", "reused": False})
    pool.ended(0, None)
    assert pool.options(1) == {"instance": first}  # the finished trial's instance
    pool.ended(1, None)
    aws.ec2.terminate_instances(InstanceIds=[first])
    assert pool.options(2) == {"keep": True}  # dead: not reused
    assert {"type": "instance", "instance_id": first, "event": "lost"} in records
    assert first not in pool.kept


def test_a_resumed_sweep_reuses_its_idle_kept_instances_and_ends_them(aws, session, tmp_path):
    from runctl_jupyter.sweeps.record import append_log

    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    idle, busy, ended = _moto_instance(aws), _moto_instance(aws), _moto_instance(aws)
    for instance_id in (idle, busy, ended):
        append_log(
            sweep_dir,
            type="instance",
            instance_id=instance_id,
            event="launched",
            region="us-east-1",
        )
    append_log(sweep_dir, type="instance", instance_id=ended, event="terminated")
    running = tmp_path / "run"  # a trial still running on `busy`, re-attached by the resume
    running.mkdir()
    (running / "aws.json").write_text(json.dumps({"instance_id": busy}))
    records: list[dict] = []
    pool = InstancePool(session, {"backend": "aws", "options": {}}, lambda **r: records.append(r))
    pool.restore(sweep_dir, [running])
    assert pool.options(5) == {"instance": idle}
    assert pool.options(6) == {"keep": True}  # `busy` is busy, `ended` was ended
    pool.ended(4, running)  # the re-attached trial ends: its instance takes the next trial
    assert pool.options(7) == {"instance": busy}
    pool.release()
    assert _state(aws, idle) in ("shutting-down", "terminated")
    assert _state(aws, busy) in ("shutting-down", "terminated")
    terminated = {r["instance_id"] for r in records if r.get("event") == "terminated"}
    assert terminated == {idle, busy}


def test_a_sweep_given_keep_or_instance_leaves_its_instances(aws, session):
    kept = _moto_instance(aws)
    pool = InstancePool(session, {"backend": "aws", "options": {"keep": True}}, lambda **r: None)
    pool.started(0, {"instance_id": kept, "region": "us-east-1", "reused": False})
    pool.release()
    assert _state(aws, kept) == "running"  # the user asked to keep it
    given = InstancePool(
        session, {"backend": "aws", "options": {"instance": kept}}, lambda **r: None
    )
    assert given.options(0) == {}  # every trial on the user's instance, as asked
    local = InstancePool(session, {"backend": "local", "options": {}}, lambda **r: None)
    assert local.options(0) == {} and not local.active


# ------------------------------------------------- end to end: dead instances and resumes


def _gated(lr: float) -> str:
    """Trial code: the trial with this lr says it runs (`ready`), then waits for `gate`."""
    return (
        "import pathlib, time\n"
        f"if lr == {lr}:\n"
        "    pathlib.Path(ready).write_text('running')\n"
        "    deadline = time.time() + 240\n"
        "    while not pathlib.Path(gate).exists() and time.time() < deadline:\n"
        "        time.sleep(0.05)\n" + QUICK
    )


def _wait_for(path: Path, handle, seconds: float = 300.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        log = (handle.dir / "scheduler.log").read_text(errors="replace")[-3000:]
        assert time.monotonic() < deadline, f"{path.name} never appeared:\n{log}"
        assert handle.state.status not in FINAL, f"the sweep ended first:\n{log}"
        time.sleep(0.1)


def _instance_events(handle) -> list[tuple[str, str]]:
    records, _ = read_log(handle.dir)
    return [(r["event"], r["instance_id"]) for r in records if r.get("type") == "instance"]


def _facts(session, handle) -> list[dict]:
    return [
        json.loads((session.store.run_dir(run_id) / "aws.json").read_text())
        for run_id in handle.run_ids()
    ]


def test_a_sweep_whose_kept_instance_died_launches_a_fresh_one_for_the_next_trial(
    aws, instance, session, tmp_path
):
    setup(aws)
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    handle = session.sweep(
        code=_gated(0.1),
        grid={"lr": [0.1, 0.2]},
        params={"ready": str(ready), "gate": str(gate)},
        objective="acc:max",
        max_parallel=1,
        backend="aws",
        options={"instance_type": "t3.micro"},
        detach=True,
    )
    _wait_for(ready, handle)  # trial 0 runs on the slot's kept instance
    (first,) = [i["InstanceId"] for i in _all_instances(aws)]
    aws.ec2.terminate_instances(InstanceIds=[first])  # it dies, and its processes with it
    _wait(handle)

    trials = handle.trials()
    log = (handle.dir / "scheduler.log").read_text()[-3000:]
    # trial 0 went down with its instance; trial 1 ran on a fresh one
    assert [t["status"] for t in trials] == ["lost", "succeeded"], (trials, log)
    assert handle.state.status in FINAL, log
    launched = [i["InstanceId"] for i in _all_instances(aws)]
    second = next(i for i in launched if i != first)
    assert len(launched) == 2
    facts = _facts(session, handle)
    assert [(f["instance_id"], f["reused"]) for f in facts] == [(first, False), (second, False)]
    assert _instance_events(handle) == [
        ("launched", first),
        ("lost", first),  # seen dead when the next trial needed it
        ("launched", second),
        ("terminated", second),
    ]
    assert _state(aws, second) in ("shutting-down", "terminated")  # nothing left billing


def test_a_resumed_sweep_runs_its_next_trial_on_the_instance_it_kept(
    aws, instance, session, tmp_path
):
    import os
    import signal

    setup(aws)
    ready, gate = tmp_path / "ready", tmp_path / "gate"
    handle = session.sweep(
        code=_gated(0.2),
        grid={"lr": [0.1, 0.2, 0.3]},
        params={"ready": str(ready), "gate": str(gate)},
        objective="acc:max",
        max_parallel=1,
        backend="aws",
        options={"instance_type": "t3.micro"},
        detach=True,
    )
    _wait_for(ready, handle)  # trial 1 runs, on trial 0's instance
    scheduler = json.loads((handle.dir / "scheduler.json").read_text())["pid"]
    os.kill(scheduler, signal.SIGKILL)  # the scheduler dies (its machine rebooted, say)
    deadline = time.monotonic() + 30
    while scheduler_alive(handle.dir):
        assert time.monotonic() < deadline, "the killed scheduler still holds its lock"
        time.sleep(0.05)
    (first,) = [i["InstanceId"] for i in _all_instances(aws)]
    assert _state(aws, first) == "running"  # a dead scheduler ends nothing

    resumed = session.sweep(resume=handle.id, detach=True)
    gate.write_text("go")  # trial 1, re-attached, ends: its instance takes trial 2
    _wait(resumed)

    trials = resumed.trials()
    log = (handle.dir / "scheduler.log").read_text()[-3000:]
    assert [t["status"] for t in trials] == ["succeeded"] * 3, (trials, log)
    assert resumed.state.status == "succeeded"
    assert abs(resumed.best["objective"] - 6.0) < 1e-9
    assert [i["InstanceId"] for i in _all_instances(aws)] == [first]  # no second launch
    facts = _facts(session, resumed)
    assert [(f["instance_id"], f["reused"]) for f in facts] == [
        (first, False),
        (first, True),
        (first, True),
    ]
    assert _instance_events(resumed) == [("launched", first), ("terminated", first)]
    assert _state(aws, first) in ("shutting-down", "terminated")
