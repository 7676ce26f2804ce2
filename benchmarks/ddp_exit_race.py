"""Issue 21's count: the issue's 2-rank CPU DDP job, N times under plain `torchrun`
and N times under `runctl train`, alternating (so the machine's load falls on both
alike), and how many runs ended with a rank killed by a signal (SIGABRT).

    python -m benchmarks.ddp_exit_race --runs 100 [--out benchmarks/.work/ddp_exit_race.json]

Not a benchmark of speed and not a test (the suite's bounded stress test is
tests/test_distributed_exit.py); the evidence behind docs/distributed.md's counts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, WORK

# the job: DDP(nn.Linear(4, 1)), SGD, 20 steps, a metric every step, destroy at the end
JOB = """\
import os, torch, torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from runctl_jupyter.runtime import runctl
dist.init_process_group("gloo")
torch.manual_seed(0)
model = DDP(torch.nn.Linear(4, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(20):
    loss = ((model(torch.randn(8, 4)) - torch.randn(8, 1)) ** 2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
    runctl.log(step=step, loss=loss.item())   # outside a run it prints
dist.destroy_process_group()
"""
_SIGNALLED = re.compile(r"SIGABRT|Signal 6|terminate called|exitcode\s*:\s*-\d+|killed by SIG")


def _one(mode: str, script: Path, home: Path) -> dict:
    env = dict(os.environ, RUNCTL_HOME=str(home), OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    if mode == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", str(script)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "runctl_jupyter",
            "train",
            str(script),
            "--nproc-per-node",
            "2",
        ]
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    text = out.stdout + out.stderr
    signalled = bool(_SIGNALLED.search(text))
    return {
        "mode": mode,
        "rc": out.returncode,
        "seconds": round(time.monotonic() - start, 2),
        "signalled": signalled,
        "tail": text[-600:] if out.returncode or signalled else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.ddp_exit_race")
    ap.add_argument("--runs", type=int, default=100, help="runs per mode")
    ap.add_argument("--out", type=Path, default=WORK / "ddp_exit_race.json")
    args = ap.parse_args(argv)
    results: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "ddp_job.py"
        script.write_text(JOB)
        for i in range(args.runs):
            for mode in ("torchrun", "runctl"):
                # the home outlives the script: a failed run's folder can be read afterwards
                results.append(_one(mode, script, WORK / "ddp_exit_race_home"))
            done = results[-2:]
            print(
                f"{i + 1}/{args.runs}", *(f"{r['mode']} rc={r['rc']} {r['seconds']}s" for r in done)
            )
    summary = {}
    for mode in ("torchrun", "runctl"):
        mine = [r for r in results if r["mode"] == mode]
        summary[mode] = {
            "runs": len(mine),
            "signalled": sum(r["signalled"] for r in mine),
            "failed": sum(r["rc"] != 0 for r in mine),
            "median_seconds": sorted(r["seconds"] for r in mine)[len(mine) // 2],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "runs": results}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
