"""`--share read-only`: one EBS volume attached to several instances at once, where EBS
allows it, checked before anything is created.

EBS Multi-Attach (https://docs.aws.amazon.com/ebs/latest/userguide/ebs-volumes-multi.html):
only Provisioned IOPS SSD volumes (io1, io2) with Multi-Attach enabled, attached to up
to 16 instances built on the Nitro System in the same Availability Zone as the volume.
Any other volume (gp3, gp2, st1, ...) attaches to one instance at a time, so sharing it
is refused here in one line that says why and what to do. Each run mounts it read-only
(agent/volume.py, `mount -o ro`) and holds a read-only lease (aws/leases.py), which a
read-write attach then waits for.
"""

from __future__ import annotations

from typing import Any

from .clients import AWSError, Clients, error_code

MULTI_ATTACH_TYPES = ("io1", "io2")
MAX_ATTACHMENTS = 16
DOC = "https://docs.aws.amazon.com/ebs/latest/userguide/ebs-volumes-multi.html"


def _volume(clients: Clients, volume_id: str) -> dict:
    try:
        found = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidVolume"):
            raise
        found = []
    if not found:
        raise AWSError(
            f"volume {volume_id} not found in {clients.region}; check --volume and the region"
        )
    return found[0]


def _hypervisor(clients: Clients, instance_type: str) -> str | None:
    try:
        found = clients.ec2.describe_instance_types(InstanceTypes=[instance_type])["InstanceTypes"]
    except Exception as exc:  # noqa: BLE001 - the launch names a bad type itself
        if error_code(exc).startswith("InvalidInstanceType"):
            return None
        raise
    return found[0].get("Hypervisor") if found else None


def problem(volume: dict, hypervisor: str | None, instance_type: str) -> str | None:
    """Why EBS cannot share this volume with this instance type (one line), or None."""
    vid, vtype = volume.get("VolumeId"), volume.get("VolumeType")
    if vtype not in MULTI_ATTACH_TYPES:
        return (
            f"--share read-only: volume {vid} is {vtype}, and EBS attaches a {vtype} volume to "
            f"one instance at a time (Multi-Attach is for io1/io2 volumes only: {DOC}); drop "
            "--share to use it alone, or copy the data to an io2 volume made with "
            "--multi-attach-enabled"
        )
    if not volume.get("MultiAttachEnabled"):
        return (
            f"--share read-only: volume {vid} ({vtype}) has Multi-Attach off; turn it on with "
            f"`aws ec2 modify-volume --volume-id {vid} --multi-attach-enabled` (io2; {DOC}), "
            "or drop --share"
        )
    if hypervisor is not None and hypervisor != "nitro":
        return (
            f"--share read-only: {instance_type} is not built on the Nitro System, and only "
            f"Nitro instances take a Multi-Attach volume ({DOC}); choose a Nitro type"
        )
    if len(volume.get("Attachments") or []) >= MAX_ATTACHMENTS:
        return (
            f"--share read-only: volume {vid} is attached to {MAX_ATTACHMENTS} instances "
            f"already, EBS's most ({DOC}); wait until one of those runs ends"
        )
    return None


def check(
    clients: Clients, volume_id: str, instance_type: str | None, instance_id: Any = None
) -> None:
    """Refuse `--share read-only` where EBS cannot do it (before anything is created)."""
    volume = _volume(clients, volume_id)
    if instance_id:
        found = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        instance_type = found[0]["Instances"][0]["InstanceType"] if found else instance_type
    hypervisor = _hypervisor(clients, instance_type) if instance_type else None
    why = problem(volume, hypervisor, str(instance_type))
    if why:
        raise AWSError(why)
