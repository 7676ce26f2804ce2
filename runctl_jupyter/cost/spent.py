"""What a run spent, as its agent last metered it: the last `cost` event of its
events.jsonl (spot or not, the on-demand equivalent), and the phrase the success
line shows, `cost $0.31 (spot, saved $0.74 against on-demand)`.
"""

from __future__ import annotations

import json
from pathlib import Path

from .prices import dollars


def last_cost(run_dir: Path | str | None) -> dict | None:
    """The last `cost` event of a run (read from the end of its events.jsonl)."""
    if not run_dir:
        return None
    path = Path(run_dir) / "events.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                for raw in reversed(data.splitlines()):
                    if b'"cost"' in raw:
                        try:
                            event = json.loads(raw)
                        except ValueError:
                            continue
                        if event.get("type") == "cost":
                            return event
                if start == 0:
                    return None
                chunk *= 4
    except OSError:
        return None


def cost_phrase(row: dict) -> str:
    """`cost $0.31 (spot, saved $0.74 against on-demand)`, or `cost $0 (local)`."""
    if (row.get("backend") or "local") == "local":
        return "cost $0 (local)"
    spent = float(row.get("cost") or 0)
    event = last_cost(row.get("run_dir")) or {}
    if not event.get("spot"):
        return f"cost {dollars(spent)} (on-demand)"
    saved = float(event.get("on_demand_dollars") or spent) - spent
    if saved >= 0.005:
        return f"cost {dollars(spent)} (spot, saved {dollars(saved)} against on-demand)"
    return f"cost {dollars(spent)} (spot)"
