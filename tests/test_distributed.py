"""Distributed runs (issue 10): real torchrun jobs on CPU (gloo) through the agent,
and the checks that refuse what cannot work before anything is written."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import agent_env, events_of, make_run_dir, wait_for

from runctl_jupyter import distributed
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.events import read_events

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs PyTorch: pip install -e '.[dist]'")

# Each rank starts from its own random init and trains on its own batches: only
# DDP's broadcast and gradient averaging can make the ranks agree.
DDP_CELL = """
import os
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

dist.init_process_group("gloo")
print(f"hello from rank {runctl.rank} of {runctl.world_size}", flush=True)
torch.manual_seed(1 + runctl.rank)
model = DDP(torch.nn.Linear(3, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(steps):
    g = torch.Generator().manual_seed(1000 * runctl.rank + step)
    x = torch.randn(8, 3, generator=g)
    loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    runctl.log(step=step, total=steps, loss=loss.item())
    runctl.log(step=step, all_ranks=True, rank_loss=loss.item())
    saved = runctl.save_checkpoint({"rank": runctl.rank, "step": step})
    assert (saved is None) == (runctl.rank != 0)
state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
torch.save(state, os.path.join(out, f"rank{runctl.rank}.pt"))
dist.destroy_process_group()
"""


def _reference_weights(steps: int, ranks: int, average: bool = True) -> dict:
    """What DDP must compute: rank 0's init, each step the mean of every rank's gradient."""
    import torch

    torch.manual_seed(1)
    model = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(steps):
        grads = []
        for rank in range(ranks if average else 1):
            g = torch.Generator().manual_seed(1000 * rank + step)
            x = torch.randn(8, 3, generator=g)
            loss = ((model(x) - x.sum(1, keepdim=True)) ** 2).mean()
            grads.append(torch.autograd.grad(loss, list(model.parameters())))
        for p, *gs in zip(model.parameters(), *grads):
            p.grad = sum(gs) / len(gs)
        opt.step()
    return model.state_dict()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


@pytest.fixture
def rank_pids():
    """Pids of rank processes a test started; any still alive at the end are killed
    (so a failing test never leaves training processes behind)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@needs_torch
def test_ddp_on_two_cpu_processes_averages_gradients_and_keeps_rank0_metrics(session, tmp_path):
    import torch

    out = tmp_path / "out"
    out.mkdir()
    run = session.train(
        code=DDP_CELL,
        params={"steps": 4, "out": str(out)},
        options={"nproc_per_node": 2},
        metrics=["loss"],
    )
    row = run.row
    assert row["status"] == "succeeded", row.get("error")
    run_dir = session.store.run_dir(run.id)
    assert json.loads((run_dir / "spec.json").read_text())["distributed"] == {
        "nproc_per_node": 2,
        "nodes": 1,
        "gpus": None,
    }

    # gradients averaged: both ranks end with the same weights, the ones averaging gives
    w0, w1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    expected = _reference_weights(steps=4, ranks=2)
    rank0_alone = _reference_weights(steps=4, ranks=2, average=False)
    for key in expected:
        assert torch.equal(w0[key], w1[key]), key
        assert torch.allclose(w0[key], expected[key], atol=1e-6), key
    assert not all(torch.allclose(w0[k], rank0_alone[k], atol=1e-4) for k in expected)

    # only rank 0's metrics (and rank 0's printed `loss=` lines: none here), rank 1 opted in
    metrics = session.store.metrics(run.id)
    assert [s for s, _ in metrics["loss"]] == [0, 1, 2, 3]
    assert set(metrics) == {"loss", "rank_loss", "rank_loss/rank1"}
    assert metrics["rank_loss"] == metrics["loss"]
    assert metrics["rank_loss/rank1"] != metrics["rank_loss"]  # rank 1's own batches
    events, _ = read_events(run_dir / "events.jsonl")
    rank1 = [e for e in events if e["type"] == "metric" and e.get("rank") == 1]
    assert [e["step"] for e in rank1] == [0, 1, 2, 3]

    # only rank 0's checkpoints, one per step
    checkpoints = session.store.checkpoints(run.id)
    assert [c["step"] for c in checkpoints] == [0, 1, 2, 3]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        f"step-{i:08d}.pkl" for i in range(4)
    ]

    # both ranks' output kept: prefixed in the log, and each rank's own files
    log = (run_dir / "stdout.log").read_text()
    assert "[rank0]: hello from rank 0 of 2" in log
    assert "[rank1]: hello from rank 1 of 2" in log
    assert "OMP_NUM_THREADS" not in log  # set for the ranks, as torchrun would, minus its banner
    streamed = "".join(e["text"] for e in events if e["type"] == "log")
    assert "[rank1]: hello from rank 1 of 2" in streamed
    own = {p.parent.name: p.read_text() for p in (run_dir / "ranks").rglob("stdout.log")}
    assert own["0"].strip() == "hello from rank 0 of 2"
    assert own["1"].strip() == "hello from rank 1 of 2"


@needs_torch
def test_killing_one_rank_fails_the_run_cleanly(session, tmp_path, rank_pids):
    out = tmp_path / "out"
    out.mkdir()
    code = """
import os, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
open(os.path.join(out, f"pid{runctl.rank}"), "w").write(str(os.getpid()))
t = torch.zeros(1)
while True:
    dist.all_reduce(t)
    time.sleep(0.02)
"""
    run = session.train(
        code=code, params={"out": str(out)}, options={"nproc_per_node": 2}, detach=True
    )
    wait_for(lambda: (out / "pid0").exists() and (out / "pid1").exists(), timeout=30)
    pids = [int((out / f"pid{r}").read_text()) for r in (0, 1)]
    rank_pids.extend(pids)
    killed = time.monotonic()
    os.kill(pids[1], signal.SIGKILL)

    def ended() -> bool:
        session.store.refresh(run.id)
        return run.row["status"] in ("failed", "succeeded", "stopped", "lost")

    wait_for(ended, timeout=40)
    row = run.row
    assert row["status"] == "failed" and row["reason"] == "exception"
    assert row["error"]["message"].startswith("rank 1 was killed by SIGKILL"), row["error"]
    assert time.monotonic() - killed < 35
    wait_for(lambda: not _alive(pids[0]), timeout=10)  # the other rank was stopped too
    with pytest.raises(RunctlError, match="rank 1 was killed by SIGKILL"):
        session.wait(run, quiet=True)


@needs_torch
def test_stop_ends_every_rank(session, tmp_path, rank_pids):
    out = tmp_path / "out"
    out.mkdir()
    code = """
import os, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
open(os.path.join(out, f"pid{runctl.rank}"), "w").write(str(os.getpid()))
t = torch.zeros(1)
while not runctl.should_stop:
    dist.all_reduce(t)
    time.sleep(0.02)
"""
    run = session.train(
        code=code, params={"out": str(out)}, options={"nproc_per_node": 2}, detach=True
    )
    wait_for(lambda: (out / "pid0").exists() and (out / "pid1").exists(), timeout=30)
    pids = [int((out / f"pid{r}").read_text()) for r in (0, 1)]
    rank_pids.extend(pids)
    session.stop(run.id, wait=20)
    assert run.row["status"] == "stopped" and run.row["reason"] == "user"
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)


