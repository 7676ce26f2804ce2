"""Staged data end to end (issue 16, item 3): the SSM bootstrap the fixture runs stages
`--data` onto the run's data volume (a folder standing in for its mount), a second run
fetches nothing, a corrupted file fails the launch with one line naming it; `--prewarm`'s
events reach the notebook's mirror through S3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_end_to_end import _follow, _new_run

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.aws.ssm import CommandFailed
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.store.folders import write_spec

CELL = """
import os
names = sorted(os.listdir("data"))
runctl.log(step=0, n=len(names), first=len(open("data/a.txt").read()))
"""
READ = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::datasets"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::datasets/*"},
    ],
}


def _run(tmp_path: Path, backend: AWSBackend, volume: Path, **spec_extra) -> tuple[Path, dict]:
    run_dir, spec = _new_run(
        tmp_path, code=CELL, options={"data": "s3://datasets/digits/", "validate_data": True}
    )
    spec.update(data_mount=str(volume), **spec_extra)
    write_spec(run_dir, spec)
    return run_dir, spec


def _said(instance, run_id: str) -> str:
    return "\n".join(r["stdout"] + r["stderr"] for r in instance.runs if run_id in r["script"])


def test_a_second_run_on_the_volume_stages_nothing_and_a_corrupted_file_stops_the_launch(
    aws, instance, tmp_path
):
    setup(aws)
    aws.s3.create_bucket(Bucket="datasets")
    aws.s3.put_object(Bucket="datasets", Key="digits/a.txt", Body=b"12345")
    aws.s3.put_object(Bucket="datasets", Key="digits/sub/b.txt", Body=b"xy")
    aws.iam.create_policy(
        PolicyName="runctl-data", Path="/runctl/", PolicyDocument=json.dumps(READ)
    )
    volume = tmp_path / "volume"  # the data volume's mount, as the instance sees it
    backend = AWSBackend(clients=aws, aws_poll=0.1, poll_interval=0.2)

    run_dir, spec = _run(tmp_path, backend, volume)
    backend.start(run_dir, spec, attempt=1)
    events = _follow(backend, run_dir, spec)
    assert [e for e in events if e["type"] == "exit"][-1]["status"] == "succeeded"
    assert next(e for e in events if e["type"] == "metric")["values"] == {"n": 2, "first": 5}
    data = json.loads((run_dir / "env.json").read_text())["data"]
    assert data["fetched"] == 2 and data["already"] == 0
    assert data["checked"] == {"md5": 2, "multipart": 0, "size-only": 0}
    staged = volume / "datasets" / "digits"
    assert (staged / "a.txt").read_bytes() == b"12345" and (
        staged.parent / ".digits.runctl-manifest.json"
    ).exists()
    assert "s3://datasets/digits/: 2 to fetch, 0 already staged" in _said(instance, spec["run_id"])

    run_dir, spec = _run(tmp_path, backend, volume)
    states: list[tuple[str, str]] = []
    backend.progress = lambda state, detail: states.append((state, detail))
    backend.start(run_dir, spec, attempt=1)
    assert ("starting", "s3://datasets/digits/: 0 to fetch, 2 already staged") in states
    events = _follow(backend, run_dir, spec)
    assert [e for e in events if e["type"] == "exit"][-1]["status"] == "succeeded"
    assert next(e for e in events if e["type"] == "metric")["values"] == {"n": 2, "first": 5}
    data = json.loads((run_dir / "env.json").read_text())["data"]
    assert data["fetched"] == 0 and data["already"] == 2 and data["tool"] == "none"
    assert "s3://datasets/digits/: 0 to fetch, 2 already staged" in _said(instance, spec["run_id"])

    (staged / "a.txt").write_bytes(b"1234X")  # same size: only its checksum tells
    run_dir, spec = _run(tmp_path, backend, volume)
    with pytest.raises(CommandFailed) as err:
        backend.start(run_dir, spec, attempt=1)
    line = str(err.value)
    assert "--validate-data:" in line and "a.txt does not match s3://datasets/digits/a.txt" in line
    assert "MD5" in line and "\n" not in line
    running = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    assert running == []  # nothing left billing


def test_prewarm_progress_reaches_the_notebook_before_the_code_runs(aws, instance, tmp_path):
    setup(aws)
    device = tmp_path / "nvme1n1"  # a file standing in for the restored volume's device
    with open(device, "wb") as f:
        f.truncate(4 << 20)
    run_dir, spec = _new_run(tmp_path, code="runctl.log(step=0, ok=1)\n", options={"prewarm": True})
    spec["data_device"] = str(device)
    write_spec(run_dir, spec)
    backend = AWSBackend(clients=aws, aws_poll=0.1, poll_interval=0.2)
    backend.start(run_dir, spec, attempt=1)
    events = _follow(backend, run_dir, spec)
    assert [e for e in events if e["type"] == "exit"][-1]["status"] == "succeeded"
    warm = [e for e in events if e["type"] == "prewarm"]
    assert [e["state"] for e in warm] == ["reading"] * 4 + ["done"]
    assert warm[-1]["bytes"] == warm[-1]["total"] == 4 << 20
    kinds = [e["type"] for e in events]
    assert kinds.index("prewarm") < kinds.index("metric")
