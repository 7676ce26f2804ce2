"""`Sweep`, the handle `Session.sweep` returns: wait, stop, best, trials, run ids.

It holds only the sweep's folder: the scheduler process owns the sweep, so every
read goes to the folder and the store, never to a copy that could be stale.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..display.text import sweep_line
from .record import SweepState, request_stop
from .results import trial_rows
from .watch import watch

if TYPE_CHECKING:
    from ..runs.control import RunControl


class Sweep:
    """A handle on one sweep; reads its folder and the store, so it is never stale."""

    def __init__(self, session: RunControl, sweep_dir: Path) -> None:
        self.session = session
        self.dir = Path(sweep_dir)
        self.id = self.dir.name

    @property
    def state(self) -> SweepState:
        return SweepState(self.dir)

    @property
    def status(self) -> str:
        return self.state.display_status()

    @property
    def best(self) -> dict[str, Any] | None:
        """The best trial: {index, params, run_id, objective, ...} (None before any)."""
        return self.state.best()

    @property
    def objective(self) -> str | None:
        """`METRIC:max|min`, as `compare(..., objective=...)` takes it (None without one)."""
        obj = self.state.spec.get("objective")
        return f"{obj['metric']}:{obj['mode']}" if obj else None

    def run_ids(self) -> list[str]:
        """The trials' run ids, in trial order (what `compare --sweep` compares)."""
        return [t["run_id"] for t in self.state.trials if t.get("run_id")]

    def trials(self) -> list[dict[str, Any]]:
        """One dict a trial: index, run, status, params, objective, current, step, ..."""
        return trial_rows(self.session, self.state)

    def wait(self) -> Sweep:
        return watch(self.session, self)

    def stop(self) -> Sweep:
        """Stop the sweep: running trials stop, queued ones wait for --resume."""
        request_stop(self.dir)
        return self

    def __repr__(self) -> str:
        return sweep_line(self.state)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))
