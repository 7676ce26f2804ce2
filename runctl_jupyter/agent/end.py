"""How an attempt ends: the runner's exit becomes the run's last word.

The exit code (or the stop that caused it) becomes a status and reason:
`succeeded`; `stopped` with the stop's reason; `failed` with `signal` or
`exception` and the error (the code's own, from error-<attempt>.json, when it
raised). A spot notice ends the attempt `resuming` instead (spot.py). Then the
last cost event, record.ipynb, the `exit` event, and the last sync: the agent
finalizes the run itself, so no kernel needs to be alive.
"""

from __future__ import annotations

import json
import signal
import time
from typing import TYPE_CHECKING, Any, BinaryIO

from . import container

if TYPE_CHECKING:
    from pathlib import Path

    from ..events import EventWriter
    from .cost import CostMeter
    from .restart import DevRestart
    from .s3 import Sync
    from .spot import Interruptions


class Ending:
    """The agent's end methods (a part of `Agent`)."""

    if TYPE_CHECKING:  # the Agent's state they read (supervise.py)
        run_dir: Path
        attempt: int
        spec: dict[str, Any]
        events: EventWriter
        stop_reason: str | None
        stop_detail: dict[str, Any] | None
        started: float
        spot: Interruptions
        cost: CostMeter
        stdout_log: BinaryIO
        sync: Sync | None
        restart: DevRestart

    def _exit(self, returncode: int) -> int:
        options = self.spec.get("options") or {}
        if options.get("image"):  # `--rm` may leave the removal to a cleanup process: now
            container.remove(options.get("container_runtime"), self.spec["run_id"], self.attempt)
        if self.spec.get("distributed") and self.stop_reason is not None:
            from .torchrun import stopped_code

            returncode = stopped_code(returncode, self.run_dir)  # torchrun says 1 when stopped
        resumed = self.spot.on_exit(returncode)  # after a spot notice: the next attempt
        if resumed is not None:
            return resumed
        restarted = self.restart.on_exit()  # a dev run's change: the next attempt
        if restarted is not None:
            return restarted
        error = None
        error_file = self.run_dir / f"error-{self.attempt}.json"
        if self.spec.get("distributed") and returncode and self.stop_reason is None:
            from .torchrun import write_error

            write_error(self.run_dir, self.attempt)  # the failed rank's, from torchrun's report
        if self.stop_reason is not None:
            status, reason = "stopped", self.stop_reason
        elif returncode == 0:
            status, reason = "succeeded", None
        elif returncode < 0:
            name = signal.Signals(-returncode).name
            status, reason = "failed", "signal"
            error = {
                "type": name,
                "message": f"the training process was killed by {name}",
                "traceback": "",
            }
        else:
            status, reason = "failed", "exception"
            if error_file.exists():
                error = json.loads(error_file.read_text())
            else:
                error = {
                    "type": "ExitCode",
                    "message": f"the code exited with status {returncode}",
                    "traceback": "",
                }
        return self._finish(status, reason, returncode, error)

    def _finish(
        self, status: str, reason: str | None, returncode: int | None, error: dict | None
    ) -> int:
        final: dict[str, Any] = {
            "status": status,
            "reason": reason,
            "exit_code": returncode,
            "error": error,
            "duration": round(time.time() - self.started, 3),
        }
        if self.stop_detail and status == "stopped":
            final.update(self.stop_detail)
        self.cost.final()
        self.events.flush()
        try:
            from ..record import write_record

            write_record(self.run_dir, final)
        except Exception as exc:  # noqa: BLE001 - a broken record must not lose the exit event
            self.events.write(
                "warning", message=f"could not write record.ipynb: {exc}", code="record"
            )
        self.events.write("exit", **final)
        self.events.close()
        if getattr(self, "stdout_log", None):
            self.stdout_log.close()
        if self.sync is not None:
            self.sync.final()
        self.restart.wait_after_exit(status)  # a dev run waits for the next change
        return 0 if status == "succeeded" else 1
