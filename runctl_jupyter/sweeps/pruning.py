"""Stopping trials that lag the others (`--prune median|asha`), for grid and random sweeps.

Both look at the objective metric's history of every trial ({step: value}),
as the store has it. A trial's value at step s is its best value up to s.

- median: once `min_trials` trials have finished, a running trial whose value at
  its latest step is worse than the median of the finished trials' values at that
  step is pruned (after `warmup_steps`).
- asha (asynchronous successive halving): rungs at steps min_step * eta**k. When a
  trial reaches a rung it goes on only if its value there is in the top 1/eta of
  every trial that reached that rung so far (the first eta - 1 to arrive must be
  the best so far), else it is pruned. A trial is judged once per rung.

With --search optuna the same choices use optuna's own pruners (space.OptunaSearch).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping

__all__ = ["Pruner", "value_at"]

History = list[tuple[int, float]]


def value_at(history: History, step: int, mode: str) -> float | None:
    """The best value of a history up to `step` (None if it has none there)."""
    best = None
    for s, v in history:
        if s > step:
            break
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        if best is None or (v > best if mode == "max" else v < best):
            best = v
    return best


def _last_step(history: History) -> int | None:
    return history[-1][0] if history else None


class Pruner:
    def __init__(
        self,
        kind: str,
        mode: str,
        *,
        min_trials: int = 3,
        warmup_steps: int = 1,
        eta: int = 3,
        min_step: int = 1,
    ):
        if kind not in ("median", "asha"):
            raise ValueError(f"unknown pruner {kind!r}")
        self.kind = kind
        self.mode = mode
        self.min_trials = min_trials
        self.warmup_steps = warmup_steps
        self.eta = eta
        self.min_step = min_step
        self._judged: dict[int, int] = {}  # trial index -> highest rung judged (asha)

    def _worse(self, a: float, b: float) -> bool:
        return a < b if self.mode == "max" else a > b

    def check(
        self,
        index: int,
        history: History,
        finished: Mapping[int, History],
        running: Mapping[int, History],
    ) -> str | None:
        """A reason to prune trial `index` now (text for the record), or None."""
        if not history:
            return None
        if self.kind == "median":
            return self._median(history, finished)
        return self._asha(index, history, {**finished, **running, index: history})

    def _median(self, history: History, finished: Mapping[int, History]) -> str | None:
        step = _last_step(history)
        if step is None or step < self.warmup_steps:
            return None
        mine = value_at(history, step, self.mode)
        values = [value_at(h, step, self.mode) for h in finished.values()]
        others = [v for v in values if v is not None]
        if mine is None or len(others) < self.min_trials:
            return None
        median = statistics.median(others)
        if self._worse(mine, median):
            return f"at step {step} its best {mine:.6g} is worse than the median {median:.6g} of {len(others)} finished trials"
        return None

    def rungs(self, up_to: int) -> list[int]:
        out, r = [], self.min_step
        while r <= up_to:
            out.append(r)
            r *= self.eta
        return out

    def _asha(self, index: int, history: History, everyone: Mapping[int, History]) -> str | None:
        step = _last_step(history)
        if step is None:
            return None
        for rung in self.rungs(step):
            if self._judged.get(index, -1) >= rung:
                continue
            self._judged[index] = rung
            mine = value_at(history, rung, self.mode)
            if mine is None:
                continue
            competing = []
            for h in everyone.values():
                last = _last_step(h)
                if last is not None and last >= rung:
                    v = value_at(h, rung, self.mode)
                    if v is not None:
                        competing.append(v)
            keep = max(len(competing) // self.eta, 1)
            competing.sort(reverse=self.mode == "max")
            cutoff = competing[keep - 1]
            if self._worse(mine, cutoff):
                return (
                    f"at rung step {rung} its {mine:.6g} is not in the top {keep} of "
                    f"{len(competing)} trials (cutoff {cutoff:.6g})"
                )
        return None
