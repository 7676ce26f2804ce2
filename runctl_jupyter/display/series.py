"""In-memory metric series for live panels, bounded for display.

A run may log hundreds of thousands of points; a panel keeps at most
`max_points` per trace by min/max bucketing: each bucket keeps its lowest and its
highest point, and when there are too many buckets, neighbours merge (bucket width
doubles). Adding a point is O(1) amortized, drawing is O(max_points), and a spike
is never averaged away. The store keeps every point; this is only for drawing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

SMOOTHING = 0.9  # TensorBoard-style EMA weight, debiased


class MinMaxDecimator:
    """A stream of (x, y) reduced to at most `max_points` points for plotting."""

    __slots__ = ("max_buckets", "width", "buckets")

    def __init__(self, max_points: int = 2000):
        self.max_buckets = max(1, max_points // 2)
        self.width = 1
        # each bucket: [n, min_x, min_y, max_x, max_y]
        self.buckets: list[list] = []

    def add(self, x: float, y: float) -> None:
        buckets = self.buckets
        if buckets and buckets[-1][0] < self.width:
            b = buckets[-1]
            b[0] += 1
            if y < b[2]:
                b[1], b[2] = x, y
            if y >= b[4]:
                b[3], b[4] = x, y
            return
        if len(buckets) >= self.max_buckets:
            self._merge()
            if buckets[-1][0] < self.width:
                self.add(x, y)
                return
        buckets.append([1, x, y, x, y])

    def _merge(self) -> None:
        old = self.buckets
        merged = []
        for i in range(0, len(old) - 1, 2):
            a, b = old[i], old[i + 1]
            lo = a if a[2] <= b[2] else b
            hi = b if b[4] >= a[4] else a
            merged.append([a[0] + b[0], lo[1], lo[2], hi[3], hi[4]])
        if len(old) % 2:
            merged.append(old[-1])
        self.buckets[:] = merged
        self.width *= 2

    def points(self) -> tuple[list, list]:
        xs: list = []
        ys: list = []
        for _, min_x, min_y, max_x, max_y in self.buckets:
            if min_x == max_x:
                xs.append(min_x)
                ys.append(min_y)
            elif min_x < max_x:
                xs += (min_x, max_x)
                ys += (min_y, max_y)
            else:
                xs += (max_x, min_x)
                ys += (max_y, min_y)
        return xs, ys

    def __len__(self) -> int:
        return sum(2 if b[1] != b[3] else 1 for b in self.buckets)


class MetricSeries:
    """One metric of a live run: bounded raw and smoothed traces plus running stats."""

    __slots__ = (
        "name",
        "raw",
        "smooth",
        "_ema",
        "_debias",
        "count",
        "last",
        "last_step",
        "min",
        "max",
    )

    def __init__(self, name: str, max_points: int = 2000):
        self.name = name
        self.raw = MinMaxDecimator(max_points)
        self.smooth = MinMaxDecimator(max_points)
        self._ema = 0.0
        self._debias = 1.0
        self.count = 0
        self.last: float | None = None
        self.last_step: int | None = None
        self.min = math.inf
        self.max = -math.inf

    def add(self, step: int, value: float) -> None:
        if not math.isfinite(value):  # nan/inf cannot be drawn; the store keeps them
            return
        self.count += 1
        self.last = value
        self.last_step = step
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value
        self.raw.add(step, value)
        self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
        self._debias *= SMOOTHING
        self.smooth.add(step, self._ema / (1 - self._debias))

    def extend(self, points: Iterable[tuple[int, float]]) -> None:
        for step, value in points:
            try:
                self.add(step, float(value))
            except (TypeError, ValueError):
                continue

    @property
    def scale(self) -> float:
        """log10 of the largest magnitude seen: metrics a decade apart get their own subplot."""
        peak = max(abs(self.min), abs(self.max)) if self.count else 0.0
        return math.log10(peak) if peak > 0 else 0.0


def downsample(points: list[tuple[int, float]], max_points: int = 2000) -> tuple[list, list]:
    """A full series (from the store) reduced for a static figure."""
    decimator = MinMaxDecimator(max_points)
    for step, value in points:
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            decimator.add(step, value)
    return decimator.points()


def group_by_scale(scales: dict[str, float], max_groups: int = 4) -> list[list[str]]:
    """Metrics whose magnitudes are within a decade share a subplot (in first-seen order)."""
    groups: list[tuple[float, list[str]]] = []
    for name, scale in scales.items():
        for anchor, members in groups:
            if abs(anchor - scale) <= 1.0:
                members.append(name)
                break
        else:
            if len(groups) < max_groups:
                groups.append((scale, [name]))
            else:
                nearest = min(groups, key=lambda g: abs(g[0] - scale))
                nearest[1].append(name)
    return [members for _, members in groups]
