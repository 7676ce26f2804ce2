"""Two nodes of a multi-node AWS run, played by two agent services on 127.0.0.1.

Each is what a node's bootstrap starts (`python -m runctl_jupyter.agent_s3 service`)
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


def test_two_nodes_train_as_one_job_and_only_node_0_reports_the_run(
    aws, moto_server, imds, tmp_path: Path
):
    import torch

    bucket = "runctl-nodes"
    aws.s3.create_bucket(Bucket=bucket)
    run_id = "multinode1"
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
    out = tmp_path / "out"
    out.mkdir()
    plan = {"nproc_per_node": 1, "nodes": 2, "gpus": None}
    endpoint = f"127.0.0.1:{distributed.free_port()}"
    procs, dirs = [], {}
    for node in (1, 0):  # node 1 first: rank 0 must still land on node 0
        run_dir = make_run_dir(
            tmp_path / f"disk-{node}",
            CELL,
            params={"out": str(out)},
            run_id=run_id,
            distributed=plan,
            sync=sync,
            backend="aws",
            metrics=["loss"],
        )
        env = agent_env()
        env.update(
            AWS_ENDPOINT_URL=moto_server,
            RUNCTL_IMDS_URL=imds.url,  # the played metadata service, never 169.254.169.254
            RUNCTL_NODE_RANK=str(node),
            RUNCTL_RDZV_ENDPOINT=endpoint,
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "runctl_jupyter.agent_s3", "service", str(run_dir)]
                + ["--attempt", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        )
        dirs[node] = run_dir
    errors = [p.communicate(timeout=120)[1].decode(errors="replace") for p in procs]
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
    mirror = tmp_path / "mirror" / run_id
    mirror.mkdir(parents=True)
    spec = {"run_id": run_id, "target": {"bucket": bucket, "prefix": "runctl/"}}
    AWSBackend(clients=aws).pull(mirror, spec, force=True)
    events, _ = read_events(mirror / "events.jsonl")
    metrics = [e for e in events if e["type"] == "metric"]
    assert metrics and all(e.get("rank", 0) == 0 for e in metrics)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [0, 1, 2]
    assert next(e for e in events if e["type"] == "exit")["status"] == "succeeded"
