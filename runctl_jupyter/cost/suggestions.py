"""Suggestions before a launch: each rule names a likely costly mistake, from what is
known before anything is created (the estimate, the options, the code's imports).

A rule returns its one line or None; `session.suggest(rule, line)` decides whether it
is shown (once per notebook per rule; `c.Runctl.suggestions = False` silences them
all, `c.Runctl.quiet_suggestions = ["gpu-unused"]` one). A rule never refuses a launch.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .prices import dollars, hourly

RULES = (
    "spot-savings",
    "spot-no-checkpoint",
    "gpu-unused",
    "parallel-over-budget",
    "big-grid",
    "kept-idle",
    "stage-data",
    "prewarm",
)
# imports that put a GPU to work (the top-level package name)
GPU_LIBRARIES = frozenset(
    "torch tensorflow keras jax jaxlib flax cupy cudf cuml mxnet paddle numba xgboost "
    "lightgbm catboost transformers accelerate lightning pytorch_lightning deepspeed vllm "
    "onnxruntime tensorrt triton".split()
)
CHECKPOINT_CALLS = ("save_checkpoint", "register_checkpoint")
LONG_RUN_HOURS = 10 / 60
BIG_GRID = 100


@dataclass
class Launch:
    """What is known about a launch before anything is created."""

    facts: dict | None  # price facts (cost/facts.py); None for a local run
    hours: float | None  # one run's expected duration
    trials: int = 1
    max_parallel: int | None = None  # as typed (None: not given)
    parallel: int = 1  # what the sweep will run at once
    code: str | None = None  # the cell, or the script's text
    workdir: Path | None = None
    options: dict = field(default_factory=dict)
    budget_left: float | None = None  # the monthly budget's rest, or the sweep's limit
    grid: bool = False


def imports(code: str, workdir: Path | None) -> tuple[set[str], bool] | None:
    """(top-level packages imported, whether a local module is among them), or None
    when the code does not parse."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    local = workdir is not None and any(
        (workdir / f"{n}.py").is_file() or (workdir / n / "__init__.py").is_file() for n in names
    )
    return names, local


def is_gpu_type(instance_type: str) -> bool:
    """EC2's accelerated computing families with NVIDIA GPUs: P and G (g4dn, g5, g6, p4d...)."""
    family = instance_type.split(".")[0]
    return family[:1] in ("g", "p") and not family.startswith("gr")


def spot_savings(launch: Launch, spot_rate: Callable[[], float | None], above: float) -> str | None:
    f = launch.facts
    if not f or f["spot"] or launch.hours is None or launch.options.get("instance"):
        return None
    spot = spot_rate()
    if spot is None:
        return None
    saved = (f["on_demand"] - spot) * launch.hours * launch.trials * int(f.get("nodes") or 1)
    if saved <= above:
        return None
    return (
        f"spot would save about {dollars(saved)} on this estimate ({f['instance_type']} spot "
        f"{hourly(spot)} vs on-demand {hourly(f['on_demand'])}); runs checkpoint and resume "
        "across interruptions: drop --on-demand"
    )


def spot_no_checkpoint(launch: Launch) -> str | None:
    f = launch.facts
    if not f or not f["spot"] or launch.hours is None or launch.hours <= LONG_RUN_HOURS:
        return None
    if launch.code is None or launch.options.get("checkpoint_every"):
        return None
    found = imports(launch.code, launch.workdir)
    if found is None or found[1] or any(call in launch.code for call in CHECKPOINT_CALLS):
        return None  # a local module may checkpoint: not ours to guess
    return (
        f"this spot run is expected to take {launch.hours * 60:.0f} minutes and the code never "
        "saves a checkpoint: a spot interruption would start it over; call "
        "runctl.save_checkpoint(state) (or runctl.register_checkpoint(fn) with --checkpoint-every)"
    )


def gpu_unused(launch: Launch) -> str | None:
    f = launch.facts
    if not f or launch.code is None or not is_gpu_type(f["instance_type"]):
        return None
    found = imports(launch.code, launch.workdir)
    if found is None or found[1] or found[0] & GPU_LIBRARIES:
        return None
    return (
        f"{f['instance_type']} is a GPU type ({hourly(f['rate'])}) but the code imports no GPU "
        "library (torch, tensorflow, jax, ...): a CPU type such as c5.xlarge costs less"
    )


def parallel_over_budget(launch: Launch) -> str | None:
    f = launch.facts
    if not f or launch.trials < 2 or launch.budget_left is None:
        return None
    per_hour = f["rate"] * launch.parallel * int(f.get("nodes") or 1)
    if per_hour <= launch.budget_left:
        return None
    return (
        f"{launch.parallel} trials at once cost {hourly(per_hour)}, more than the "
        f"{dollars(launch.budget_left)} of budget left: the budget stops the sweep within the "
        "hour; lower --max-parallel"
    )


