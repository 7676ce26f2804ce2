"""Distributed runs: the code runs under torchrun, one runner per rank.

    %%runctl train --nproc-per-node 2      # 2 processes (CPU: gloo; GPU: one each)
    %%runctl train --gpus all              # one process per GPU of the machine

We do not write a launcher: PyTorch's `torchrun` (torch.distributed.run) is the
engine. This module decides how many processes to start (and refuses what cannot
work, before anything is written), builds the torchrun command the agent starts
instead of the plain runner, and turns torchrun's failure report into the run's
error. See docs/distributed.md.

The plan lives in spec.json as `"distributed"`:

    {"nproc_per_node": 2, "nodes": 1, "gpus": null}

Stdlib only: the agent imports it next to the code (locally or on EC2). Run as
`python -m runctl_jupyter.distributed RUN_DIR` it is one rank's process (what
torchrun starts): it dies with torchrun, then runs the runner.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import re
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import RunctlError

OPTIONS = ("gpus", "nproc_per_node", "nodes", "efa")
LINE_PREFIX = "[rank${rank}]: "  # torchrun's TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE
RANK_LINE = re.compile(r"^\[rank(\d+)\]: ?")
RANKS_FOLDER = "ranks"
PR_SET_PDEATHSIG = 1


class StartError(RunctlError, OSError):
    """The agent cannot start the ranks (an OSError, so the run fails cleanly)."""


_REPORT = "Root Cause (first observed failure):"
_FAILURE = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")


# -- the plan: how many processes, checked before launch --------------------------------
def plan(
    options: Mapping[str, Any], backend: str, gpu_count: Callable[[], int] | None = None
) -> dict | None:
    """The run's distributed plan from its options (`gpus`, `nproc_per_node`,
    `nodes`), or None for a plain one-process run. Raises RunctlError for what
    cannot work: GPUs where there are none, more GPUs than the machine has,
    `--nodes` > 1 on the local backend. `gpu_count` counts this machine's GPUs
    (default: nvidia-smi); AWS runs are checked against the instance type with
    `check_instance_type`."""
    gpus = options.get("gpus")
    nproc = options.get("nproc_per_node")
    nodes = options.get("nodes")
    efa = bool(options.get("efa"))
    if gpus is None and nproc is None and nodes is None and not efa:
        return None
    nodes = int(nodes or 1)
    if efa and nodes < 2:
        raise RunctlError(
            "--efa is the fast network between the nodes of a multi-node run: "
            "add --nodes M (M >= 2) with --backend aws, or drop --efa"
        )
    if backend == "local":
        if nodes > 1:
            raise RunctlError(
                f"--nodes {nodes} needs {nodes} machines, and the local backend has one: "
                "use --backend aws for several nodes, or --nproc-per-node N for N processes here"
            )
        if gpus is not None:
            have = (gpu_count or local_gpu_count)()
            gpus = _check_gpus(gpus, have, "this machine")
    elif backend != "aws":
        raise RunctlError(
            f"--gpus, --nproc-per-node and --nodes are not available on --backend {backend}: "
            "run it with --backend local or aws, or drop them"
        )
    if gpus is not None and nproc is not None and int(nproc) != gpus:
        raise RunctlError(
            f"--gpus {gpus} already starts one process per GPU; --nproc-per-node {nproc} "
            "asks for another count: give one of them"
        )
    if backend == "local" and importlib.util.find_spec("torch") is None:
        raise RunctlError(
            "--gpus/--nproc-per-node run the code under torchrun, which comes with PyTorch: "
            "pip install torch (or runctl-jupyter[dist]), then run it again"
        )
    per_node = int(gpus if gpus is not None and gpus != "all" else nproc or 1)
    done = {"nproc_per_node": per_node, "nodes": nodes, "gpus": gpus}
    if efa:
        done["efa"] = True
    return done


def process_count(plan: Mapping[str, Any] | None) -> int:
    """How many processes (ranks) a run has: nodes x processes per node."""
    if not plan:
        return 1
    return int(plan.get("nodes") or 1) * int(plan.get("nproc_per_node") or 1)


def describe(plan: Mapping[str, Any] | None) -> str | None:
    """The process count for summaries (`show`, the record): nodes x processes per node."""
    if not plan:
        return None
    nodes, per = int(plan.get("nodes") or 1), int(plan.get("nproc_per_node") or 1)
    each = ", one per GPU" if plan.get("gpus") is not None else ""
    if nodes > 1:
        return f"{nodes * per} ({nodes} nodes x {per} per node{each})"
    return f"{per} on one node{each}"


def _check_gpus(asked: int | str, have: int, where: str) -> int:
    if have == 0:
        raise RunctlError(
            f"--gpus {asked}: {where} has no GPU; use --nproc-per-node N to run N CPU "
            "processes (gloo), or a GPU instance type (--backend aws --instance-type g5.xlarge)"
        )
    if asked == "all":
        return have
    if int(asked) > have:
        raise RunctlError(
            f"--gpus {asked}: {where} has {have} GPU{'s' if have != 1 else ''}; "
            f"ask for --gpus {have} (or all), or a bigger instance type"
        )
    return int(asked)


def local_gpu_count() -> int:
    """GPUs on this machine, from nvidia-smi (0 without an NVIDIA driver)."""
    from .environment import gpus

    return len(gpus())


def check_instance_type(plan: dict, instance_type: Mapping[str, Any]) -> dict:
    """Check (and complete) a plan against one EC2 instance type, as
    `describe_instance_types` returns it: `--gpus all` becomes the type's GPU
    count, `--gpus N` must fit, `--nodes` > 1 needs cluster placement group
    support; `efa` says whether the type supports EFA (enabled when it does)."""
    name = instance_type.get("InstanceType", "this instance type")
    done = dict(plan)
    if plan.get("gpus") is not None:
        have = sum(int(g.get("Count", 0)) for g in instance_type.get("GpuInfo", {}).get("Gpus", []))
        done["gpus"] = _check_gpus(plan["gpus"], have, name)
        done["nproc_per_node"] = done["gpus"]
    strategies = instance_type.get("PlacementGroupInfo", {}).get("SupportedStrategies", [])
    if int(plan.get("nodes") or 1) > 1 and "cluster" not in strategies:
        raise RunctlError(
            f"--nodes {plan['nodes']}: {name} cannot be placed in a cluster placement group; "
            "choose a type that can (e.g. p4d.24xlarge, g5.12xlarge) or use --nodes 1"
        )
    done["efa"] = bool(instance_type.get("NetworkInfo", {}).get("EfaSupported"))
    if plan.get("efa") and not done["efa"]:
        raise RunctlError(
            f"EFA was asked for, but {name} does not support it; choose an EFA type "
            "(e.g. p4d.24xlarge) or drop the request"
        )
    return done


# -- the agent side: the command, metric lines, the failure ------------------------------
def node_rank(environ: Mapping[str, str] | None = None) -> int:
    """This machine's node rank in a multi-node run (RUNCTL_NODE_RANK), 0 otherwise."""
    env = os.environ if environ is None else environ
    try:
        return max(int(env.get("RUNCTL_NODE_RANK") or 0), 0)
    except ValueError:
        return 0


