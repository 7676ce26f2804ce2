"""The streaming budget: at most ~1,000 AWS calls per run-hour on the notebook side.

Time is scaled 10x down (agent upload pacing 1.5 s / 2 s instead of 15 s / 20 s,
notebook polls 1 s / 2 s instead of 10 s / 20 s), so 12 s here stand for 120 s,
and a run-hour is 360 s of this test's clock.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from runctl_jupyter.agent.s3 import Sync
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.events import EventWriter, read_events

SCALE = 10.0
SECONDS = 12.0


def test_streaming_a_busy_run_stays_within_1000_calls_per_hour(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket="budget")
    remote = tmp_path / "instance" / "r1"
    remote.mkdir(parents=True)
    (remote / "spec.json").write_text(json.dumps({"run_id": "r1"}))
    mirror = tmp_path / "mirror" / "r1"
    mirror.mkdir(parents=True)
    spec = {
        "run_id": "r1",
        "target": {"bucket": "budget", "prefix": "runctl/", "instance_id": None},
    }

    agent_clients = Clients(region="us-east-1")  # the instance's own calls are not the notebook's
    writer = EventWriter(remote, attempt=1)
    sync = Sync(
        remote,
        {
            "kind": "s3",
            "bucket": "budget",
            "prefix": "runctl/",
            "interval": 15 / SCALE,
            "heartbeat_interval": 20 / SCALE,
        },
        client=agent_clients.s3,
    )
    notebook = Clients(region="us-east-1")
    backend = AWSBackend(
        clients=notebook,
        fast_seconds=0,
        poll_interval=10 / SCALE,
        max_poll_interval=20 / SCALE,
    )
    writer.write("status", status="running")
    start = time.monotonic()
    next_beat = next_tick = start
    step = 0
    while time.monotonic() - start < SECONDS:
        now = time.monotonic()
        writer.write(
            "metric", step=step, values={"loss": 1.0 / (step + 1)}
        )  # 20 metrics a (scaled) second
        writer.write("log", stream="stdout", text=f"step {step}\n")
        step += 1
        if now >= next_beat:
            writer.write("heartbeat", pid=1)
            next_beat = now + 5 / SCALE
        writer.flush()
        if now >= next_tick:
            sync.tick()
            next_tick = now + 2 / SCALE
        backend.pull(mirror, spec)  # called as often as a panel would: it paces itself
        time.sleep(0.05)
    streaming_calls = notebook.total_calls("s3.")
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert sync.final(deadline=30)
    backend.pull(mirror, spec, force=True)

    per_hour = streaming_calls * (3600 / SCALE) / SECONDS
    print(f"notebook-side calls while streaming: {notebook.calls} -> {per_hour:.0f} per run-hour")
    assert per_hour <= 1000, (
        f"{streaming_calls} calls in {SECONDS} s -> {per_hour:.0f} per run-hour"
    )
    assert streaming_calls >= 4  # it did poll
    events, _ = read_events(mirror / "events.jsonl")
    assert [e["seq"] for e in events] == list(range(1, writer.seq + 1))  # nothing lost on the way
    # what polling SSM every 2 s (the original runctl's --follow) would cost for comparison
    assert 3600 / 2 > per_hour
