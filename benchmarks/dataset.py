"""The store benchmarks' data, generated the same way for runctl and for MLflow.

Stdlib only: the peer worker (mlflow's venv) imports it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

METRICS = ("loss", "acc", "lr")
LRS = (1e-4, 1e-3, 1e-2, 1e-1)
BATCHES = (32, 64, 128)
T0 = 1_764_000_000.0


@dataclass(frozen=True)
class Sizes:
    runs: int  # runs in the store (list/filter)
    hist_runs: int  # runs whose whole metric history is read
    steps: int  # steps of each of those runs
    experiments: int = 10
    short_steps: int = 3  # steps of every other run

    def key(self) -> str:
        return (
            f"r{self.runs}-h{self.hist_runs}x{self.steps}-e{self.experiments}-s{self.short_steps}"
        )


@dataclass(frozen=True)
class RunRow:
    index: int
    run_id: str
    name: str
    experiment: str
    status: str  # succeeded | failed | stopped
    params: dict
    created: float
    duration: float
    steps: int


def status_of(i: int) -> str:
    if i % 20 == 7:
        return "failed"
    if i % 50 == 11:
        return "stopped"
    return "succeeded"


def runs(sizes: Sizes) -> Iterator[RunRow]:
    for i in range(sizes.runs):
        yield RunRow(
            index=i,
            run_id=f"b{i:09x}",
            name=f"run-{i}",
            experiment=f"exp-{i % sizes.experiments}",
            status=status_of(i),
            params={"lr": LRS[i % 4], "batch_size": BATCHES[i % 3], "seed": i},
            created=T0 + 60.0 * i,
            duration=30.0 + i % 17,
            steps=sizes.steps if i < sizes.hist_runs else sizes.short_steps,
        )


def value(i: int, step: int, metric: str) -> float:
    loss = 1.0 / (1.0 + 0.01 * step) + 0.001 * (i % 7)
    if metric == "loss":
        return loss
    if metric == "acc":
        return 1.0 - loss / 2
    return LRS[i % 4] * 0.999**step


def point_time(row: RunRow, step: int) -> float:
    return row.created + 1.0 + row.duration * step / max(row.steps, 1)


# The filter both sides run: one experiment's failed runs.
FILTER_EXPERIMENT = "exp-7"
FILTER_STATUS = "failed"


def expected_filter_count(sizes: Sizes) -> int:
    return sum(
        1 for r in runs(sizes) if r.experiment == FILTER_EXPERIMENT and r.status == FILTER_STATUS
    )
