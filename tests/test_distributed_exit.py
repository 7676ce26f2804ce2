"""Distributed runs ending (issue 21): ranks exit without SIGABRT run after run, and a
rank that does die by a signal leaves its last lines and its stacks in the record."""

from __future__ import annotations

import pytest
from agent_helpers import wait_for

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