def big_grid(launch: Launch) -> str | None:
    if not launch.grid or launch.trials <= BIG_GRID or launch.max_parallel is not None:
        return None
    return (
        f"this grid has {launch.trials} trials and no --max-parallel: they run "
        f"{launch.parallel} at a time; set --max-parallel N, or sample it: --random N --space ..."
    )


def stage_data(
    launch: Launch, data_bytes: Callable[[int], int | None], threshold_gb: float
) -> str | None:
    """A big `--data` prefix fetched from S3 again by every run: no volume keeps it."""
    o = launch.options
    if not launch.facts or not o.get("data") or o.get("volume") or threshold_gb <= 0:
        return None
    if o.get("data_size") and o.get("persistent"):
        return None
    threshold = int(threshold_gb * 1e9)
    size = data_bytes(threshold)
    if size is None or size <= threshold:
        return None
    need = max(1, math.ceil(size * 1.25 / (1 << 30)))  # GiB, with room to grow
    return (
        f"{o['data']} holds over {size / 1e9:.0f} GB, fetched from S3 again by every run: "
        f"stage it on a persistent volume: --data-size {need} --persistent (later runs "
        "reuse it with --volume NAME and fetch only what changed)"
    )


def prewarm_restored(launch: Launch, snapshot_of: Callable[[str], str | None]) -> str | None:
    """A `--volume` restored from a snapshot, without `--prewarm`: a slow first epoch."""
    o = launch.options
    if not launch.facts or o.get("prewarm") or not o.get("volume"):
        return None
    snapshot = snapshot_of(str(o["volume"]))
    if not snapshot:
        return None
    return (
        f"volume {o['volume']} was restored from {snapshot}: each block comes from S3 on its "
        "first read, so the first epoch crawls; --prewarm reads it once before training"
    )


@dataclass
class Lookups:
    """What some rules ask AWS, only when their other conditions hold."""

    spot_rate: Callable[[], float | None] = lambda: None
    data_bytes: Callable[[int], int | None] = lambda _cap: None  # the prefix's bytes, up to cap
    snapshot_of: Callable[[str], str | None] = lambda _volume: None


def launch_suggestions(
    launch: Launch,
    spot_rate: Callable[[], float | None],
    savings_above: float,
    lookups: Lookups | None = None,
    stage_threshold_gb: float = 0.0,
) -> list[tuple[str, str]]:
    """[(rule, line)] for this launch (the account-wide `kept-idle` is in runs/)."""
    lookups = lookups or Lookups()
    lines = {
        "spot-savings": spot_savings(launch, spot_rate, savings_above),
        "spot-no-checkpoint": spot_no_checkpoint(launch),
        "gpu-unused": gpu_unused(launch),
        "parallel-over-budget": parallel_over_budget(launch),
        "big-grid": big_grid(launch),
        "stage-data": stage_data(launch, lookups.data_bytes, stage_threshold_gb),
        "prewarm": prewarm_restored(launch, lookups.snapshot_of),
    }
    return [(rule, line) for rule, line in lines.items() if line]


def suggest(session: Any, launch: Launch) -> None:
    """Show this launch's suggestions through `session.suggest` (once per notebook)."""
    say = getattr(session, "suggest", None)
    if say is None or not getattr(session.config, "suggestions", True):
        return
    f = launch.facts

    def spot_rate() -> float | None:
        from .facts import session_prices

        if f is None:
            return None
        try:
            return session_prices(session).spot(f["instance_type"], f["region"]).usd_per_hour
        except Exception:  # noqa: BLE001 - no spot price: no suggestion
            return None

    above = float(getattr(session.config, "suggest_spot_savings_above", 1.0))
    threshold = float(getattr(session.config, "stage_threshold_gb", 0.0))
    lookups = Lookups(spot_rate, *_aws_lookups(session, launch.options))
    for rule, line in launch_suggestions(launch, spot_rate, above, lookups, threshold):
        say(rule, line)


def _aws_lookups(session: Any, options: dict) -> tuple[Callable, Callable]:
    """The `--data` prefix's size (listed until past the cap) and a volume's snapshot,
    with the launch's own clients; None when AWS does not answer (no suggestion)."""

    def clients() -> Any:
        return session.backend("aws").clients_for(options.get("region"))

    def data_bytes(cap: int) -> int | None:
        from ..agent.data import parse_s3_url

        try:
            bucket, prefix = parse_s3_url(str(options["data"]))
            total = 0
            pages = clients().s3.get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=bucket, Prefix=prefix):
                total += sum(int(o["Size"]) for o in page.get("Contents", []))
                if total > cap:
                    break
            return total
        except Exception:  # noqa: BLE001 - no listing: no suggestion (the launch's check says why)
            return None

    def snapshot_of(volume: str) -> str | None:
        if not volume.startswith("vol-"):
            return None
        try:
            vols = clients().ec2.describe_volumes(VolumeIds=[volume])["Volumes"]
        except Exception:  # noqa: BLE001 - the launch's own check says what is wrong
            return None
        return (vols[0].get("SnapshotId") or None) if vols else None

    return data_bytes, snapshot_of