def node_folder(environ: Mapping[str, str] | None = None) -> str:
    """Where a node other than node 0 keeps its own events and logs, under the run's S3
    prefix (`nodes/<rank>/`): node 0's are the run's, the notebook side never reads these."""
    rank = node_rank(environ)
    return f"nodes/{rank}/" if rank else ""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def launch_command(
    plan: dict,
    python: str,
    run_dir: Path,
    attempt: int,
    run_id: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The torchrun command the agent starts instead of the plain runner, and the
    environment it adds. One node: a c10d rendezvous on a free port of 127.0.0.1
    (port 0: torchrun's store picks it).
    Several nodes: every node's agent gets `RUNCTL_RDZV_ENDPOINT` (node 0's
    address:port) and `RUNCTL_NODE_RANK` in its environment. Node 0 hosts the
    rendezvous, and ranks follow node order (node K holds ranks K*N .. K*N+N-1),
    so rank 0, whose metrics and checkpoints are the run's, is always on node 0:
    torchrun's static rendezvous. (Its c10d rendezvous ranks nodes by host name
    and pid, which would put rank 0 on any node.)"""
    env = os.environ if environ is None else environ
    nodes = int(plan.get("nodes") or 1)
    if nodes > 1:
        endpoint = env.get("RUNCTL_RDZV_ENDPOINT") or plan.get("rdzv_endpoint")
        node_rank = env.get("RUNCTL_NODE_RANK", plan.get("node_rank"))
        if not endpoint or node_rank is None:
            raise StartError(
                f"a {nodes}-node run needs RUNCTL_RDZV_ENDPOINT (node 0's host:port) and "
                "RUNCTL_NODE_RANK on every node: start it with --backend aws"
            )
        host, _, port = str(endpoint).rpartition(":")
        node_rank = int(node_rank)
        rendezvous = ["--node-rank", str(node_rank), "--master-addr", host, "--master-port", port]
    else:
        node_rank = 0
        rendezvous = [
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            "127.0.0.1:0",  # torchrun's store binds a free port itself: no race with other runs
            "--rdzv-id",
            f"{run_id}-{attempt}",
            "--rdzv-conf",
            "is_host=true",
        ]
    argv = [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(nodes),
        "--nproc-per-node",
        str(int(plan["nproc_per_node"])),
        *rendezvous,
        "--max-restarts",
        "0",
        "--tee",
        "3",  # every rank's stdout and stderr: to a file of its own, and to us
        "--log-dir",
        str(Path(run_dir) / RANKS_FOLDER / f"attempt-{attempt}-node-{node_rank}"),
        "-m",
        "runctl_jupyter.distributed",
        str(run_dir),
    ]
    extra = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": LINE_PREFIX}
    if int(plan["nproc_per_node"]) > 1 and "OMP_NUM_THREADS" not in env:
        extra["OMP_NUM_THREADS"] = "1"  # what torchrun sets then, without its banner in the log
    return argv, extra


class MainRankLines:
    """`--metrics` parsing for a distributed run: only rank 0's printed lines count
    (every rank prints the same `loss=...`), read without their `[rank0]: ` prefix."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.names = parser.names

    def parse(self, line: str) -> dict | None:
        m = RANK_LINE.match(line)
        if m is None or m.group(1) != "0":
            return None
        return self.parser.parse(line[m.end() :])


