"""What a launch tries, in order: the (instance type, spot) candidates of `--fallback`
and the subnets, one an AZ (only the `--volume`'s AZ when there is one, since a volume
attaches only in its own AZ). A capacity error moves on to the next candidate."""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import tags
from .clients import Clients, error_code
from .launch_errors import LaunchError, VolumeZoneMismatch

if TYPE_CHECKING:
    from .launch import LaunchRequest


def candidates(req: LaunchRequest) -> list[tuple[str, bool]]:
    """(instance type, spot) to try in order: the type asked for, then --fallback."""
    out = [(req.instance_type, req.spot)]
    for item in req.fallback:
        if item == "on-demand":
            out.append((req.instance_type, False))
        elif (item, req.spot) not in out:
            out.append((item, req.spot))
    return out


def volume_zone(clients: Clients, volume_id: str, run_id: str | None = None) -> str:
    return str(volume_of(clients, volume_id, run_id)["AvailabilityZone"])


def volume_of(clients: Clients, volume_id: str, run_id: str | None = None) -> dict:
    """The `--volume` (or the run's own data volume, `run_id`), checked: runctl may attach it."""
    try:
        vols = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidVolume"):
            raise
        vols = []
    if not vols:
        raise LaunchError(
            f"volume {volume_id} not found in {clients.region}; check --volume and the region"
        )
    vol = vols[0]
    vol_tags = tags.tag_dict(vol.get("Tags"))
    own = bool(run_id) and vol_tags.get(tags.RUN_ID) == run_id  # an earlier attempt's --data-size
    if vol_tags.get(tags.MANAGED) != "true" or not (tags.is_kept(vol_tags) or own):
        # runctl (and a run's role) may attach only volumes the user opted in; kept, so
        # that `cleanup` never deletes the data on it
        raise LaunchError(
            f"volume {volume_id} is not opted in to runctl; tag it with `aws ec2 create-tags "
            f"--resources {volume_id} --tags Key={tags.MANAGED},Value=true "
            f"Key={tags.PERSISTENT},Value=true` (an admin may have to), then launch again"
        )
    if vol["State"] != "available":
        raise LaunchError(f"volume {volume_id} is {vol['State']}, not available; detach it first")
    return vol


def serve_run(clients: Clients, volume_id: str, run_id: str) -> None:
    """Mark the `--volume` as this run's (`runctl:volume-run`): the run's role may then
    attach it to the run's spot replacement, and no other run's role may."""
    clients.ec2.create_tags(Resources=[volume_id], Tags=tags.tag_list({tags.VOLUME_RUN: run_id}))


def choose_subnets(clients: Clients, subnet: str | None, zone: str | None) -> list[dict]:
    """Candidate subnets, best first: the one given, else default subnets (of `zone` if set)."""
    ec2 = clients.ec2
    if subnet:
        subnets = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
        if zone and subnets[0]["AvailabilityZone"] != zone:
            raise VolumeZoneMismatch(
                f"subnet {subnet} is in {subnets[0]['AvailabilityZone']} but the volume is in {zone}; "
                f"choose a subnet in {zone} or a volume in {subnets[0]['AvailabilityZone']}"
            )
        return subnets
    filters = [{"Name": "default-for-az", "Values": ["true"]}]
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    subnets = ec2.describe_subnets(Filters=filters)["Subnets"]
    if not subnets:
        where = zone or clients.region
        raise LaunchError(
            f"no default subnet in {where}; set c.AWSBackend.subnet to a subnet there"
        )
    return sorted(subnets, key=lambda s: s["AvailabilityZone"])
