"""The local backend: the agent runs on this machine as a detached process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ..procs import boot_id, process_start

PACKAGE_PARENT = str(Path(__file__).resolve().parent.parent.parent)


class LocalBackend:
    name = "local"

    def __init__(self, parent=None, **kwargs) -> None:  # noqa: ANN001 - traitlets-style parent
        self.parent = parent

    def start(self, run_dir: Path, spec: dict, attempt: int) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, env.get("PYTHONPATH")) if p)
        with open(run_dir / "agent.log", "ab") as log:
            launcher = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "runctl_jupyter.daemon",  # forks at once: we wait for a bare Python start only
                    "runctl_jupyter.agent",
                    str(run_dir),
                    "--attempt",
                    str(attempt),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
                cwd=str(run_dir),
            )
        launcher.wait()  # it forks the agent and exits at once; the agent is not our child
        return {"host": os.uname().nodename}

    def stop(self, run_dir: Path, spec: dict, force: bool = False, reason: str = "user") -> None:
        _write_control(run_dir, {"stop": True, "force": force, "reason": reason, "t": time.time()})
        info = agent_info(run_dir)
        if info and self._is_our_agent(info):
            try:
                os.kill(info["pid"], signal.SIGTERM)  # wakes it; control.json says how hard
            except ProcessLookupError:
                pass

    def restart(self, run_dir: Path, spec: dict, changed: dict, names: list[str]) -> bool:
        """A dev run's next attempt (runs/dev.py): its files are in the run folder (and
        its modules in their own folder) already, so only the agent is asked
        (agent/restart.py). False when no agent of ours is there to ask."""
        info = agent_info(run_dir)
        if not (info and self._is_our_agent(info)):
            return False
        _write_control(run_dir, {"restart": True, "changed": names, "t": time.time()})
        return True

    def pull(self, run_dir: Path, spec: dict) -> None:
        return None  # the run folder is already here

    def is_alive(self, run_dir: Path, spec: dict) -> bool | None:
        info = agent_info(run_dir)
        if info is None:
            return None
        return self._is_our_agent(info)

    @staticmethod
    def _is_our_agent(info: dict) -> bool:
        if info.get("boot_id") != boot_id():
            return False
        start = process_start(info["pid"])
        return start is not None and start == info.get("proc_start")


def _write_control(run_dir: Path, control: dict) -> None:
    tmp = run_dir / "control.json.tmp"
    tmp.write_text(json.dumps(control))
    os.replace(tmp, run_dir / "control.json")


def agent_info(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / "agent.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