@needs_torch
def test_a_forced_stop_kills_ranks_that_ignore_sigterm(session, tmp_path, rank_pids):
    """torchrun starts each rank in a session of its own: when the agent kills
    torchrun, the ranks must die with it (PR_SET_PDEATHSIG), never train unseen."""
    out = tmp_path / "out"
    out.mkdir()
    code = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(os.path.join(out, f"pid{runctl.rank}"), "w").write(str(os.getpid()))
while True:
    time.sleep(0.02)
"""
    run = session.train(
        code=code, params={"out": str(out)}, options={"nproc_per_node": 2}, detach=True
    )
    wait_for(lambda: (out / "pid0").exists() and (out / "pid1").exists(), timeout=30)
    pids = [int((out / f"pid{r}").read_text()) for r in (0, 1)]
    rank_pids.extend(pids)
    session.stop(run.id, force=True, wait=20)
    assert run.row["status"] == "stopped"
    wait_for(lambda: not any(_alive(p) for p in pids), timeout=10)
    assert not any(_alive(p) for p in pids)


@needs_torch
def test_a_rank_that_raises_fails_the_run_with_that_ranks_traceback(session, tmp_path):
    code = """
import torch.distributed as dist
dist.init_process_group("gloo")
if runctl.rank == 1:
    raise ValueError("bad shard on this rank")
