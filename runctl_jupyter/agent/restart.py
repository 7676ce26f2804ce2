"""A dev run's restarts, seen by the agent (`runctl dev`, docs/dev.md).

Locally the notebook side puts the changed files in place and writes
`control.json` with `{"restart": true, "changed": [...]}`; on EC2 an SSM command
writes `{"restart": true, "manifest": KEY}` and the agent fetches the files the
manifest names from S3 (its own client, while the code stops; each checked against
its sha256). The agent stops the attempt as a Stop
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

import hashlib
import json
import os
import time
from pathlib import Path
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


def put_file(run_dir: Path, name: str, data: bytes, digest: str) -> None:
    """`run/<file>` into the run folder, `work/<path>` into its working folder."""
    parts = name.split("/")
    if parts[0] not in ("run", "work") or len(parts) < 2 or {"", ".", ".."} & set(parts):
        raise ValueError(f"refusing to write {name!r} outside the run folder")
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{name} does not match its hash")
    base = run_dir if parts[0] == "run" else run_dir / "work"
    dest = base.joinpath(*parts[1:])
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)


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
        self.fetch_error: str | None = None

    def request(self, control: dict) -> None:
        """From the agent's control check: stop the attempt, then restart (on EC2 the
        changed files come meanwhile, while the code stops)."""
        if not self.dev:
            return
        self.wanted = control
        self.agent.request_stop(RESTART_REASON)
        self._fetch(control)

    def _fetch(self, control: dict) -> None:
        """On EC2: the files the manifest names, from S3, each checked against its hash."""
        agent = self.agent
        if not control.get("manifest") or agent.sync is None:
            return
        try:
            manifest = json.loads(agent.sync.fetch(control["manifest"]))
            control["changed"] = manifest.get("changed") or []
            for name, digest in sorted(manifest["files"].items()):
                put_file(
                    agent.run_dir, name, agent.sync.fetch(manifest["files_prefix"] + digest), digest
                )
        except Exception as exc:  # noqa: BLE001 - the next attempt still starts, and says so
            self.fetch_error = (
                f"could not fetch the changed files: {exc}; this attempt runs the code it had"
            )

    def announce(self, events: Any) -> None:
        """The next attempt's first words: what changed (the panel shows it)."""
        events.write(
            "warning", message=restart_message(self.changed), code="restart", changed=self.changed
        )
        if self.fetch_error:
            events.write("warning", message=self.fetch_error, code="restart")

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
                if control.get("restart") and self.dev:
                    self._fetch(control)
                    self._take(control)
                    return
            time.sleep(WAIT_TICK)

    def _take(self, control: dict) -> None:
        (self.agent.run_dir / "control.json").unlink(missing_ok=True)
        self.next_attempt = self.agent.attempt + 1
        self.changed = list(control.get("changed") or [])
