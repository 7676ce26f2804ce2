"""RunFeed: a run as its event stream tells it, for a live panel to draw.

Metric series (bounded, for drawing), the step and the total it counts to, the
recent step rate for an ETA, the last lines of output, warnings, and each metric's
subplot. `update()` is O(new events): it only appends to bounded series and deques.
"""

from __future__ import annotations

from collections import deque

from ._format import as_dict
from .series import MetricSeries

ETA_WINDOW = 30.0  # seconds of recent steps used for the step rate
MAX_GROUPS = 4


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


class RunFeed:
    """What a live panel knows of one run; `update()` takes the new events."""

    def __init__(self, run: dict, max_points: int = 2000, log_tail_lines: int = 30):
        self.run = dict(run)
        self.max_points = max_points
        self.series: dict[str, MetricSeries] = {}
        self.log_tail: deque[tuple[str, str]] = deque(maxlen=max(1, log_tail_lines))
        self.warnings: deque[str] = deque(maxlen=3)
        self.debugger: dict | None = None  # the last `debugger` event (train --debug)
        self.phase: str | None = None  # what the run does before its code starts (--prewarm)
        self.phase_fraction: float | None = None
        self.step: int | None = None
        self.total: int | None = self._initial_total(self.run)
        self._total_logged = False
        self._total_from_params = self.total is not None
        self._rate: deque[tuple[float, int]] = deque()
        self._last_seq = 0
        self.groups: list[list[str]] = []  # metric names of each subplot
        self.group_of: dict[str, int] = {}

    @staticmethod
    def _initial_total(run: dict) -> int | None:
        total = run.get("total")
        if not total:
            total = as_dict(run.get("params")).get("epochs")
        try:
            return int(total) if total else None
        except (TypeError, ValueError):
            return None

    def update(self, run: dict, events: list[dict]) -> None:
        """Take a refreshed run row and the new events."""
        if run:
            self.run = dict(run)
            if self.total is None and self._total_from_params:
                self.total = self._initial_total(self.run)
        series = self.series
        for event in events:
            seq = event.get("seq")
            if isinstance(seq, int):
                if seq <= self._last_seq:
                    continue  # already seen: duplicates are harmless
                self._last_seq = seq
            kind = event.get("type")
            if kind == "metric":
                step = event.get("step")
                values = event.get("values") or {}
                if not isinstance(step, int):
                    step = (self.step or 0) + 1
                for name, value in values.items():
                    s = series.get(name)
                    if s is None:
                        s = series[name] = MetricSeries(str(name), self.max_points)
                    try:
                        s.add(step, float(value))
                    except (TypeError, ValueError):
                        continue
                self.step = step
                total = event.get("total")
                if isinstance(total, int) and total > 0:
                    self.total = total
                    self._total_logged = True
                elif not self._total_logged and self.total and step > self.total:
                    self.total = None  # `epochs` was not what the steps count (batches, say)
                    self._total_from_params = False
                t = event.get("t")
                if isinstance(t, (int, float)):
                    rate = self._rate
                    if not rate or t - rate[-1][0] >= 0.2:
                        rate.append((t, step))
                        while len(rate) > 2 and t - rate[0][0] > ETA_WINDOW:
                            rate.popleft()
            elif kind == "log":
                stream = event.get("stream") or "stdout"
                text = event.get("text") or ""
                for line in str(text).splitlines()[-(self.log_tail.maxlen or 1) :]:
                    self.log_tail.append((stream, line))
            elif kind == "warning":
                self.warnings.append(str(event.get("message") or ""))
            elif kind == "debugger":
                self.debugger = event
            elif kind == "prewarm":
                self._prewarm(event)
            elif kind == "cost":
                if isinstance(event.get("dollars"), (int, float)):
                    self.run["cost"] = max(self.run.get("cost") or 0.0, event["dollars"])
                if isinstance(event.get("rate"), (int, float)):
                    self.run["rate"] = event["rate"]

    def _prewarm(self, event: dict) -> None:
        """`--prewarm`'s read of the data volume, as the phase before the first metric."""
        done, total = event.get("bytes"), event.get("total")
        if event.get("state") != "reading" or not isinstance(done, int) or not total:
            self.phase = self.phase_fraction = None
            return
        self.phase_fraction = min(1.0, max(0.0, done / total))
        self.phase = (
            f"prewarming the data volume: {gib(done)} of {gib(total)} read "
            f"({100 * self.phase_fraction:.0f}%)"
        )

    def eta(self) -> float | None:
        """Seconds left from the recent step rate, when the total is known."""
        if not self.total or self.step is None or len(self._rate) < 2:
            return None
        (t0, s0), (t1, s1) = self._rate[0], self._rate[-1]
        if t1 <= t0 or s1 <= s0:
            return None
        return max(0.0, (self.total - self.step) / ((s1 - s0) / (t1 - t0)))

    def regroup(self) -> bool:
        """Give new metrics a subplot (sticky: a metric never moves). True if layout changed."""
        new = [n for n in self.series if n not in self.group_of and self.series[n].count]
        if not new:
            return False
        changed = False
        for name in new:
            scale = self.series[name].scale
            target = None
            for g, members in enumerate(self.groups):
                if abs(self.series[members[0]].scale - scale) <= 1.0:
                    target = g
                    break
            if target is None:
                if len(self.groups) < MAX_GROUPS:
                    self.groups.append([])
                    target = len(self.groups) - 1
                    changed = True
                else:
                    target = min(
                        range(len(self.groups)),
                        key=lambda g: abs(self.series[self.groups[g][0]].scale - scale),
                    )
            self.groups[target].append(name)
            self.group_of[name] = target
        return True if changed else bool(new)

    def traces(self, smoothing: bool = False) -> list[tuple[str, int, list, list]]:
        """(name, subplot, xs, ys) of each metric, EMA-smoothed with `smoothing`."""
        out = []
        for name, g in self.group_of.items():
            s = self.series[name]
            xs, ys = (s.smooth if smoothing else s.raw).points()
            out.append((name, g, xs, ys))
        return out
