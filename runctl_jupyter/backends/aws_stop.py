"""Stopping a run on EC2: SSM runs the stop script on the instance (the agent stops the
code, syncs, and the instance ends unless it was reused or kept); an instance that
cannot be reached, or a forced stop, is terminated from here, but only if the run
launched it (with its data volume, unless kept: the agent had no chance to). A multi-node run stops every node (aws_cluster.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..aws import bootstrap, ssm
from ..aws.clients import AWSError, error_code
from ..aws.launch import Launched, terminate_launched
from ..aws.spot_fleet import current_instance
from . import aws_cluster
from .aws_target import read_target


def stop(backend: Any, run_dir: Path, spec: dict, force: bool, reason: str) -> None:
    target = read_target(run_dir, spec)
    clients = backend.clients_for(target.get("region"))
    instance_id = current_instance(clients, target)
    if not instance_id:
        return
    if target.get("cluster"):
        aws_cluster.stop(backend, clients, spec, target, force, reason)
        return
    owned = not (target.get("reused") or target.get("keep"))
    launched = Launched(
        instance_id=instance_id,
        spot_request_id=target.get("spot_request_id"),
        fleet_id=target.get("fleet_id"),
        launch_template_id=target.get("launch_template_id"),
        # a data volume that is not kept goes with an instance ended from here
        volume=target.get("volume"),
        volume_created=bool(target.get("volume") and target.get("volume_delete")),
    )
    try:
        res = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        state = res[0]["Instances"][0]["State"]["Name"] if res else "terminated"
    except Exception as exc:
        if not error_code(exc).startswith("InvalidInstanceID"):
            raise
        state = "terminated"
    if state in ("shutting-down", "terminated"):
        if owned and target.get("persistent"):
            terminate_launched(clients, launched)  # between instances: no refill after a stop
        return
    delivered = False
    if state == "running":
        try:
            script = bootstrap.stop_script(spec["run_id"], force=force, reason=reason)
            command_id = ssm.send(
                clients, instance_id, script, comment="runctl stop", delivery_timeout=30
            )
            ssm.wait(
                clients, command_id, instance_id, timeout=45, poll=backend.aws_poll, what="stop"
            )
            delivered = True
        except AWSError:
            delivered = False
    if owned and (force or not delivered):
        terminate_launched(clients, launched)
    elif not delivered:
        raise AWSError(
            f"could not reach {instance_id} to stop run {spec['run_id']} (it is {state}; a reused or kept "
            f"instance is never terminated by runctl): check `runctl aws doctor`, or stop the instance yourself"
        )
