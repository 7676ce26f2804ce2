"""Context memory on AWS (issue 17): a bare train after a `--keep` one reuses the kept
instance while it runs, and launches a new one of the same type once it is stopped."""

from __future__ import annotations

import time

from test_aws_session import _session

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws_target import read_target
from runctl_jupyter.runs.context import idle_kept_instances
from runctl_jupyter.session import Session
from runctl_jupyter.store.folders import read_spec

CELL = "runctl.log(step=0, acc=1.0)\n"


def _target(session: Session, run_id: str) -> dict:
    run_dir = session.store.run_dir(run_id)
    return read_target(run_dir, read_spec(run_dir))


def test_a_bare_train_reuses_the_kept_instance_then_a_new_one_once_stopped(
    aws, instance, tmp_path, monkeypatch, capsys
):
    setup(aws)
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "cloud.ipynb"))
    session = _session(tmp_path)
    first = session.call(
        "train",
        {"code": CELL, "backend": "aws", "options": {"instance_type": "t3.micro", "keep": True}},
    )
    kept = _target(session, first.id)["instance_id"]
    assert session.store.get(first.id)["status"] == "succeeded"
    capsys.readouterr()

    second = session.call("train", {"code": CELL, "options": {}})
    said = capsys.readouterr().out
    assert f"--backend aws --instance {kept}" in said, said
    assert _target(session, second.id)["instance_id"] == kept
    assert _target(session, second.id)["reused"] is True
    assert session.store.get(second.id)["status"] == "succeeded"
    assert kept in str(session.context())
    # an hour after its last run the kept instance is idle: the kept-idle suggestion's list
    state_of = session.backend("aws").instance_state
    later = time.time() + 2 * 3600
    idle = idle_kept_instances(session.store, state_of, now=later)
    assert [i for i, _ in idle] == [kept] and 1.9 < idle[0][1] < 2.1
    assert idle_kept_instances(session.store, state_of) == []  # just used: not idle

    aws.ec2.stop_instances(InstanceIds=[kept])
    third = session.call("train", {"code": CELL, "options": {}})
    said = capsys.readouterr().out
    assert f"the kept instance {kept} is stopp" in said, said  # stopping or stopped
    assert "--instance-type t3.micro" in said
    new = _target(session, third.id)
    assert new["instance_id"] != kept
    stopped = idle_kept_instances(session.store, state_of, now=later + 3600)
    assert kept not in [i for i, _ in stopped]  # a stopped instance bills no hours
    described = aws.ec2.describe_instances(InstanceIds=[new["instance_id"]])
    assert described["Reservations"][0]["Instances"][0]["InstanceType"] == "t3.micro"
