"""Distributed runs: the plan. How many processes a run starts (`--nproc-per-node`,
`--gpus`, `--nodes`, `--efa`), refused before anything is written when it cannot work,
and the facts readers show. See docs/distributed.md.

    %%runctl train --nproc-per-node 2      # 2 processes (CPU: gloo; GPU: one each)
    %%runctl train --gpus all              # one process per GPU of the machine

The plan lives in spec.json as `"distributed"`:

    {"nproc_per_node": 2, "nodes": 1, "gpus": null}

Stdlib only: the agent reads it next to the code. The agent starts the ranks under
torchrun with agent/torchrun.py.
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from .errors import RunctlError

OPTIONS = ("gpus", "nproc_per_node", "nodes", "efa")


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
