"""`SchedulerBase`: what the scheduler's parts (launching.py, judging.py) read of the
`Scheduler` (scheduler.py), declared for the type checker. The attributes are set in
`Scheduler.__init__`, the methods defined there; at run time this class is empty."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    from ..cost.sweep_budget import SweepBudget
    from ..runs.control import RunControl
    from ..store import Store
    from .instances import InstancePool
    from .pruning import Pruner
    from .record import SweepState
    from .space import OptunaSearch


class SchedulerBase:
    if TYPE_CHECKING:
        dir: Path
        state: SweepState
        spec: dict[str, Any]
        session: RunControl
        store: Store
        instances: InstancePool
        specs: dict[str, dict[str, Any]]
        metric: str | None
        mode: str
        max_parallel: int
        objects: bytes | None
        environment: dict[str, Any]
        code: str | None
        failures: int
        halt: tuple[str, str] | None
        warned_objective: bool
        finished_histories: dict[int, list[Any]]
        pending: list[int]
        pruned: set[int]
        pruner: Pruner | None
        search: OptunaSearch | None
        launcher: ThreadPoolExecutor
        launches: dict[Any, tuple[int, str]]
        started: set[str]
        budget: SweepBudget
        spent: float

        def log(self, **record: Any) -> None: ...
        def warn(self, message: str) -> None: ...
        def _running(self) -> list[dict[str, Any]]: ...
        def _has_more(self) -> bool: ...
        def _check_budget(self, now: bool = False) -> None: ...
        def _stop_run(self, run_id: str, reason: str) -> None: ...
