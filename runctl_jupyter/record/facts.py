"""What a record says about a run, read once from its folder (spec, params, env,
events, output). Stdlib only: the agent builds the record on the instance.
"""

from __future__ import annotations

import base64
import json
import math
import os
from pathlib import Path
from typing import Any

from ..events import EVENTS_FILE, read_events

MAX_OUTPUT_LINES = 10_000
MAX_OUTPUT_CHARS = 300_000  # ~300 KB of output text at most, however long the lines


class RunFacts:
    """Everything the record says, read once from the run folder."""

    def __init__(self, run_dir: Path, final: dict | None):
        self.run_dir = run_dir
        self.spec: dict = read_json(run_dir / "spec.json", {})
        self.params: dict = read_json(run_dir / "params.json", self.spec.get("params") or {})
        self.env: dict = read_json(run_dir / "env.json", {})
        self.events, _ = read_events(run_dir / EVENTS_FILE)
        exits = [e for e in self.events if e.get("type") == "exit"]
        self.attempts = max((int(e.get("attempt") or 1) for e in self.events), default=1)
        if final is None:
            self.final = exits[-1] if exits else None
            earlier = exits[:-1]
        else:
            self.final = dict(final)
            earlier = [e for e in exits if int(e.get("attempt") or 1) < self.attempts]
        durations = [e.get("duration") for e in earlier]
        if self.final is not None:
            durations.append(self.final.get("duration"))
        self.duration = sum(d for d in durations if isinstance(d, (int, float))) or None
        self.code = self.code_cell()

    def code_cell(self) -> str:
        entry = self.run_dir / self.spec.get("entry", "code.py")
        try:
            return entry.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "# the code of this run was not found in its run folder\n"

    @property
    def status(self) -> str:
        if self.final is not None:
            return str(self.final.get("status"))
        statuses = [e for e in self.events if e.get("type") == "status"]
        return str(statuses[-1]["status"]) if statuses else "unknown"

    @property
    def started(self) -> float | None:
        times = [e["t"] for e in self.events if isinstance(e.get("t"), (int, float))]
        return min(times) if times else self.spec.get("created")

    def series(self) -> dict[str, tuple[list, list]]:
        """name -> (steps, values), sorted by step; a step logged again (resume) keeps the last."""
        points: dict[str, dict[float, float]] = {}
        for event in self.events:
            if event.get("type") != "metric":
                continue
            step = event.get("step")
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                continue
            for name, value in (event.get("values") or {}).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    points.setdefault(str(name), {})[step] = float(value)
        out = {}
        for name, by_step in points.items():
            steps = sorted(by_step)
            out[name] = (steps, [by_step[s] for s in steps])
        return out

    def final_metrics(self) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for event in self.events:
            if event.get("type") == "metric":
                last.update(event.get("values") or {})
        return last

    def checkpoints(self) -> list[dict]:
        """The checkpoints that exist: an event's `pruned` paths are gone (--keep-checkpoints)."""
        kept: dict = {}
        for e in self.events:
            if e.get("type") == "checkpoint":
                kept.pop(e.get("path"), None)  # written again (a resume): listed at its newest
                kept[e.get("path")] = {k: e.get(k) for k in ("step", "path", "bytes", "attempt")}
                pruned = e.get("pruned")
                for gone in pruned if isinstance(pruned, list) else ():
                    if gone != e.get("path"):
                        kept.pop(gone, None)
        return list(kept.values())

    def cost(self) -> float | None:
        if self.spec.get("backend", "local") == "local":
            return 0.0
        costs = [e.get("dollars") for e in self.events if e.get("type") == "cost"]
        return costs[-1] if costs else None

    def summary(self) -> dict:
        if not hasattr(self, "_summary"):
            self._summary = self._make_summary()
        return self._summary

    def _make_summary(self) -> dict:
        final = self.final or {}
        return {
            "status": self.status,
            "reason": final.get("reason"),
            "exit_code": final.get("exit_code"),
            "error": final.get("error"),
            "duration": self.duration,
            "attempts": self.attempts,
            "started": self.started,
            "cost": self.cost(),
            "final_metrics": self.final_metrics(),
            "checkpoints": self.checkpoints(),
        }

    def objects_b64(self) -> str | None:
        if not hasattr(self, "_objects_b64"):
            path = self.run_dir / "objects.pkl"
            data = path.read_bytes() if path.exists() else None
            self._objects_b64 = base64.b64encode(data).decode("ascii") if data else None
        return self._objects_b64

    def output_lines(self) -> tuple[list[tuple[str, str]], int]:
        """[(stream, line)] of the code's output (the last ones), and how many were left out."""
        logs = [e for e in self.events if e.get("type") == "log"]
        lines: list[tuple[str, str]] = []
        if logs:
            attempt = None
            for event in logs:
                if self.attempts > 1 and event.get("attempt") != attempt:
                    attempt = event.get("attempt")
                    lines.append(("stdout", f"=== attempt {attempt} ===\n"))
                stream = "stderr" if event.get("stream") == "stderr" else "stdout"
                lines.extend((stream, line) for line in str(event.get("text", "")).splitlines(True))
        else:
            lines = [("stdout", line) for line in _tail_text(self.run_dir / "stdout.log")]
        kept, chars = 0, 0
        for _, line in reversed(lines):
            if kept >= MAX_OUTPUT_LINES or chars + len(line) > MAX_OUTPUT_CHARS:
                break
            kept += 1
            chars += len(line)
        return lines[len(lines) - kept :], len(lines) - kept


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _tail_text(path: Path, max_bytes: int = 8 * MAX_OUTPUT_CHARS) -> list[str]:
    """The last lines of a (possibly huge) log file, without reading all of it."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines(True)
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is cut
    return lines


def trigger_text(trigger: Any) -> str:
    """Why a schedule fired a run, in one line (spec["trigger"]; "" for a run started
    by hand): `schedule nightly (cron 0 3 * * 1) at 2026-12-07 03:00 UTC; 3 new objects
    (s3://b/in/a.csv, ...); manifest sha256:1f2e...`."""
    if not isinstance(trigger, dict) or not trigger.get("schedule"):
        return ""
    import time

    fired = trigger.get("fired")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(fired))
        if isinstance(fired, (int, float))
        else "?"
    )
    text = f"schedule {trigger['schedule']} ({trigger.get('reason') or 'fired'}) at {when}"
    objects = trigger.get("objects") or []
    if objects or trigger.get("new_objects"):
        count = int(trigger.get("new_objects") or len(objects))
        shown = ", ".join(map(str, objects[:3])) + (", ..." if count > 3 else "")
        text += f"; {count} new object{'s' * (count != 1)} ({shown})"
    if trigger.get("manifest"):
        text += f"; manifest {trigger['manifest']}"
    return text
