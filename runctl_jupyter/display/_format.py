"""Text helpers shared by the panels: escaping, numbers, durations, status badges.

Every string that came from a run (names, params, metric names, log lines,
errors) goes through `esc` before it reaches HTML.
"""

from __future__ import annotations

import html
import json
import math
import time
from typing import Any

from ..events import FINAL_STATUSES, lower_is_better  # noqa: F401 - lower_is_better: for the panels

STATUS_COLORS = {
    "queued": "#757575",
    "provisioning": "#7e57c2",
    "starting": "#5c6bc0",
    "running": "#1e88e5",
    "interrupted": "#ef6c00",
    "resuming": "#f9a825",
    "succeeded": "#2e7d32",
    "failed": "#c62828",
    "stopped": "#6d4c41",
    "lost": "#ad1457",
}
FINAL = FINAL_STATUSES


def esc(value: Any) -> str:
    """HTML-escape any value (quotes too: values also land in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value: Any) -> str:
    """A number with at least 4 (here 6) significant digits; ints stay ints."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    return str(value)


def fmt_value(value: Any) -> str:
    """A param value as text: numbers via fmt_num, containers as JSON."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt_num(value)
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return "" if value is None else str(value)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{sec:02d}s"
    return f"{minutes}m{sec:02d}s"


LOCAL_COST = "$0 (local)"  # one wording everywhere: panel, tables, summary, one-line result


def fmt_cost(run: dict) -> str:
    """Dollars so far and $/h; "$0 (local)" on the local backend (it costs nothing)."""
    if (run.get("backend") or "local") == "local":
        return LOCAL_COST
    cost = run.get("cost")
    rate = run.get("rate")
    text = f"${cost:.2f}" if isinstance(cost, (int, float)) else "$–"
    if isinstance(rate, (int, float)):
        text += f" (${rate:.3f}/h)"  # hourly prices to a tenth of a cent: $1.006/h
    return text


def fmt_time(t: float | None) -> str:
    if not t:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def run_elapsed(run: dict, now: float | None = None) -> float | None:
    """Seconds the run has been going (or went): `duration` once ended."""
    started = run.get("started") or run.get("created")
    status = run.get("status")
    if status in FINAL and run.get("duration") is not None:
        return float(run["duration"])
    if not started:
        return None
    end = run.get("ended") if status in FINAL or status == "lost" else None
    return max(0.0, (end or (now if now is not None else time.time())) - float(started))


def badge(status: str | None) -> str:
    status = status or "unknown"
    color = STATUS_COLORS.get(status, "#757575")
    return (
        f'<span class="runctl-status runctl-status-{esc(status)}" style="background:{color};color:#fff;'
        f'padding:1px 7px;border-radius:9px;font-size:0.85em;font-weight:600">{esc(status)}</span>'
    )


def as_dict(value: Any) -> dict:
    """Params or final metrics as stored: a dict, a JSON text, or nothing."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value:
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def error_text(error: Any) -> str:
    if not error:
        return ""
    if isinstance(error, str):
        try:
            error = json.loads(error)
        except ValueError:
            return error
    if isinstance(error, dict):
        kind = error.get("type") or "Error"
        message = error.get("message") or ""
        return f"{kind}: {message}" if message else str(kind)
    return str(error)


def finite(value: Any) -> float | None:
    """A float for JSON/plots: None for nan/inf/non-numbers."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def round_sig(value: float, digits: int = 7) -> float:
    """Shorter JSON for static figures (7 significant digits is plenty to plot)."""
    if value == 0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")
