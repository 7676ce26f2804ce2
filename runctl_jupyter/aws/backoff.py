"""The delays between polls of an AWS state (an instance running, its SSM agent online,
a command's end): short at first, then 1.5 times longer each, up to a cap, so a state
reached quickly is seen within a fraction of a second and a long wait costs few calls.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

FIRST = 0.25  # seconds before the second look


def delays(cap: float, first: float = FIRST) -> Iterator[float]:
    """`first`, `first * 1.5`, ... never above `cap`."""
    delay = min(first, cap)
    while True:
        yield delay
        delay = min(delay * 1.5, cap)


def pause(delay: float, deadline: float) -> None:
    """Sleep `delay`, but never past `deadline` (time.monotonic())."""
    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