def _log_tail(run_dir: Path, size: int = 256 << 10) -> str:
    try:
        with open(Path(run_dir) / "stdout.log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stopped_code(returncode: int, run_dir: Path) -> int:
    """torchrun exits 1 when the SIGTERM of a stop (or a spot notice) ends it: that is
    -SIGTERM, as for a plain runner; any other exit stays what it was."""
    if returncode != 1:
        return returncode
    tail = _log_tail(run_dir, 16 << 10)
    if f"got signal: {int(signal.SIGTERM)}" in tail and "SignalException" in tail:
        return -signal.SIGTERM
    return returncode


def root_cause(text: str) -> tuple[int, int] | None:
    """(rank, exit code) of the rank that failed first, from torchrun's last failure
    report. A rank killed by a signal (other than the SIGTERM torchrun sends the
    rest) wins over ranks that raised: when one rank dies, its peers fail too
    ("Connection closed by peer"), sometimes in the same instant torchrun notices."""
    start = text.rfind("ChildFailedError")
    if start < 0:
        return None
    report = text[start:]
    failures = [(int(r), int(c)) for r, c in _FAILURE.findall(report)]
    if not failures:
        return None
    # SIGTERM is torchrun's own "stop" to the ranks that were still running
    killed = [f for f in failures if f[1] < 0 and f[1] != -signal.SIGTERM]
    if killed:
        return killed[0]
    cause = report.find(_REPORT)
    first = _FAILURE.search(report, cause) if cause >= 0 else None
    return (int(first.group(1)), int(first.group(2))) if first else failures[0]


def write_error(run_dir: Path, attempt: int) -> None:
    """Leave the failed rank's error as the attempt's `error-<attempt>.json`: that
    rank's own exception when it raised one, `rank N was killed by SIGKILL` when a
    signal ended it (torchrun's report, read from the end of stdout.log)."""
    run_dir = Path(run_dir)
    target = run_dir / f"error-{attempt}.json"
    if target.exists():
        return
    cause = root_cause(_log_tail(run_dir))
    files = sorted(run_dir.glob(f"error-{attempt}-rank*.json"), key=lambda p: p.stat().st_mtime)
    error = None
    if cause is not None:
        rank, code = cause
        own = run_dir / f"error-{attempt}-rank{rank}.json"
        if own.exists():
            error = json.loads(own.read_text())
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            error = {
                "type": name,
                "message": f"rank {rank} was killed by {name}; the other ranks were stopped",
                "traceback": "",
            }
        else:
            error = {
                "type": "ExitCode",
                "message": f"rank {rank} exited with status {code}; the other ranks were stopped",
                "traceback": "",
            }
        error["rank"] = rank
    elif files:  # no report (torchrun itself was killed): the first rank that raised
        error = json.loads(files[0].read_text())
        error["rank"] = int(files[0].stem.rsplit("rank", 1)[1])
    if error is not None:
        if not error["message"].startswith("rank "):
            error["message"] = f"rank {error['rank']}: {error['message']}"
        target.write_text(json.dumps(error))


# -- one rank's process ------------------------------------------------------------------
def _die_with_torchrun() -> None:
    """torchrun starts each rank in a session of its own: a SIGKILLed torchrun (a
    forced stop) must not leave ranks training unseen."""
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: torchrun still stops its ranks on SIGTERM
        return
    if os.getppid() != parent:  # torchrun died before the prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> int:
    _die_with_torchrun()
    from .runner import main as run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
