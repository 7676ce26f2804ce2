"""Distributed runs ending (issue 21): ranks exit without SIGABRT run after run, and a
rank that does die by a signal leaves its last lines and its stacks in the record."""

from __future__ import annotations

import json
import time

import pytest
from agent_helpers import wait_for

from runctl_jupyter.agent.torchrun import rank_output
from runctl_jupyter.errors import RunctlError


def test_a_rank_killed_by_sigabrt_leaves_its_last_lines_and_stack_in_the_record(session):
    # issue 21: the next abort explains itself (faulthandler in every rank, the rank's own files)
    code = """
import os, time, torch, torch.distributed as dist
dist.init_process_group("gloo")
t = torch.zeros(1)
dist.all_reduce(t)
if runctl.rank == 1:
    print("last words of rank 1", flush=True)
    os.abort()
while True:
    dist.all_reduce(t)
    time.sleep(0.02)
"""
    run = session.train(code=code, options={"nproc_per_node": 2}, detach=True)

    def ended() -> bool:
        session.store.refresh(run.id)
        return run.row["status"] in ("failed", "succeeded", "stopped", "lost")

    wait_for(ended, timeout=60)
    error = run.row["error"]
    assert error["message"].startswith("rank 1 was killed by SIGABRT"), error
    assert "last words of rank 1" in error["output"], error
    assert "Fatal Python error: Aborted" in error["output"], error
    assert 'File "' in error["output"], error  # the Python stack of each thread
    shown = str(session.show(run.id))
    assert "last words of rank 1" in shown and "Fatal Python error: Aborted" in shown, shown
    with pytest.raises(RunctlError, match="rank 1 was killed by SIGABRT"):
        session.wait(run, quiet=True)


# The job, ending as a quick script does: the last collectives are still in
# gloo's worker threads when the rank exits (un-waited async all_reduce widens the window).
EXIT_RACE_CELL = """
import torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
dist.init_process_group("gloo")
model = DDP(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(20):
    loss = ((model(torch.randn(8, 4)) - torch.randn(8, 1)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    runctl.log(step=step, loss=loss.item())
t = torch.ones(1)
for _ in range(4):
    dist.all_reduce(t, async_op=True)
dist.destroy_process_group()
"""


def test_ddp_ranks_exit_without_sigabrt_run_after_run(session):
    # issue 21: a gloo worker thread destroying the last work while Python finalizes
    # aborted the rank ("terminate called without an active exception")
    runs = [
        session.train(code=EXIT_RACE_CELL, options={"nproc_per_node": 2}, detach=True)
        for _ in range(RACE_RUNS)
    ]

    def ended() -> bool:
        for run in runs:
            session.store.refresh(run.id)
        return all(r.row["status"] in ("failed", "succeeded", "stopped", "lost") for r in runs)

    wait_for(ended, timeout=150)
    failed = [(r.id, r.row["error"]) for r in runs if r.row["status"] != "succeeded"]
    assert not failed, failed


RACE_RUNS = 8


TORCHRUN_REPORT = """torch.distributed.elastic.multiprocessing.errors.ChildFailedError:
============================================================
runner FAILED
------------------------------------------------------------
Failures:
[1]:
  time      : 2026-12-05_21:40:00
  host      : vm
  rank      : 1 (local_rank: 1)
  exitcode  : 1 (pid: 1201)
------------------------------------------------------------
Root Cause (first observed failure):
[0]:
  time      : 2026-12-05_21:40:00
  host      : vm
  rank      : 0 (local_rank: 0)
  exitcode  : 1 (pid: 1200)
============================================================
"""
PEER_GONE = {
    "type": "RuntimeError",
    "message": "[gloo/transport/tcp/pair.cc:553] Connection closed by peer [127.0.0.1]:15245. "
    "This is typically caused by a remote worker crashing.",
    "traceback": "",
}


def test_the_rank_that_raised_is_the_cause_not_the_peer_that_saw_it_go(tmp_path):
    # torchrun may observe the rank whose peer died before the rank that raised
    import json
    import os

    from runctl_jupyter.agent.torchrun import write_error

    (tmp_path / "stdout.log").write_text(TORCHRUN_REPORT)
    (tmp_path / "error-1-rank0.json").write_text(json.dumps(PEER_GONE))
    own = {"type": "ValueError", "message": "bad shard on this rank", "traceback": "tb"}
    (tmp_path / "error-1-rank1.json").write_text(json.dumps(own))
    os.utime(tmp_path / "error-1-rank0.json", (1, 1))  # the peer's file even came first
    write_error(tmp_path, 1)
    error = json.loads((tmp_path / "error-1.json").read_text())
    assert error["rank"] == 1 and error["message"] == "rank 1: bad shard on this rank"


def test_a_peer_gone_error_stays_the_cause_when_no_rank_raised_anything_else(tmp_path):
    import json

    from runctl_jupyter.agent.torchrun import write_error

    (tmp_path / "stdout.log").write_text(TORCHRUN_REPORT)
    (tmp_path / "error-1-rank0.json").write_text(json.dumps(PEER_GONE))
    write_error(tmp_path, 1)
    error = json.loads((tmp_path / "error-1.json").read_text())
    assert error["rank"] == 0 and "Connection closed by peer" in error["message"]


def test_a_ranks_last_lines_come_from_its_own_node(tmp_path):
    """Global rank 3 of a 2-node x 2-process run is node 1's local rank 1: its lines,
    not node 0's local rank 1 (whose files may be newer)."""
    (tmp_path / "spec.json").write_text(json.dumps({"distributed": {"nproc_per_node": 2}}))
    for node in (1, 0):  # node 0's files written last: the newest
        folder = tmp_path / "ranks" / f"attempt-1-node-{node}" / "run_x" / "attempt_0" / "1"
        folder.mkdir(parents=True)
        (folder / "stderr.log").write_text(f"node {node} local 1 speaking\n")
        time.sleep(0.01)
    assert "node 1 local 1 speaking" in rank_output(tmp_path, 1, 3)
    assert "node 0 local 1 speaking" in rank_output(tmp_path, 1, 1)
    assert rank_output(tmp_path, 1, 5) == ""  # node 2: no files here
