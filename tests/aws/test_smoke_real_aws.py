"""Opt-in smoke test against real AWS: a t3.micro runs a tiny cell, then everything is cleaned up.

Runs only with RUNCTL_AWS_SMOKE=1 and real credentials, on its own:

    RUNCTL_AWS_SMOKE=1 AWS_PROFILE=... python -m pytest tests/aws/test_smoke_real_aws.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNCTL_AWS_SMOKE") != "1",
    reason="real-AWS smoke test: set RUNCTL_AWS_SMOKE=1 with credentials",
)


def test_a_tiny_cell_on_a_real_t3_micro(tmp_path: Path):
    assert os.environ.get("AWS_ACCESS_KEY_ID") != "testing" and not os.environ.get(
        "AWS_ENDPOINT_URL"
    ), "run the smoke test on its own, with real credentials and no AWS_ENDPOINT_URL"
    from runctl_jupyter.aws import tags
    from runctl_jupyter.aws.clients import Clients
    from runctl_jupyter.aws.setup import setup
    from runctl_jupyter.backends.aws import AWSBackend
    from runctl_jupyter.events import read_events
    from runctl_jupyter.store.folders import create_run

    clients = Clients()
    setup(clients)
    runs = tmp_path / "runs"
    runs.mkdir()
    spec = create_run(
        runs,
        kind="cell",
        code="for i in range(3):\n    runctl.log(step=i, loss=1 / (i + 1))\nprint('smoke ok')\n",
        params={},
        experiment="smoke",
        name="smoke",
        project="runctl-smoke",
        owner="smoke",
        backend="aws",
        workdir=str(tmp_path),
        options={"instance_type": "t3.micro", "spot": False},
        environment={"packages": {}},
    )
    run_dir = runs / spec["run_id"]
    backend = AWSBackend(clients=clients)
    try:
        backend.start(run_dir, spec, attempt=1)
        deadline = time.monotonic() + 900
        events: list[dict] = []
        while time.monotonic() < deadline:
            backend.pull(run_dir, spec)
            events, _ = read_events(run_dir / "events.jsonl")
            if any(e["type"] == "exit" for e in events):
                break
            time.sleep(2)
        assert [e for e in events if e["type"] == "exit"][-1]["status"] == "succeeded"
        assert len([e for e in events if e["type"] == "metric"]) == 3
    finally:
        res = clients.ec2.describe_instances(
            Filters=[
                {"Name": f"tag:{tags.RUN_ID}", "Values": [spec["run_id"]]},
                {
                    "Name": "instance-state-name",
                    "Values": ["pending", "running", "stopping", "stopped"],
                },
            ]
        )
        ids = [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]
        if ids:
            clients.ec2.terminate_instances(InstanceIds=ids)
