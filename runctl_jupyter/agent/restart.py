"""A dev run's restarts, seen by the agent (`runctl dev`, docs/dev.md).

The notebook side puts the changed files in place (locally: the run folder; on
EC2: an SSM command fetches them from S3), then writes `control.json` with
`{"restart": true, "changed": [...]}`. The agent stops the attempt as a Stop
does (SIGTERM, the grace period), writes `status resuming` with reason
`restart`, and starts the next attempt of the same run in this same process
(supervise.main): no new agent, instance or bundle. The new attempt's first
events are `status starting` and a `warning` (code `restart`) naming what
changed, which the panel shows.

An attempt of a dev run that ends on its own (its code finished or raised)
records its `exit` as usual; the agent then waits (at most `--idle-minutes`,
30 by default) for the next change, so a restart costs no start-up either. A
Stop (control.json `stop`, SIGTERM) ends the wait and the agent.

Stdlib only.
"""

from __future__ import annotations

import json
import time
from typing import Any

RESTART_REASON = "restart"
DEFAULT_WAIT_MINUTES = 30.0
WAIT_TICK = 0.05


def read_control(run_dir: Any) -> dict:
    try:
        control = json.loads((run_dir / "control.json").read_text())
    except (OSError, ValueError):
        return {}
    return control if isinstance(control, dict) else {}


def restart_message(changed: list) -> str:
    what = ", ".join(str(c) for c in changed[:5]) or "the code"
    more = f" (+{len(changed) - 5} more)" if len(changed) > 5 else ""
    return f"restarted: {what}{more} changed"


class DevRestart:
    """The agent's hook (`agent.restart`): a restart request, the next attempt, the wait."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        options = agent.spec.get("options") or {}
        self.dev = bool(options.get("dev"))
        minutes = options.get("idle_minutes") or DEFAULT_WAIT_MINUTES
        self.wait_seconds = float(minutes) * 60
        self.wanted: dict | None = None
        self.next_attempt: int | None = None  # set when supervise.main runs another attempt
        self.changed: list = []
        self.sync: Any = None

    def request(self, control: dict) -> None:
        """From the agent's control check: stop the attempt, then restart."""
        if not self.dev:
            return
        self.wanted = control
        self.agent.request_stop(RESTART_REASON)

    def on_exit(self) -> int | None:
        """From `Agent._exit`: the attempt was stopped for a restart (an exit code), or
        None to end the attempt as usual."""
        agent = self.agent
        if self.wanted is None or agent.stop_reason != RESTART_REASON:
            return None
        if read_control(agent.run_dir).get("stop"):  # a Stop came meanwhile: it wins
            agent.stop_reason = str(read_control(agent.run_dir).get("reason") or "user")
            return None
        agent.cost.final()  # the attempt's last cost event, as before an `exit`
        agent.events.write(
            "status",
            status="resuming",
            reason=RESTART_REASON,
            next_attempt=agent.attempt + 1,
            changed=list(self.wanted.get("changed") or []),
        )
        agent.events.close()
        agent.stdout_log.close()
        self._take(self.wanted)
        self.sync = agent.sync  # still running: the next attempt goes on with it
        return 0

    def wait_after_exit(self, status: str) -> None:
        """After a dev attempt's `exit`: wait for a change (the next attempt) or a stop."""
        agent = self.agent
        if not self.dev or status not in ("succeeded", "failed"):
            return  # stopped on purpose (Stop, a limit): the dev session is over
        deadline = time.monotonic() + self.wait_seconds
        mtime = agent.control_mtime
        while time.monotonic() < deadline and not agent.signaled:
            try:
                seen = (agent.run_dir / "control.json").stat().st_mtime
            except FileNotFoundError:
                seen = mtime
            if seen != mtime:
                mtime = seen
                control = read_control(agent.run_dir)
                if control.get("stop"):
                    return
                if control.get("restart"):
                    self._take(control)
                    return
            time.sleep(WAIT_TICK)

    def _take(self, control: dict) -> None:
        (self.agent.run_dir / "control.json").unlink(missing_ok=True)
        self.next_attempt = self.agent.attempt + 1
        self.changed = list(control.get("changed") or [])
