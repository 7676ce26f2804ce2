"""A spot notice on an agent that syncs to S3 (a moto server on 127.0.0.1): the
checkpoint and every event up to `resuming` are in S3 well inside the 2 minutes."""

from __future__ import annotations

import json
import socket
import time

import pytest
from agent_helpers import events_of, make_run_dir, start_agent, wait_for
from fault_helpers import TRAIN

BUCKET = "runctl-faults"


@pytest.fixture
def s3(monkeypatch):
    import boto3
    from aws.strict_aws import install
    from moto.server import ThreadedMotoServer

    install()  # the strict AWS layer, as for every test using moto
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=url)
    client.create_bucket(Bucket=BUCKET)
    yield client
    server.stop()


def test_spot_notice_syncs_checkpoint_and_events_before_the_instance_goes(tmp_path, imds, s3):
    run_dir = make_run_dir(
        tmp_path,
        TRAIN,
        params={"seed": 5, "steps": 500, "delay": 0.02},
        run_id="spot-s3",
        backend="aws",
        sync={"kind": "s3", "bucket": BUCKET, "region": "us-east-1", "interval": 1.0},
        options={"imds_endpoint": imds.url, "imds_interval": 0.1},
    )
    agent = start_agent(run_dir)
    wait_for(lambda: any(e["type"] == "metric" and e["step"] >= 5 for e in events_of(run_dir)))
    noticed = time.monotonic()
    imds.spot_notice()
    assert agent.wait(timeout=60) == 0  # on EC2 the agent hands over: no exec, no exit event
    took = time.monotonic() - noticed
    assert took < 30  # the notice gives 120 s

    prefix = "runctl/runs/spot-s3/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    uploaded = []
    for key in sorted(k for k in keys if k.startswith(prefix + "events/")):
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        uploaded += [json.loads(line) for line in body.splitlines() if line.strip()]
    local = events_of(run_dir)
    assert [e["seq"] for e in uploaded] == [e["seq"] for e in local]  # every event, once
    assert [e.get("status") for e in uploaded if e["type"] == "status"][-2:] == [
        "interrupted",
        "resuming",
    ]
    assert not any(e["type"] == "exit" for e in uploaded)
    (checkpoint,) = [e for e in uploaded if e["type"] == "checkpoint"]
    body = s3.get_object(Bucket=BUCKET, Key=prefix + checkpoint["path"])["Body"].read()
    assert body == (run_dir / checkpoint["path"]).read_bytes()
    assert checkpoint["step"] == max(e["step"] for e in uploaded if e["type"] == "metric")
