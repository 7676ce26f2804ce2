"""/runctl/api/resources with AWS runs in the store: the managed resources come from
a moto server on 127.0.0.1 (through aws/resources.py), each instance with the $/h
of its live run from the store; an unreachable AWS becomes a note, not an error."""

from __future__ import annotations

import json
import os
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server import write_run

from runctl_jupyter.aws import tags

pytest_plugins = ["pytest_jupyter.jupyter_server"]

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from aws.conftest import _extend_moto  # moto's gaps filled as for the AWS tests
    from moto.server import ThreadedMotoServer

    _extend_moto()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def runctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "runctl-home"
    home.mkdir()
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    return home


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"))
    return moto_url


@pytest.fixture
def jp_server_config(runctl_home: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"runctl_jupyter": True}}}


def _instance(run_id: str) -> str:
    from runctl_jupyter.aws.clients import Clients

    ec2 = Clients(region="us-east-1").ec2
    image = ec2.register_image(
        Name="test-ami",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    run_tags = tags.run_tags(run_id, "ann", "default")
    return ec2.run_instances(
        ImageId=image,
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags.tag_list(run_tags)}],
    )["Instances"][0]["InstanceId"]


async def test_resources_lists_managed_instances_with_their_runs_rate(
    jp_fetch, runctl_home, aws_env
):
    write_run(runctl_home, "gpu1", status=None, backend="aws", cost=(0.4, 1.24))
    instance = _instance("gpu1")
    response = await jp_fetch("runctl", "api", "resources")
    answer = json.loads(response.body)
    assert answer["note"] is None
    [found] = [r for r in answer["resources"] if r["id"] == instance]
    assert found["kind"] == "instance" and found["run"] == "gpu1"
    assert found["run_status"] == "running"
    assert found["rate"] == pytest.approx(1.24)
    assert "t3.micro" in found["detail"]
    assert answer["rate"] == pytest.approx(1.24) and answer["running"] == 1


async def test_an_unreachable_aws_is_a_note_not_an_error(jp_fetch, runctl_home, monkeypatch):
    for key, value in FAKE_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing there
    write_run(runctl_home, "done1", backend="aws", cost=(2.0, 1.0))
    response = await jp_fetch("runctl", "api", "resources")
    answer = json.loads(response.body)
    assert answer["resources"] == []
    assert answer["note"].startswith("could not list AWS resources")
    assert os.environ["AWS_ENDPOINT_URL"] in answer["note"]


async def test_live_aws_runs_are_pulled_from_s3_for_the_sidebar(jp_fetch, runctl_home, aws_env):
    """No kernel follows this run: the server brings its S3 event chunks in itself."""
    import asyncio
    import time

    from runctl_jupyter.aws.clients import Clients

    target = {"bucket": "runctl-test", "region": "us-east-1", "prefix": "runctl/"}
    write_run(runctl_home, "remote1", status=None, steps=2, backend="aws", target=target)
    s3 = Clients(region="us-east-1").s3
    s3.create_bucket(Bucket="runctl-test")
    t = time.time()
    chunk = [
        {"seq": 5, "t": t, "type": "metric", "attempt": 1, "step": 2, "values": {"loss": 0.1}},
        {"seq": 6, "t": t, "type": "exit", "attempt": 1, "status": "succeeded", "reason": None,
         "exit_code": 0, "error": None, "duration": 3.0},
    ]  # fmt: skip
    s3.put_object(
        Bucket="runctl-test",
        Key="runctl/runs/remote1/events/000001.jsonl",
        Body="".join(json.dumps(e) + "\n" for e in chunk).encode(),
    )
    deadline = time.monotonic() + 20
    while True:
        response = await jp_fetch("runctl", "api", "runs")
        [run] = json.loads(response.body)["runs"]
        if run["status"] == "succeeded":
            break
        assert time.monotonic() < deadline, f"still {run['status']}: the run was not pulled"
        await asyncio.sleep(0.3)
    assert run["metrics"]["loss"] == 0.1 and run["last_step"] == 2
