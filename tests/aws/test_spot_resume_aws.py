"""Spot interruptions on AWS with nobody watching: the spot fleet's replacement
instance runs the next attempt (the fixture plays AWS: the notice through the
instance's IMDSv2, the termination, the fleet's refill and the new instance's boot
script).

No kernel, CLI or pull runs between the launch and the end of the recovery: the test
only reads the played instances' disks to know when to serve the notice, then comes
back like a notebook opened later (`attach`).
"""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.events import read_events
from runctl_jupyter.session import Session

_helpers = importlib.util.spec_from_file_location(
    "spot_fault_helpers", Path(__file__).resolve().parents[1] / "faults" / "fault_helpers.py"
)
fault_helpers = importlib.util.module_from_spec(_helpers)
_helpers.loader.exec_module(fault_helpers)  # type: ignore[union-attr]

PARAMS = {"seed": 11, "steps": 120, "delay": 0.05}
OPTIONS = {"instance_type": "t3.micro", "imds_interval": 0.2}


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    cfg.AWSBackend.poll_interval = 0.3
    cfg.AWSBackend.max_poll_interval = 0.5
    return Session(config=Runctl(config=cfg))


def _instance_events(instance, run_id: str, instance_id: str) -> list[dict]:
    path = instance.home(instance_id) / "runctl" / "runs" / run_id / "events.jsonl"
    return read_events(path)[0] if path.exists() else []


def _wait(predicate, timeout: float, what: str, instance=None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    detail = ""
    if instance is not None:
        detail = "\n".join(
            f"--- {r['kind']} {r['instance_id']} rc={r['returncode']}\n{r['stdout'][-1500:]}\n{r['stderr'][-1500:]}"
            for r in instance.runs
        )
    raise AssertionError(f"{what}: not within {timeout} s\n{detail}")


def _interrupt_at_step(
    instance, run_id: str, instance_id: str, step: int, when: str = "2026-11-29T04:00:00Z"
) -> None:
    """Serve a spot notice on that instance's metadata service once it logged `step`
    (`when`: the termination time AWS announces, two minutes ahead)."""
    _wait(
        lambda: any(
            e["type"] == "metric" and e["step"] >= step
            for e in _instance_events(instance, run_id, instance_id)
        ),
        120,
        f"{instance_id} reaches step {step}",
        instance,
    )
    instance.imds_for(instance_id).spot_notice(when)


def _fleets(aws) -> list[dict]:
    return [
        f for f in aws.ec2.describe_fleets()["Fleets"] if not f["FleetState"].startswith("deleted")
    ]


def _templates(aws) -> list[dict]:
    return aws.ec2.describe_launch_templates()["LaunchTemplates"]


def _live_instances(aws) -> list[str]:
    res = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]


def _wait_all_gone(aws, instance) -> None:
    _wait(
        lambda: not _live_instances(aws) and not _fleets(aws) and not _templates(aws),
        60,
        "the fleet and its template deleted and every instance terminated",
        instance,
    )


def test_a_spot_interruption_resumes_on_the_replacement_with_no_kernel_alive(
    aws, instance, tmp_path
):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code=fault_helpers.TRAIN, params=PARAMS, backend="aws", options=OPTIONS, detach=True
    )
    target = json.loads((session.store.run_dir(run.id) / "aws.json").read_text())
    first = target["instance_id"]
    assert target["persistent"] is True and target["fleet_id"].startswith("fleet-")
    del session  # nobody watches from here on

    _interrupt_at_step(instance, run.id, first, 15)
    # AWS (the fixture) takes the instance back and the fleet refills; the boot script
    # of the new instance starts attempt 2
    fleet_id, old, new = _wait(lambda: instance.refills, 60, "the fleet refilled", instance)[0]
    assert (fleet_id, old) == (target["fleet_id"], first) and new != first
    _wait(
        lambda: any(e["type"] == "exit" for e in _instance_events(instance, run.id, new)),
        180,
        "attempt 2 ends on the replacement",
        instance,
    )
    _wait_all_gone(aws, instance)  # the run is over: fleet deleted, instance terminated
    # the first instance's boot script ran at its first boot and started nothing
    boots = [r for r in instance.runs if r["kind"] == "boot"]
    assert {r["instance_id"] for r in boots} == {first, new}
    first_boot = next(r for r in boots if r["instance_id"] == first)
    # it says why it started nothing: SSM's bootstrap has the attempt, or has already
    # claimed it (which of the two it saw depends on how fast SSM's command ran)
    said = first_boot["stdout"] + first_boot["stderr"]
    assert first_boot["returncode"] == 0, said
    assert "bootstrapped through SSM" in said or "attempt 1 is this instance's already" in said

    # A notebook opened later: the run succeeded as attempt 2, same run id
    later = _session(tmp_path)
    done = later.attach(run.id)
    row = later.store.get(done.id)
    assert row["status"] == "succeeded" and row["attempt"] == 2
    events = later.store.events(run.id)
    kinds = [(e["type"], e.get("status"), e["attempt"]) for e in events]
    sequence = [
        ("interrupt", None, 1),
        ("status", "interrupted", 1),
        ("status", "resuming", 1),
        ("status", "starting", 2),
        ("status", "running", 2),
        ("exit", "succeeded", 2),
    ]
    positions = [kinds.index(k) for k in sequence]
    assert positions == sorted(positions), kinds
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate across instances

    # metrics continue from the checkpoint: exactly the uninterrupted run's numbers
    metrics = later.store.metrics(run.id)
    expected = fault_helpers.expected_metrics(PARAMS["seed"], PARAMS["steps"])
    assert [s for s, _ in metrics["w"]] == list(range(PARAMS["steps"]))
    for name in ("w", "loss"):
        assert [s for s, _ in metrics[name]] == [s for s, _ in expected[name]]
        assert [v for _, v in metrics[name]] == pytest.approx([v for _, v in expected[name]])
    ckpt = max(e["step"] for e in events if e["type"] == "checkpoint" and e["attempt"] == 1)
    assert min(e["step"] for e in events if e["type"] == "metric" and e["attempt"] == 2) == ckpt + 1
    assert f"resumed from step {ckpt}" in (later.store.run_dir(run.id) / "stdout.log").read_text()


