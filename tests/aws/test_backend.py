"""AWSBackend's stop/is_alive/pull on their own (no agent needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import AWSError
from runctl_jupyter.backends.aws import AWSBackend


def _instance(aws, **extra: str) -> str:
    t = tags.run_tags("r1", "ann", "p", **extra)
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags.tag_list(t)}],
    )["Instances"][0]["InstanceId"]


def _state(aws, iid: str) -> str:
    return aws.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0][
        "State"
    ]["Name"]


def _spec(iid: str, **target) -> dict:
    return {"run_id": "r1", "target": {"instance_id": iid, "region": "us-east-1", **target}}


def test_force_stop_terminates_an_instance_the_run_made(aws, instance, tmp_path: Path):
    iid = _instance(aws)
    AWSBackend(clients=aws, aws_poll=0.1).stop(tmp_path, _spec(iid), force=True)
    assert _state(aws, iid) in ("shutting-down", "terminated")


def test_stop_of_an_unreachable_instance_terminates_it_if_the_run_made_it(
    aws, instance, tmp_path: Path
):
    iid = _instance(aws)
    aws.ec2.stop_instances(InstanceIds=[iid])
    AWSBackend(clients=aws, aws_poll=0.1).stop(tmp_path, _spec(iid))
    assert _state(aws, iid) in ("shutting-down", "terminated")


def test_stop_never_terminates_a_reused_instance(aws, instance, tmp_path: Path):
    iid = _instance(aws)
    aws.ec2.stop_instances(InstanceIds=[iid])
    with pytest.raises(AWSError, match="never terminated by runctl"):
        AWSBackend(clients=aws, aws_poll=0.1).stop(tmp_path, _spec(iid, reused=True), force=True)
    assert _state(aws, iid) == "stopped"


def test_is_alive_says_false_only_when_the_instance_is_gone_and_asks_at_most_once_a_minute(
    aws, tmp_path: Path
):
    iid = _instance(aws)
    backend = AWSBackend(clients=aws)
    assert backend.is_alive(tmp_path, _spec(iid)) is None  # running: heartbeats decide
    aws.ec2.terminate_instances(InstanceIds=[iid])
    calls = aws.calls.get("ec2.DescribeInstances", 0)
    assert backend.is_alive(tmp_path, _spec(iid)) is None  # cached for a minute
    assert aws.calls.get("ec2.DescribeInstances", 0) == calls
    backend._alive.clear()
    assert backend.is_alive(tmp_path, _spec(iid)) is False


def test_pull_paces_itself_however_often_it_is_called(aws, tmp_path: Path):
    aws.s3.create_bucket(Bucket="pull-bucket")
    aws.s3.put_object(
        Bucket="pull-bucket",
        Key="runctl/runs/r1/events/000001.jsonl",
        Body=b'{"seq":1,"t":1,"type":"status","attempt":1,"status":"running"}\n',
    )
    spec = {"run_id": "r1", "target": {"bucket": "pull-bucket", "prefix": "runctl/"}}
    backend = AWSBackend(clients=aws, fast_seconds=0, poll_interval=10)
    added = sum(backend.pull(tmp_path, spec) for _ in range(50))
    assert added == 1
    assert aws.calls["s3.ListObjectsV2"] == 1 and aws.calls["s3.GetObject"] == 1
    assert json.loads((tmp_path / "events.jsonl").read_text())["status"] == "running"
    # a new backend (a new kernel) goes on after the last chunk it mirrored, and skips known seqs
    again = AWSBackend(clients=aws, fast_seconds=0)
    assert again.pull(tmp_path, spec) == 0
    assert (tmp_path / "events.jsonl").read_text().count("\n") == 1
    time.sleep(0)  # nothing else to wait for


def _launchable(tmp_path: Path) -> tuple[Path, dict]:
    from runctl_jupyter.store.folders import create_run

    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    spec = create_run(
        runs,
        kind="cell",
        code="print(1)\n",
        params={},
        experiment="e",
        name="n",
        project="p",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options={"instance_type": "t3.micro"},
        environment={"packages": {}},
    )
    return runs / spec["run_id"], spec


def _live_instances(aws) -> list[str]:
    res = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]


@pytest.mark.parametrize(
    "operation", ["s3.PutObject", "ssm.SendCommand", "ssm.GetCommandInvocation"]
)
def test_a_failure_while_shipping_terminates_the_new_instance(
    aws, tmp_path: Path, fail, operation: str
):
    from runctl_jupyter.aws.setup import setup

    setup(aws)
    run_dir, spec = _launchable(tmp_path)
    # the first PutObject claims the attempt before the launch; the bundle's is the one that fails
    fail(aws, operation, code="InjectedFailure", skip=1 if operation == "s3.PutObject" else 0)
    with pytest.raises(Exception, match="InjectedFailure"):
        AWSBackend(clients=aws, aws_poll=0.05).start(run_dir, spec, attempt=1)
    assert _live_instances(aws) == []
    assert aws.calls.get("ec2.CreateFleet") == 1  # spot by default: a fleet that refills
    fleets = aws.ec2.describe_fleets()["Fleets"]
    assert [f for f in fleets if not f["FleetState"].startswith("deleted")] == []  # no refill
    assert aws.ec2.describe_launch_templates()["LaunchTemplates"] == []


def test_interrupting_the_launch_terminates_the_new_instance(aws, tmp_path: Path):
    from runctl_jupyter.aws.setup import setup

    setup(aws)
    run_dir, spec = _launchable(tmp_path)
    backend = AWSBackend(clients=aws, aws_poll=0.05)

    def ctrl_c_while_bootstrapping(state: str, detail: str) -> None:
        if detail.startswith("bootstrapping"):
            raise KeyboardInterrupt

    backend.progress = ctrl_c_while_bootstrapping
    with pytest.raises(KeyboardInterrupt):
        backend.start(run_dir, spec, attempt=1)
    assert _live_instances(aws) == []


def test_a_missing_bucket_says_run_setup_and_launches_nothing(aws, tmp_path: Path):
    run_dir, spec = _launchable(tmp_path)
    with pytest.raises(AWSError, match="runctl aws setup"):
        AWSBackend(clients=aws).start(run_dir, spec, attempt=1)
    assert aws.calls.get("ec2.RunInstances", 0) == 0


def test_a_fallback_with_on_demand_before_a_type_is_refused_before_any_launch(aws, tmp_path: Path):
    from runctl_jupyter.aws.setup import setup

    setup(aws)
    run_dir, spec = _launchable(tmp_path)
    spec["options"]["fallback"] = ["on-demand", "t3.small"]
    with pytest.raises(AWSError, match="on-demand can only come last"):
        AWSBackend(clients=aws).start(run_dir, spec, attempt=1)
    assert aws.calls.get("ec2.RunInstances", 0) == 0
    assert aws.calls.get("ec2.CreateFleet", 0) == 0


def test_the_mirror_log_grows_from_log_events_while_the_run_streams(aws, tmp_path: Path):
    aws.s3.create_bucket(Bucket="pull-bucket")
    lines = [
        {"seq": 1, "t": 1, "type": "log", "attempt": 1, "stream": "stdout", "text": "epoch 1\n"},
        {"seq": 2, "t": 2, "type": "status", "attempt": 2, "status": "starting"},
        {"seq": 3, "t": 3, "type": "log", "attempt": 2, "stream": "stderr", "text": "warn\n"},
    ]
    body = "".join(json.dumps(e) + "\n" for e in lines).encode()
    aws.s3.put_object(Bucket="pull-bucket", Key="runctl/runs/r1/events/000001.jsonl", Body=body)
    spec = {"run_id": "r1", "target": {"bucket": "pull-bucket", "prefix": "runctl/"}}
    AWSBackend(clients=aws).pull(tmp_path, spec, force=True)
    assert (tmp_path / "stdout.log").read_text() == "epoch 1\n=== attempt 2 ===\nwarn\n"
