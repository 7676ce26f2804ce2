"""Early stopping (`--early-stop`): when a run's metric has stopped improving.

The agent shows `EarlyStop` every metric, printed or logged; when patience runs
out it writes a `warning` (code `early-stop`) and stops the run with reason
`early-stop`, and the `exit` event carries the details (`early_stop`).
"""

from __future__ import annotations

from ..events import lower_is_better


class EarlyStop:
    """`--early-stop val_loss:min,patience=10[,min_delta=0.001][,warmup=5]`: the run is
    stopped when `metric` has not improved by more than `min_delta` for `patience`
    consecutive values, counting from step `warmup` on. No metric given: the first
    of the run's `--metrics`, else the first metric it logs; no mode: `min` for
    loss-like names (loss, err, mse, ...), else `max`."""

    def __init__(self, config: dict, metrics: list[str]):
        self.metric = config.get("metric") or (metrics[0] if metrics else None)
        self.mode = config.get("mode")
        self.patience = max(1, int(config.get("patience") or 10))
        self.min_delta = abs(float(config.get("min_delta") or 0.0))
        self.warmup = int(config.get("warmup") or 0)
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0

    def observe(self, step: int | None, values: dict) -> dict | None:
        """Take one metric event; the stop's details when patience ran out, else None."""
        if self.metric is None:
            self.metric = next(iter(values), None)
        value = values.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return None
        if isinstance(step, int) and step < self.warmup:
            return None
        if self.mode is None and self.metric is not None:
            name = self.metric.lower()
            self.mode = "min" if lower_is_better(name) else "max"
        if self.best is None or (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        ):
            self.best, self.best_step, self.bad = float(value), step, 0
            return None
        self.bad += 1
        if self.bad < self.patience:
            return None
        return {
            "metric": self.metric,
            "mode": self.mode,
            "step": step,
            "best": self.best,
            "best_step": self.best_step,
            "patience": self.patience,
        }


def early_stop_warning(detail: dict) -> str:
    """The text of the `warning` that says why the run is stopped early."""
    return (
        f"early stop at step {detail['step']}: {detail['metric']} did not improve on "
        f"{detail['best']:.6g} (step {detail['best_step']}) for {detail['patience']} values"
    )
