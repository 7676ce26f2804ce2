"""AWS sweeps: at most `max_parallel` instances; a finished trial's instance takes the next.

The first trial of a slot launches with `keep` (its instance outlives the run); when
it ends its instance goes back to the pool and the next trial gets `instance=<id>`
(a reuse: no launch, no new bootstrap of the environment). An instance that is no
longer running is dropped and the next trial launches a new one. When the sweep
ends (done, stopped, failed, cost limit) the instances the sweep launched are
terminated (a kept spot instance's persistent request cancelled first, so it launches
no other), unless the sweep itself was given `keep`. A kept instance found stopped (a
spot interruption stops it, and EC2 would start it again later) is ended the same
way. sweep.jsonl records `{"type": "instance", "instance_id", "event": "launched"|"terminated"|"lost", ...}`
so a resumed sweep's scheduler reuses the instances still running.

A sweep given `instance=i-...` runs every trial on that instance and never ends it;
local sweeps never touch this pool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .record import read_log


def _aws_facts(run_dir: Path) -> dict:
    try:
        return json.loads((Path(run_dir) / "aws.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


class InstancePool:
    def __init__(self, session: Any, run: dict, log: Callable[..., None]):
        options = run.get("options") or {}
        self.session = session
        self.log = log
        self.active = (run.get("backend") or "local") == "aws" and not options.get("instance")
        self.leave = bool(options.get("keep"))  # the user kept them: not ended with the sweep
        self.kept: dict[str, dict] = {}  # instance id -> {"region", "spot_request_id"}
        self.idle: list[str] = []  # kept instances no trial runs on
        self.busy: dict[int, str] = {}  # trial index -> its kept instance
        self.ended_early: set[int] = set()  # trials seen ended before their start() returned

    # -- state ----------------------------------------------------------------------
    def restore(self, sweep_dir: Path, running_run_dirs: list[Path]) -> None:
        """A resumed sweep: the instances it launched and did not end, minus the busy ones."""
        self.ended_early.clear()
        if not self.active:
            return
        records, _ = read_log(sweep_dir)
        for record in records:
            if record.get("type") != "instance" or not record.get("instance_id"):
                continue
            instance_id: str = record["instance_id"]
            if record.get("event") == "launched":
                self.kept[instance_id] = {
                    "region": record.get("region"),
                    "spot_request_id": record.get("spot_request_id"),
                }
            else:
                self.kept.pop(instance_id, None)
        busy = {_aws_facts(d).get("instance_id") for d in running_run_dirs}
        self.idle = [i for i in self.kept if i not in busy]
        self.ended_early.clear()  # trials that ended before this scheduler: nothing to free

    def options(self, index: int) -> dict:
        """The options that place trial `index`: an idle kept instance, else a new kept one."""
        if not self.active:
            return {}
        while self.idle:
            instance_id = self.idle.pop(0)
            if self._running(instance_id):
                self.busy[index] = instance_id
                return {"instance": instance_id}
            facts = self.kept.pop(instance_id, None) or {}
            self.log(type="instance", instance_id=instance_id, event="lost")
            if not self.leave:  # stopped by a spot interruption: EC2 would start it again
                self._end(instance_id, facts)
        return {"keep": True}

    def started(self, index: int, facts: Any) -> None:
        """A trial's agent started: a new instance joins the pool (busy with this trial)."""
        if not self.active or not isinstance(facts, dict) or not facts.get("instance_id"):
            return
        instance_id = facts["instance_id"]
        self.busy[index] = instance_id
        if not facts.get("reused") and instance_id not in self.kept:
            self.kept[instance_id] = {
                "region": facts.get("region"),
                "spot_request_id": facts.get("spot_request_id"),
            }
            self.log(
                type="instance", instance_id=instance_id, event="launched", index=index, **self.kept[instance_id]
            )  # fmt: skip
        if index in self.ended_early:  # a short trial already ended: its instance is free
            self.ended_early.discard(index)
            self.ended(index, None)

    def adopt(self, index: int, run_dir: Path) -> None:
        """A trial resumed through the session (its own options): track what it runs on."""
        self.started(index, _aws_facts(run_dir))

    def ended(self, index: int, run_dir: Path | None) -> None:
        """A trial ended (or its launch failed): its instance takes the next trial."""
        if not self.active:
            return
        instance_id = self.busy.pop(index, None)
        if instance_id is None and run_dir is not None:
            instance_id = _aws_facts(run_dir).get("instance_id")
            if instance_id not in self.kept:  # its launch is not reaped yet
                self.ended_early.add(index)
                return
        if instance_id in self.kept and instance_id not in self.idle:
            if instance_id not in self.busy.values():
                self.idle.append(instance_id)

    # -- AWS --------------------------------------------------------------------------
    def _backend(self) -> Any:
        return self.session.backend("aws")

    def _running(self, instance_id: str) -> bool:
        from ..aws.clients import error_code

        region = (self.kept.get(instance_id) or {}).get("region")
        try:
            ec2 = self._backend().clients_for(region).ec2
            res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except Exception as exc:  # noqa: BLE001 - an instance we cannot see is not reused
            if not error_code(exc).startswith("InvalidInstanceID"):
                self.log(type="warning", message=f"cannot check instance {instance_id}: {exc}")
            return False
        return bool(res) and res[0]["Instances"][0]["State"]["Name"] == "running"

    def _end(self, instance_id: str, facts: dict) -> bool:
        """Cancel the instance's persistent spot request, then terminate it; False on failure."""
        from ..aws.launch import Launched, terminate_launched

        try:
            clients = self._backend().clients_for(facts.get("region"))
            terminate_launched(
                clients,
                Launched(instance_id=instance_id, spot_request_id=facts.get("spot_request_id")),
            )
        except Exception as exc:  # noqa: BLE001 - say so, and try the others
            self.log(
                type="warning",
                message=f"could not terminate instance {instance_id}: {exc}; "
                f"`runctl cleanup --yes` ends it",
            )
            return False
        return True

    def release(self) -> None:
        """The sweep ended: terminate the instances it launched (nothing left billing)."""
        if not self.active or self.leave:
            return
        for instance_id, facts in list(self.kept.items()):
            if not self._end(instance_id, facts):
                continue
            self.kept.pop(instance_id, None)
            self.log(type="instance", instance_id=instance_id, event="terminated")
        self.idle = []
