"""How a stop reaches the code: the agent's part of Stop, --max-hours and the like.

A stop arrives as control.json (`runctl stop`, a sweep's pruner, with its reason
and `force`), as SIGTERM or SIGINT to the agent, from --max-hours, or from the
agent's own watchers (early stop, a stall, a cost limit, a spot notice). Each one
becomes `request_stop(reason)`: SIGTERM to the runner's process group (the code's
`runctl.should_stop` turns True, its `on_stop` callbacks run), then SIGKILL when
the grace period is over (with `--image`, both go to the container by its name:
container.py). A second stop keeps the first one's reason (a `force`
only brings the SIGKILL forward).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from typing import TYPE_CHECKING

from . import container

if TYPE_CHECKING:
    from pathlib import Path

    from ..events import EventWriter
    from .restart import DevRestart


class Stopping:
    """The agent's stop methods (a part of `Agent`, which holds the state they share:
    `stop_reason`, `signaled`, `kill_at`, `control_mtime`, `deadline`, `grace`)."""

    if TYPE_CHECKING:  # the Agent's state (supervise.py)
        run_dir: Path
        spec: dict
        attempt: int
        events: EventWriter
        child: subprocess.Popen[bytes]
        stop_reason: str | None
        signaled: bool
        kill_at: float | None
        control_mtime: float
        restart: DevRestart
        deadline: float | None
        grace: float

    def request_stop(self, reason: str, force: bool = False) -> None:
        if getattr(self, "child", None) is None or self.child.poll() is not None:
            self.stop_reason = self.stop_reason or reason
            return
        if self.stop_reason is None:
            self.stop_reason = reason
            self._signal_child(signal.SIGTERM)
            self.kill_at = time.monotonic() + self.grace
        if force:
            self.kill_at = time.monotonic()

    def _signal_child(self, sig: int) -> None:
        if (self.spec.get("options") or {}).get("image") and self._signal_container(sig):
            return
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def _signal_container(self, sig: int) -> bool:
        """`--image`: the signal goes to the container by name (its `--init` hands it to
        the code); False if it did not reach (not created yet): the client gets it then."""
        options = self.spec.get("options") or {}
        runtime = container.find_runtime(options.get("container_runtime"))
        if runtime is None:
            return False
        name = container.container_name(self.spec["run_id"], self.attempt)
        return container.signal_container(runtime, name, "KILL" if sig == signal.SIGKILL else "TERM")

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signaled = True

    def _check_control(self) -> None:
        path = self.run_dir / "control.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self.control_mtime:
            return
        self.control_mtime = mtime
        try:
            control = json.loads(path.read_text())
        except ValueError:
            return
        if control.get("stop"):
            self.request_stop(control.get("reason") or "user", force=bool(control.get("force")))
        elif control.get("restart"):
            self.restart.request(control)  # a dev run's change (restart.py)

    def _check_limits(self) -> None:
        if self.deadline is not None and time.time() >= self.deadline:
            self.deadline = None
            self.events.write(
                "warning", message="--max-hours reached: stopping the run", code="max-hours"
            )
            self.request_stop("max-hours")
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_at = None
            self._signal_child(signal.SIGKILL)
