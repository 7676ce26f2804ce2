"""A run's lease with its real agent on the played instance (the SSM fixture runs the exact
script we send): it blocks a second run on the same kept instance before anything is
sent, it expires when the agent process is killed, and it is given back at the run's end."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runctl_jupyter.agent.lease import holder_key
from runctl_jupyter.aws import leases, policy, tags
from runctl_jupyter.aws.clients import Clients, owner_from_arn
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.events import read_events
from runctl_jupyter.store.folders import create_run

PREFIX = "runctl/"
AZ = "us-east-1a"

LONG_CELL = """
import time
step = 0
while not runctl.should_stop and step < 600:
    runctl.log(step=step, loss=1.0)
    step += 1
    time.sleep(0.2)
"""
SHORT_CELL = "runctl.log(step=0, loss=0.5)\nprint('done')\n"


def _new_run(tmp_path: Path, code: str, options: dict) -> tuple[Path, dict]:
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    spec = create_run(
        runs,
        kind="cell",
        code=code,
        params={},
        experiment="leases",
        name=None,
        project="proj",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options=options,
        environment={"packages": {}},
    )
    return runs / spec["run_id"], spec


def _kept_instance(aws: Clients) -> str:
    """An instance kept for reuse (`--keep`), under the shared instance role."""
    subnet = aws.ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [AZ]}])
    kept = tags.tag_list({tags.MANAGED: "true", tags.KEEP: "true", tags.OWNER: "ann"})
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet["Subnets"][0]["SubnetId"],
        IamInstanceProfile={"Name": policy.PROFILE_NAME},
        TagSpecifications=[{"ResourceType": "instance", "Tags": kept}],
    )["Instances"][0]["InstanceId"]


def _holder(aws: Clients, instance_id: str, run_id: str) -> dict | None:
    bucket = policy.bucket_name("123456789012", aws.region)
    try:
        body = aws.s3.get_object(Bucket=bucket, Key=holder_key(PREFIX, instance_id, "rw", run_id))
    except Exception:  # noqa: BLE001 - gone
        return None
    return json.loads(body["Body"].read())


def _wait(what, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(message)


def _first_metric(backend: AWSBackend, run_dir: Path, spec: dict) -> None:
    def seen() -> bool:
        backend.pull(run_dir, spec, force=True)
        events, _ = read_events(run_dir / "events.jsonl")
        return any(e["type"] == "metric" for e in events)

    _wait(seen, 120, "the first run never logged a metric")


def test_a_lease_blocks_a_second_run_and_expires_when_the_agent_is_killed(aws, instance, tmp_path):
    setup(aws)
    bucket = policy.bucket_name("123456789012", aws.region)
    kept = _kept_instance(aws)
    backend = AWSBackend(clients=aws, aws_poll=0.1, poll_interval=0.2, lease_renew_seconds=1.0)
    run_a, spec_a = _new_run(tmp_path, LONG_CELL, {"instance": kept})
    backend.start(run_a, spec_a, attempt=1)
    _first_metric(backend, run_a, spec_a)
    # the agent renews it: its expiry is a few renewals away, no longer the launch's hour
    renewed = _wait(
        lambda: (
            (h := _holder(aws, kept, spec_a["run_id"])) and h["expires_at"] - time.time() < 10 and h
        ),
        30,
        "the agent never renewed its lease",
    )
    who = owner_from_arn(aws.identity()["Arn"])  # the caller's IAM identity, as on its tags
    assert renewed["owner"] == who and renewed["mode"] == "rw"

    run_b, spec_b = _new_run(tmp_path, SHORT_CELL, {"instance": kept})
    commands = len(instance.runs)
    with pytest.raises(leases.LeaseHeld) as caught:
        AWSBackend(clients=aws).start(run_b, spec_b, attempt=1)
    line = str(caught.value)
    assert line == (
        f"instance {kept} is in use by {who}'s run {spec_a['run_id']} (leased); wait until it "
        f"ends, or `runctl stop {spec_a['run_id']}` if it is yours, or launch without --instance"
    )
    time.sleep(0.5)
    assert len(instance.runs) == commands  # nothing was sent to the instance
    assert _holder(aws, kept, spec_b["run_id"]) is None  # the refused run left no holder

    # a real kill of the agent's process group: no more renewals, the lease expires
    instance._kill(instance.homes[kept])
    _wait(
        lambda: leases.holders(aws.s3, bucket, PREFIX, kept) == [],
        60,
        "the lease of a killed agent never expired",
    )
    assert _holder(aws, kept, spec_a["run_id"]) is not None  # expired, not released

    # free now: the second run takes it over, runs, and gives it back at its end
    facts = backend.start(run_b, spec_b, attempt=1)
    assert facts["reused"] is True

    def ended() -> bool:
        backend.pull(run_b, spec_b, force=True)
        events, _ = read_events(run_b / "events.jsonl")
        return any(e["type"] == "exit" for e in events)

    _wait(ended, 120, "the second run never ended")
    # given back before the exit event was written: whoever sees the exit finds it free
    # (a sweep handing the instance to its next trial, the next `train --instance`)
    assert _holder(aws, kept, spec_b["run_id"]) is None
    assert leases.holders(aws.s3, bucket, PREFIX, kept) == []
