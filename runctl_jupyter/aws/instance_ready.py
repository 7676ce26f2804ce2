"""Waiting until a launched instance is usable: running, its `--volume` attached, its
SSM agent online (the single launch and every node of a multi-node run).

Each wait has a deadline and names what to check when it passes; an instance that
ends before it runs (spot capacity taken back at boot) fails at once.
"""

from __future__ import annotations

import time

from .backoff import delays, pause
from .clients import Clients
from .launch_errors import LaunchError


def wait_running(
    clients: Clients, instance_id: str, timeout: float = 600.0, poll: float = 2.0
) -> dict:
    deadline = time.monotonic() + timeout
    steps = delays(poll)
    while True:
        inst = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
        state = inst["State"]["Name"]
        if state == "running":
            return inst
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            reason = inst.get("StateReason", {}).get("Message", "")
            raise LaunchError(
                f"instance {instance_id} is {state} before it ran ({reason}); try again or --on-demand"
            )
        if time.monotonic() > deadline:
            raise LaunchError(
                f"instance {instance_id} not running after {timeout:.0f} s; try another type or region"
            )
        pause(next(steps), deadline)


def wait_ssm_online(
    clients: Clients, instance_id: str, timeout: float = 600.0, poll: float = 2.0
) -> None:
    """Wait for the instance's SSM agent to report Online (boot + agent start)."""
    deadline = time.monotonic() + timeout
    steps = delays(poll)
    while True:
        info = clients.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )["InstanceInformationList"]
        if info and info[0].get("PingStatus") == "Online":
            return
        if time.monotonic() > deadline:
            raise LaunchError(
                f"the SSM agent of {instance_id} did not come online in {timeout:.0f} s; "
                f"check that its instance profile has AmazonSSMManagedInstanceCore (`runctl aws doctor`)"
            )
        pause(next(steps), deadline)


def attach_volume(
    clients: Clients, volume_id: str, instance_id: str, poll: float = 2.0, timeout: float = 300.0
) -> None:
    clients.ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    deadline = time.monotonic() + timeout
    steps = delays(poll)
    while True:
        vol = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        mine = [a for a in vol.get("Attachments") or [] if a.get("InstanceId") == instance_id]
        if vol["State"] == "in-use" and (not vol.get("MultiAttachEnabled") or mine):
            return
        if time.monotonic() > deadline:
            raise LaunchError(
                f"volume {volume_id} did not attach to {instance_id} in {timeout:.0f} s"
            )
        pause(next(steps), deadline)
