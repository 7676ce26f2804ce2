"""aws_api_calls: notebook-side AWS API calls per run-hour of streaming, counted against moto.

A moto server on 127.0.0.1 stands in for AWS. A busy run streams: the agent's
S3 sync plugin (`agent.s3.Sync`) uploads event chunks, and the notebook side
(`AWSBackend.pull`, which paces itself, plus `is_alive`, at most one EC2
describe a minute) is called as often as a live panel would. Every call the
notebook's `Clients` make is counted. Time is scaled (every interval of the
agent and the backend divided by SCALE) so a run-hour takes 3600/SCALE s; the
full run streams exactly one scaled run-hour. Peer: polling SSM every 2 s (the
original runctl's `--follow`), 3600 / 2 = 1,800 calls per run-hour, computed.
Budget (issue 4): at most ~1,000 calls per run-hour.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Iterator

from .common import Ctx, NotLanded, Result

SCALE = 30.0
STEPS_PER_SECOND = 10  # training steps a (scaled) second: a busy run
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}

# the backend's pacing settings, each divided by SCALE
PACING = ("fast_poll", "first_metric_poll", "fast_seconds", "poll_interval", "max_poll_interval")

ABOUT = {
    "aws_api_calls": (
        "notebook-side AWS API calls per run-hour while a busy run streams (10 metric steps and "
        "log lines a second, heartbeats), counted by the package's `Clients` against a moto "
        "server: `AWSBackend.pull` called as often as a live panel would (it paces itself), "
        "plus `is_alive` (at most one EC2 describe a minute); the agent side is the real "
        "`agent.s3.Sync`. Time scaled 30x (every interval / 30), one scaled run-hour streamed. "
        "Peer: polling SSM every 2 s, 1,800 calls a run-hour (computed, not run)."
    )
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _moto(env: dict[str, str] = FAKE_ENV) -> Iterator[str]:
    """A moto server on 127.0.0.1 with fake credentials in `env`; yields its URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    keys = [*env, "AWS_ENDPOINT_URL", "AWS_PROFILE"]
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(env)
    os.environ.pop("AWS_PROFILE", None)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.agent.s3 import Sync
        from runctl_jupyter.aws.clients import Clients
        from runctl_jupyter.backends.aws import AWSBackend
        from runctl_jupyter.events import EventWriter, read_events
    except ImportError as exc:
        raise NotLanded(f"AWS streaming (agent.s3, backends.aws): {exc}") from exc

    seconds = ctx.size(3600 / SCALE, 8.0)  # real seconds streamed
    folder = ctx.scratch("aws")
    remote = folder / "instance" / "r1"
    remote.mkdir(parents=True)
    (remote / "spec.json").write_text(json.dumps({"run_id": "r1"}))
    mirror = folder / "mirror" / "r1"
    mirror.mkdir(parents=True)
    spec = {
        "run_id": "r1",
        "target": {"bucket": "bench", "prefix": "runctl/", "instance_id": "i-0123456789abcdef0"},
    }
    traits = AWSBackend.class_traits()
    backend_defaults = {name: float(traits[name].default_value) for name in PACING}
    with _moto():
        setup = Clients(region="us-east-1")
        setup.s3.create_bucket(Bucket="bench")
        agent_clients = Clients(region="us-east-1")  # the instance's own calls
        writer = EventWriter(remote, attempt=1)
        sync = Sync(
            remote,
            {
                "kind": "s3",
                "bucket": "bench",
                "prefix": "runctl/",
                "interval": 15 / SCALE,
                "heartbeat_interval": 20 / SCALE,
                "log_interval": 30 / SCALE,
            },
            client=agent_clients.s3,
        )
        notebook = Clients(region="us-east-1")
        backend = AWSBackend(
            clients=notebook, **{k: v / SCALE for k, v in backend_defaults.items()}
        )
        writer.write("status", status="running")
        writer.flush()
        start = time.monotonic()
        next_beat = next_tick = next_step = start
        step = 0
        while (now := time.monotonic()) - start < seconds:
            while next_step <= now:
                writer.write("metric", step=step, values={"loss": 1.0 / (step + 1), "acc": 0.5})
                writer.write("log", stream="stdout", text=f"step {step}\n")
                step += 1
                next_step += 1 / (STEPS_PER_SECOND * SCALE)
            if now >= next_beat:
                writer.write("heartbeat", pid=1)
                next_beat = now + 5 / SCALE
            writer.flush()
            if now >= next_tick:
                sync.tick()
                next_tick = now + 2 / SCALE
            backend.pull(mirror, spec)  # as often as a panel redraws; it paces itself
            backend.is_alive(mirror, spec)
            time.sleep(0.01)
        elapsed = time.monotonic() - start
        streaming_calls = notebook.total_calls()
        by_operation = dict(sorted(notebook.calls.items()))
        agent_calls = agent_clients.total_calls()
        writer.write("exit", status="succeeded", reason=None)
        writer.close()
        synced = sync.final(deadline=60)
        backend.pull(mirror, spec, force=True)
    events, _ = read_events(mirror / "events.jsonl")
    complete = synced and [e["seq"] for e in events] == list(range(1, writer.seq + 1))
    if not complete:
        raise AssertionError("the mirror did not receive every event: the count means nothing")
    run_hours = elapsed * SCALE / 3600
    per_hour = streaming_calls / run_hours
    return {
        "aws_api_calls": Result(
            unit="calls/run-hour",
            better="lower",
            ours=round(per_hour, 1),
            peers={"ssm_poll_2s": 1800.0},
            detail={
                "scale": SCALE,
                "real_seconds": round(elapsed, 1),
                "run_hours_streamed": round(run_hours, 3),
                "steps_logged": step,
                "notebook_calls": streaming_calls,
                "notebook_calls_by_operation": by_operation,
                "agent_calls_per_run_hour": round(agent_calls / run_hours, 1),
                "backend_intervals_unscaled_s": backend_defaults,
            },
            notes=[
                "ssm_poll_2s is computed (3600 s / 2 s), not run",
                "extrapolated from a short stream"
                if run_hours < 0.99
                else "one whole run-hour streamed",
            ],
        )
    }