def test_max_interruptions_one_resumes_once_then_the_run_ends_and_the_fleet_is_deleted(
    aws, instance, tmp_path
):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code=fault_helpers.TRAIN,
        params={**PARAMS, "steps": 400},
        backend="aws",
        options={**OPTIONS, "max_interruptions": 1},
        detach=True,
    )
    first = json.loads((session.store.run_dir(run.id) / "aws.json").read_text())["instance_id"]
    _interrupt_at_step(instance, run.id, first, 10)
    new = _wait(lambda: instance.refills, 60, "the fleet refilled", instance)[0][2]
    # the second notice, on the replacement (attempt 2's own steps: the first 10 were
    # restored), with the same text as the first: it is this instance's, so it counts
    _interrupt_at_step(instance, run.id, new, 30)
    _wait_all_gone(aws, instance)
    assert len(instance.refills) == 1  # no third instance

    row = session.store.get(session.attach(run.id).id)
    assert row["status"] == "stopped" and row["reason"] == "interrupted" and row["attempt"] == 2
    warnings = [e for e in session.store.events(run.id) if e["type"] == "warning"]
    assert any(
        w.get("code") == "max-interruptions" and f"runctl resume {run.id}" in w["message"]
        for w in warnings
    )


def test_max_interruptions_zero_never_resumes(aws, instance, tmp_path):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code=fault_helpers.TRAIN,
        params={**PARAMS, "steps": 400},
        backend="aws",
        options={**OPTIONS, "max_interruptions": 0},
        detach=True,
    )
    first = json.loads((session.store.run_dir(run.id) / "aws.json").read_text())["instance_id"]
    _interrupt_at_step(instance, run.id, first, 5)
    _wait_all_gone(aws, instance)
    assert instance.refills == []
    row = session.store.get(session.attach(run.id).id)
    assert row["status"] == "stopped" and row["reason"] == "interrupted" and row["attempt"] == 1


def test_an_instance_that_dies_during_bootstrap_fails_the_launch_and_leaves_nothing(
    aws, instance, tmp_path
):
    setup(aws)
    session = _session(tmp_path)

    def reclaimed_while_bootstrapping(run_id: str, state: str, detail: str) -> None:
        if detail.startswith("bootstrapping"):
            # AWS takes the instance back before SSM runs anything, and the fleet refills
            instance.terminate(detail.split()[1])
            _wait(lambda: instance.refills, 30, "the fleet refilled", instance)

    session._launch_progress = reclaimed_while_bootstrapping  # type: ignore[method-assign]
    with pytest.raises(Exception, match="bootstrap|Undeliverable|terminated|InvalidInstanceId"):
        session.train(code="print('never')", backend="aws", options=OPTIONS)
    _wait_all_gone(aws, instance)  # the refill AWS launched meanwhile is ended too
    (run_id,) = [p.name for p in (tmp_path / "home" / "runs").iterdir() if p.is_dir()]
    row = session.store.get(run_id)
    assert row["status"] == "failed" and row["reason"] == "launch"
    # the refill's boot script saw the attempt was the launch's own and started nothing
    boots = [
        r
        for r in instance.runs
        if r["kind"] == "boot" and r["instance_id"] != instance.refills[0][1]
    ]
    assert all("bootstrapped through SSM" in r["stdout"] for r in boots)
