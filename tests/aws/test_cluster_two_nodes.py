"""Two nodes of a multi-node AWS run, played by two agent services on 127.0.0.1.

Each is what a node's bootstrap starts (`python -m runctl_jupyter.agent.service service`)
with the environment its SSM script exports (RUNCTL_NODE_RANK, RUNCTL_RDZV_ENDPOINT),
syncing to the moto server's S3: a real torchrun with `--nnodes 2` (gloo, CPU) on
each, one rendezvous. Node 0's events are the run's; node 1's are kept under
`nodes/1/`; node 0's end terminates every node of the run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from agent_helpers import agent_env, events_of, make_run_dir

from runctl_jupyter import distributed
from runctl_jupyter.aws import tags
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.events import read_events

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs PyTorch: pip install -e '.[dist]'"
)

# Each rank starts from its own random init and trains on its own batches: only DDP's
# broadcast and gradient averaging across the two nodes can make them agree.
CELL = """
import os
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
torch.manual_seed(1 + runctl.rank)
model = DDP(torch.nn.Linear(3, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    g = torch.Generator().manual_seed(1000 * runctl.rank + step)
    x = torch.randn(8, 3, generator=g)
    loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    runctl.log(step=step, loss=loss.item())
    runctl.log(step=step, all_ranks=True, rank_loss=loss.item())
    runctl.save_checkpoint({"step": step})
torch.save(model.module.state_dict(), os.path.join(out, f"rank{runctl.rank}.pt"))
dist.destroy_process_group()
"""


def _node_instances(aws, run_id: str, count: int) -> list[str]:
    run_tags = tags.tag_list(tags.run_tags(run_id, "ann", "p"))
    res = aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="c5n.18xlarge",
        MinCount=count,
        MaxCount=count,
        TagSpecifications=[{"ResourceType": "instance", "Tags": run_tags}],
    )
    return [i["InstanceId"] for i in res["Instances"]]


def _state(aws, iid: str) -> str:
    res = aws.ec2.describe_instances(InstanceIds=[iid])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def _cluster_sync(aws, run_id: str, bucket: str) -> tuple[dict, list[str]]:
    aws.s3.create_bucket(Bucket=bucket)
    ids = _node_instances(aws, run_id, 2)
    sync = {
        "kind": "s3",
        "bucket": bucket,
        "prefix": "runctl/",
        "region": aws.region,
        "instance_id": None,
        "spot_request_id": None,
        "terminate": True,
        "cluster": {"nodes": [{"instance_id": i, "spot_request_id": None} for i in ids]},
    }
    return sync, ids


def _start_nodes(
    tmp_path: Path, cell: str, params: dict, sync: dict, run_id: str, moto_server: str, imds: dict
) -> tuple[list[subprocess.Popen], dict[int, Path]]:
    """Both nodes' agent services, as their bootstraps start them (`imds`: node -> URL)."""
    plan = {"nproc_per_node": 1, "nodes": 2, "gpus": None}
    endpoint = f"127.0.0.1:{distributed.free_port()}"
    procs, dirs = [], {}
    for node in (1, 0):  # node 1 first: rank 0 must still land on node 0
        run_dir = make_run_dir(
            tmp_path / f"disk-{node}",
            cell,
            params=params,
            run_id=run_id,
            distributed=plan,
            sync=sync,
            backend="aws",
            metrics=["loss"],
            options={"imds_interval": 0.2},
        )
        env = agent_env()
        env.update(
            AWS_ENDPOINT_URL=moto_server,
            RUNCTL_IMDS_URL=imds[node],  # a played metadata service, never 169.254.169.254
            RUNCTL_NODE_RANK=str(node),
            RUNCTL_RDZV_ENDPOINT=endpoint,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "runctl_jupyter.agent.service", "service", str(run_dir)]
                + ["--attempt", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        dirs[node] = run_dir
    return procs, dirs


def _wait(procs: list[subprocess.Popen], timeout: float = 90) -> list[str]:
    """Both services' stderr once they end; a service still running then is killed (its
    torchrun and ranks die with it) and the test fails."""
    try:
        return [p.communicate(timeout=timeout)[1].decode(errors="replace") for p in procs]
    except subprocess.TimeoutExpired:
        if timeout > 1:
            raise
        return []
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def _events(run_dir: Path) -> list[dict]:
    return read_events(run_dir / "events.jsonl")[0] if (run_dir / "events.jsonl").exists() else []


def _mirror(aws, tmp_path: Path, bucket: str, run_id: str) -> list[dict]:
    """What the notebook side pulls into its mirror of the run."""
    mirror = tmp_path / "mirror" / run_id
    mirror.mkdir(parents=True)
    spec = {"run_id": run_id, "target": {"bucket": bucket, "prefix": "runctl/"}}
    AWSBackend(clients=aws).pull(mirror, spec, force=True)
    return read_events(mirror / "events.jsonl")[0]


def test_two_nodes_train_as_one_job_and_only_node_0_reports_the_run(
    aws, moto_server, imds, tmp_path: Path
):
    import torch

    bucket = "runctl-nodes"
    run_id = "multinode1"
    sync, ids = _cluster_sync(aws, run_id, bucket)
    out = tmp_path / "out"
    out.mkdir()
    procs, dirs = _start_nodes(
        tmp_path, CELL, {"out": str(out)}, sync, run_id, moto_server, {0: imds.url, 1: imds.url}
    )
    errors = _wait(procs)
    finals = [next(e for e in events_of(dirs[n]) if e["type"] == "exit") for n in (0, 1)]
    logs = [(dirs[n] / "stdout.log").read_text()[-2000:] for n in (0, 1)]
    assert [f["status"] for f in finals] == ["succeeded", "succeeded"], (finals, logs, errors)

    # one job: both ranks end with the same weights
    w0, w1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)

    # node 0's end terminated every node of the run
    assert [_state(aws, i) for i in ids] == ["terminated", "terminated"]

    # the run's events are node 0's; node 1's are kept apart, with its rank
    keys = [
        o["Key"]
        for o in aws.s3.list_objects_v2(Bucket=bucket, Prefix=f"runctl/runs/{run_id}/")["Contents"]
    ]
    assert any(k.startswith(f"runctl/runs/{run_id}/events/") for k in keys)
    node1_chunks = [k for k in keys if k.startswith(f"runctl/runs/{run_id}/nodes/1/events/")]
    assert node1_chunks, keys
    node1_events = [
        json.loads(line)
        for k in node1_chunks
        for line in aws.s3.get_object(Bucket=bucket, Key=k)["Body"].read().splitlines()
    ]
    assert {e.get("rank") for e in node1_events if e["type"] == "metric"} == {1}
    assert not any(e["type"] == "checkpoint" for e in node1_events)

    # the notebook's mirror gets node 0's stream only: rank 0's metrics and checkpoints
    events = _mirror(aws, tmp_path, bucket, run_id)
    metrics = [e for e in events if e["type"] == "metric"]
    assert metrics and all(e.get("rank", 0) == 0 for e in metrics)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [0, 1, 2]
    assert next(e for e in events if e["type"] == "exit")["status"] == "succeeded"


LONG_CELL = """
import time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
for step in range(600):
    total = torch.ones(1)
    dist.all_reduce(total)
    runctl.log(step=step, loss=1.0 / (step + 1))
    runctl.save_checkpoint({"step": step})
    if runctl.should_stop:
        break
    time.sleep(0.05)
"""


class SpotNotice:
    """IMDSv2 for one node: no notice until `armed` is set, then a spot instance-action."""

    def __init__(self) -> None:
        import http.server

        self.armed = threading.Event()
        armed = self.armed

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                self._send(200, "token")

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") != "token":
                    self._send(401, "")
                elif self.path == "/latest/meta-data/spot/instance-action" and armed.is_set():
                    self._send(200, '{"action": "terminate", "time": "2026-11-29T04:00:00Z"}')
                else:
                    self._send(404, "")

            def _send(self, code: int, body: str) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_spot_notice_on_node_1_interrupts_the_whole_run_through_node_0(
    aws, moto_server, imds, tmp_path: Path
):
    bucket = "runctl-nodes-spot"
    run_id = "multinode2"
    sync, ids = _cluster_sync(aws, run_id, bucket)
    notice = SpotNotice()
    try:
        procs, dirs = _start_nodes(
            tmp_path, LONG_CELL, {}, sync, run_id, moto_server, {0: imds.url, 1: notice.url}
        )
        node1, node0 = procs
        # the notice comes to node 1 once both nodes train (a few steps logged on node 0)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            e["type"] == "metric" and e["step"] >= 3 for e in _events(dirs[0])
        ):
            time.sleep(0.2)
        notice.armed.set()
        errors = _wait([node0])
        # node 1's ranks end with the job (or EC2 ends them with the instance node 0
        # terminated: here the instance is moto's, so the test ends the process)
        assert [_state(aws, i) for i in ids] == ["terminated", "terminated"]
        try:
            node1.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    finally:
        notice.server.shutdown()
        _wait(procs, timeout=0.1)
    events = events_of(dirs[0])
    statuses = [e.get("status") for e in events if e["type"] == "status"]
    logs = (dirs[0] / "stdout.log").read_text()[-2000:]
    assert statuses[-2:] == ["interrupted", "resuming"], (statuses, logs, errors)
    assert not any(e["type"] == "exit" for e in events)  # resumed as a whole, not failed
    interrupt = next(e for e in events if e["type"] == "interrupt")
    assert interrupt["kind"] == "spot"
    steps = [e["step"] for e in events if e["type"] == "checkpoint"]
    assert steps and steps[-1] < 599  # stopped early, with its checkpoint
    # the notice went through S3, from node 1 to node 0
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"runctl/runs/{run_id}/notices/node-1-attempt-1.json" in keys
    # the notebook side sees `resuming`: the next attempt launches every node again
    mirrored = _mirror(aws, tmp_path, bucket, run_id)
    assert [e.get("status") for e in mirrored if e["type"] == "status"][-1] == "resuming"