dist.barrier()
"""
    with pytest.raises(RunctlError, match="rank 1: bad shard on this rank") as info:
        session.train(code=code, options={"nproc_per_node": 2})
    assert 'raise ValueError("bad shard on this rank")' in info.value.traceback_text


@needs_torch
def test_two_agents_join_one_rendezvous_as_two_nodes(tmp_path):
    """Two agents on 127.0.0.1 play the two nodes of a multi-node run (on AWS each
    node's SSM script sets RUNCTL_RDZV_ENDPOINT and RUNCTL_NODE_RANK the same way)."""
    import torch

    out = tmp_path / "out"
    out.mkdir()
    plan = {"nproc_per_node": 1, "nodes": 2, "gpus": None}
    port = distributed.free_port()
    procs, dirs = [], []
    for node in (1, 0):  # node 1 first: rank 0 must still land on node 0
        run_dir = make_run_dir(
            tmp_path / f"node{node}",
            DDP_CELL,
            params={"steps": 3, "out": str(out)},
            run_id="multi",
            distributed=plan,
        )
        env = agent_env()
        env.update(RUNCTL_RDZV_ENDPOINT=f"127.0.0.1:{port}", RUNCTL_NODE_RANK=str(node))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "runctl_jupyter.agent", str(run_dir), "--attempt", "1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        dirs.insert(0, run_dir)
    for proc in procs:
        proc.wait(timeout=120)
    finals = [next(e for e in events_of(d) if e["type"] == "exit") for d in dirs]
    logs = [(d / "stdout.log").read_text()[-3000:] for d in dirs]
    assert [f["status"] for f in finals] == ["succeeded", "succeeded"], (finals, logs)
    w0, w1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    expected = _reference_weights(steps=3, ranks=2)
    for key in expected:
        assert torch.equal(w0[key], w1[key]) and torch.allclose(w0[key], expected[key], atol=1e-6)
    # rank 0 lives on node 0: its metrics and checkpoints are there, node 1 has only rank 1's
    node0 = [e for e in events_of(dirs[0]) if e["type"] in ("metric", "checkpoint")]
    node1 = [e for e in events_of(dirs[1]) if e["type"] in ("metric", "checkpoint")]
    assert {e["type"] for e in node0} == {"metric", "checkpoint"}
    assert node1 and all(e["type"] == "metric" and e["rank"] == 1 for e in node1)
    assert "[rank1]: hello from rank 1 of 2" in (dirs[1] / "stdout.log").read_text()


# -- checked before launch ---------------------------------------------------------------
def test_nodes_above_one_are_refused_on_the_local_backend(session):
    with pytest.raises(RunctlError, match=r"--nodes 2 needs 2 machines.*--backend aws"):
        session.train(code="pass", options={"nodes": 2, "nproc_per_node": 2})
    assert not list(session.store.runs_dir.glob("*"))  # nothing written


def test_gpus_where_there_are_none_suggest_nproc_per_node():
    with pytest.raises(RunctlError, match=r"has no GPU; use --nproc-per-node N") as info:
        distributed.plan({"gpus": "all"}, "local", gpu_count=lambda: 0)
    assert "\n" not in str(info.value)


def test_more_gpus_than_the_machine_has_are_refused():
    with pytest.raises(RunctlError, match=r"--gpus 4: this machine has 1 GPU; ask for --gpus 1"):
        distributed.plan({"gpus": 4}, "local", gpu_count=lambda: 1)


@needs_torch
def test_gpus_all_is_one_process_per_gpu_of_the_machine():
    assert distributed.plan({"gpus": "all"}, "local", gpu_count=lambda: 4) == {
        "nproc_per_node": 4,
        "nodes": 1,
        "gpus": 4,
    }
    assert distributed.plan({}, "local") is None
    with pytest.raises(RunctlError, match="give one of them"):
        distributed.plan({"gpus": 2, "nproc_per_node": 3}, "local", gpu_count=lambda: 4)


def test_gpus_on_this_gpu_less_machine_are_refused_through_train(session):
    if distributed.local_gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.raises(RunctlError, match="has no GPU; use --nproc-per-node"):
        session.train(code="pass", options={"gpus": 1})
    assert not list(session.store.runs_dir.glob("*"))


def test_without_pytorch_a_distributed_run_is_refused_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if PyTorch were not installed
    with pytest.raises(RunctlError, match=r"torchrun.*pip install torch") as info:
        distributed.plan({"nproc_per_node": 2}, "local")
    assert "\n" not in str(info.value)


def test_aws_plans_are_checked_later_against_the_instance_type():
    # no torch needed here (it is installed on the instance); --gpus all is resolved at launch
    assert distributed.plan({"gpus": "all", "nodes": 2}, "aws") == {
        "nproc_per_node": 1,
        "nodes": 2,
        "gpus": "all",
    }
    assert distributed.plan({"nodes": 2, "efa": True}, "aws")["efa"] is True
    with pytest.raises(RunctlError, match=r"--efa .* add --nodes M") as info:
        distributed.plan({"efa": True}, "aws")
    assert "\n" not in str(info.value)
    assert distributed.describe({"nodes": 2, "nproc_per_node": 4, "gpus": 4}) == (
        "8 (2 nodes x 4 per node, one per GPU)"
    )
    assert distributed.describe({"nodes": 1, "nproc_per_node": 2, "gpus": None}) == (
        "2 on one node"
    )


def test_instance_types_are_checked_against_describe_instance_types():
    moto = pytest.importorskip("moto")
    import boto3

    with moto.mock_aws():
        ec2 = boto3.client("ec2", region_name="us-east-1")
        types = {
            t["InstanceType"]: t
            for t in ec2.describe_instance_types(
                InstanceTypes=["p4d.24xlarge", "g5.xlarge", "t3.micro"]
            )["InstanceTypes"]
        }
    p4d = distributed.check_instance_type({"nproc_per_node": 1, "nodes": 2, "gpus": "all"}, types["p4d.24xlarge"])  # fmt: skip
    assert (p4d["gpus"], p4d["nproc_per_node"], p4d["efa"]) == (8, 8, True)
    with pytest.raises(RunctlError, match=r"--gpus 4: g5.xlarge has 1 GPU"):
        distributed.check_instance_type({"nproc_per_node": 4, "nodes": 1, "gpus": 4}, types["g5.xlarge"])  # fmt: skip
    with pytest.raises(RunctlError, match=r"t3.micro has no GPU; use --nproc-per-node"):
        distributed.check_instance_type({"nproc_per_node": 1, "nodes": 1, "gpus": 1}, types["t3.micro"])  # fmt: skip
    with pytest.raises(
        RunctlError, match=r"t3.micro cannot be placed in a cluster placement group"
    ):
        distributed.check_instance_type({"nproc_per_node": 2, "nodes": 2, "gpus": None}, types["t3.micro"])  # fmt: skip
    with pytest.raises(RunctlError, match=r"does not support it"):
        distributed.check_instance_type({"nproc_per_node": 1, "nodes": 2, "gpus": None, "efa": True}, types["g5.xlarge"])  # fmt: skip


def test_a_multi_node_agent_without_its_rendezvous_fails_cleanly(tmp_path):
    run_dir = make_run_dir(
        tmp_path, "pass", distributed={"nproc_per_node": 1, "nodes": 2, "gpus": None}
    )
    env = {k: v for k, v in agent_env().items() if not k.startswith("RUNCTL_")}
    subprocess.run(
        [sys.executable, "-m", "runctl_jupyter.agent", str(run_dir), "--attempt", "1"],
        env=env,
        timeout=60,
        capture_output=True,
    )
    final = next(e for e in events_of(run_dir) if e["type"] == "exit")
    assert final["status"] == "failed"
    assert "RUNCTL_RDZV_ENDPOINT" in final["error"]["message"]


# -- the example notebook ----------------------------------------------------------------
@needs_torch
def test_the_ddp_example_notebook_runs_end_to_end(home, tmp_path):
    pytest.importorskip("sklearn")
    import nbformat
    from nbclient import NotebookClient

    examples = Path(__file__).resolve().parent.parent / "examples"
    nb = nbformat.read(str(examples / "05_ddp.ipynb"), as_version=4)
    os.environ["RUNCTL_HOME"] = str(home)  # the kernel inherits it (monkeypatched by `home`)
    NotebookClient(
        nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(examples)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    text += "".join(
        o.data.get("text/plain", "")
        for o in outputs
        if o.output_type in ("display_data", "execute_result")
    )
    assert "[rank0]: rank 0 of 2: 674 examples" in text
    assert "[rank1]: rank 1 of 2: 673 examples" in text
    assert "'shard_loss/rank1'" in text and "'val_acc'" in text


def test_the_ddp_example_notebook_is_committed_without_outputs():
    path = Path(__file__).resolve().parent.parent / "examples" / "05_ddp.ipynb"
    nb = json.loads(path.read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
