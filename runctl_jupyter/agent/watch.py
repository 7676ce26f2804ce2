"""The agent's watchdog: stalls, long gaps between checkpoints, and lines an
earlier attempt's agent never sent.

- Stall: no metric and no output for `--stall-minutes` (default 30) -> a
  `warning` event (code `stall`); with `--stop-on-stall` the run is stopped with
  reason `stall` (a hung NCCL collective or a dead data loader must not bill all
  night).
- Checkpoint gap: a `warning` (code `checkpoint`) when the run goes twice its
  `--checkpoint-every` interval (steps or minutes) without a checkpoint, or 60
  minutes when no interval is set (`checkpoint_warn_minutes` in the options).
- Replay: an agent that was killed (SIGKILL, OOM) never sent the last lines its
  training process wrote to `runtime/<attempt>-<pid>.jsonl`; the next attempt's
  agent sends them first (marked `recovered`), so the store has every point.

Stdlib only.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..events import read_events

DEFAULT_STALL_MINUTES = 30.0
DEFAULT_CHECKPOINT_WARN_MINUTES = 60.0
CHECK_SECONDS = 0.5
REPLAYED = ("metric", "checkpoint", "warning")


def latest_checkpoint_step(run_dir: Path) -> int | None:
    try:
        names = [e.name for e in os.scandir(run_dir / "checkpoints") if e.name.startswith("step-")]
    except FileNotFoundError:
        return None
    steps = []
    for name in names:
        try:
            steps.append(int(name[5:13]))
        except ValueError:
            continue
    return max(steps, default=None)


class Watch:
    """Called from the agent loop (`tick`) and for every runtime line (`saw`)."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        options = agent.spec.get("options") or {}
        self.stall_seconds = float(options.get("stall_minutes") or DEFAULT_STALL_MINUTES) * 60
        self.stop_on_stall = bool(options.get("stop_on_stall"))
        every = options.get("checkpoint_every")
        self.every = every if isinstance(every, dict) else None
        warn = options.get("checkpoint_warn_minutes") or DEFAULT_CHECKPOINT_WARN_MINUTES
        self.checkpoint_warn_seconds = float(warn) * 60
        if self.every and self.every.get("unit") == "minutes":
            self.checkpoint_warn_seconds = 2 * float(self.every["every"]) * 60
        now = time.monotonic()
        self.last_activity = now
        self.last_output = -1
        self.last_checkpoint_time = now
        self.last_checkpoint_step = latest_checkpoint_step(agent.run_dir)
        self.first_step: int | None = None
        self.last_step: int | None = None
        self.stall_warned = False
        self.checkpoint_warned = False
        self.next_check = 0.0

    def saw(self, kind: str | None, record: dict) -> None:
        now = time.monotonic()
        self.last_activity = now
        step = record.get("step")
        if not isinstance(step, int):
            return
        if kind == "metric":
            self.last_step = step
            if self.first_step is None:
                self.first_step = step
            self._check_checkpoints(now)  # a steps interval is judged at each step
        elif kind == "checkpoint":
            self.last_checkpoint_time = now
            self.last_checkpoint_step = step
            self.checkpoint_warned = False

    def tick(self) -> None:
        now = time.monotonic()
        if now < self.next_check:
            return
        self.next_check = now + CHECK_SECONDS
        agent = self.agent
        child = getattr(agent, "child", None)
        if agent.stop_reason is not None or child is None or child.poll() is not None:
            return
        log = getattr(agent, "stdout_log", None)
        size = log.tell() if log is not None and not log.closed else self.last_output
        if size != self.last_output:
            self.last_output = size
            self.last_activity = now
        self._check_stall(now)
        self._check_checkpoints(now)

    def _check_stall(self, now: float) -> None:
        silent = now - self.last_activity
        if silent < self.stall_seconds:
            self.stall_warned = False
            return
        if self.stall_warned:
            return
        self.stall_warned = True
        minutes = silent / 60
        run_id = self.agent.spec.get("run_id")
        action = (
            "stopping it (--stop-on-stall)"
            if self.stop_on_stall
            else f"`runctl stop {run_id}` stops it (--stop-on-stall does so by itself)"
        )
        self.agent.events.write(
            "warning",
            message=(
                f"no metric and no output for {minutes:.1f} min: the run looks stalled "
                f"(a hung data loader or collective?); {action}"
            ),
            code="stall",
            silent_seconds=round(silent, 1),
        )
        if self.stop_on_stall:
            self.agent.request_stop("stall")

    def _check_checkpoints(self, now: float) -> None:
        if self.checkpoint_warned:
            return
        message = None
        if self.every and self.every.get("unit") == "steps" and self.last_step is not None:
            since = self.last_checkpoint_step
            if since is None:
                since = (self.first_step or 0) - 1
            steps = self.last_step - since
            if steps >= 2 * int(self.every["every"]):
                message = (
                    f"no checkpoint for {steps} steps (--checkpoint-every {self.every['every']}): "
                    "register the state with runctl.register_checkpoint(fn) or call "
                    "runctl.save_checkpoint(...), or a spot interruption loses these steps"
                )
        elif now - self.last_checkpoint_time >= self.checkpoint_warn_seconds:
            minutes = (now - self.last_checkpoint_time) / 60
            message = (
                f"no checkpoint for {minutes:.0f} min: an interruption would lose that work; "
                "register the state with runctl.register_checkpoint(fn) and --checkpoint-every"
            )
        if message:
            self.checkpoint_warned = True
            self.agent.events.write("warning", message=message, code="checkpoint")


def replay_unsent(agent: Any) -> int:
    """Send the runtime lines earlier attempts wrote that their agents never sent
    (the agent was killed). Returns how many were sent."""
    if agent.attempt <= 1:
        return 0
    folder = agent.run_dir / "runtime"
    try:
        names = [e.name for e in os.scandir(folder)]
    except FileNotFoundError:
        return 0
    earlier = []
    for name in names:
        head = name.split("-", 1)[0]
        if head.isdigit() and int(head) < agent.attempt and name.endswith(".jsonl"):
            earlier.append(name)
    if not earlier:
        return 0
    events, _ = read_events(agent.run_dir / "events.jsonl")
    sent = {(e.get("type"), e.get("t")) for e in events if e.get("type") in REPLAYED}
    missing = []
    for name in earlier:
        with open(folder / name, "rb") as f:
            data = f.read()
        for line in data[: data.rfind(b"\n") + 1].splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("type") in REPLAYED:
                if (record.get("type"), record.get("t")) not in sent:
                    missing.append(record)
    missing.sort(key=lambda r: r.get("t", 0))
    for record in missing:
        kind = record.pop("type")
        agent.events.write(kind, recovered=True, **record)
    return len(missing)
