"""Data volumes: `--data-size GB` creates one, `--persistent` keeps it under a name that
`--volume NAME` finds again, and a volume that is not kept goes when its run ends.

A created volume is encrypted gp3, tagged from the start (CreateVolume's
TagSpecifications: the run's tags, `runctl:volume-run`, and with `--persistent`
`runctl:persistent=true` and `runctl:volume-name`), in the AZ the launch chose before
it created anything (aws/launch.py). `spec["data_volume"]` tells the instance side
(agent/volume.py) to mount it at `c.AWSBackend.data_mount`, to format it only when it
holds no filesystem, and whether to delete it at the run's end (docs/aws.md, "Data
volumes").
"""

from __future__ import annotations

import re
import time
from typing import Any

from . import tags
from .clients import Clients, error_code
from .launch_errors import LaunchError

GP3_MAX_GIB = 16384  # gp3: 1 GiB to 16 TiB (EBS volume types page)
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_size(size: int) -> int:
    if not 1 <= int(size) <= GP3_MAX_GIB:
        raise LaunchError(f"--data-size must be 1 to {GP3_MAX_GIB} GiB (gp3), not {size}")
    return int(size)


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name or ""):
        raise LaunchError(
            f"--volume-name {name!r}: use letters, digits, - _ . (up to 128, a letter or digit first)"
        )
    return name


def default_name(experiment: str | None, run_id: str) -> str:
    """A name from the experiment (else the run), cleaned to what `check_name` accepts."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", experiment or "").strip("-._")
    return (base or f"run-{run_id}")[:128]


def is_volume_id(text: str) -> bool:
    return bool(re.fullmatch(r"vol-[0-9a-f]{8,17}", text or ""))


def named(clients: Clients, name: str, owner: str) -> list[dict]:
    """This owner's runctl volumes called `name`."""
    return list(
        clients.ec2.describe_volumes(
            Filters=[
                {"Name": f"tag:{tags.MANAGED}", "Values": ["true"]},
                {"Name": f"tag:{tags.VOLUME_NAME}", "Values": [name]},
                {"Name": f"tag:{tags.OWNER}", "Values": [owner]},
            ]
        )["Volumes"]
    )


def check_new_name(clients: Clients, name: str, owner: str) -> str:
    """A `--persistent` volume's name must be new: `--volume NAME` finds one volume."""
    found = named(clients, check_name(name), owner)
    if found:
        raise LaunchError(
            f"you have a volume named {name!r} already ({found[0]['VolumeId']}): "
            f"use --volume {name}, or another --volume-name"
        )
    return name


def resolve(clients: Clients, volume: str, owner: str) -> str:
    """`--volume vol-...` as it is; `--volume NAME`: this owner's persistent volume of that name."""
    if is_volume_id(volume):
        return volume
    found = named(clients, volume, owner)
    if not found:
        raise LaunchError(
            f"no volume named {volume!r} of {owner} in {clients.region}; "
            f"`%runctl resources` lists them (create one with --data-size GB --persistent)"
        )
    if len(found) > 1:
        ids = ", ".join(v["VolumeId"] for v in found)
        raise LaunchError(
            f"{len(found)} volumes are named {volume!r} ({ids}); use --volume vol-..."
        )
    return str(found[0]["VolumeId"])


def create(
    clients: Clients,
    zone: str,
    size: int,
    run_tags: dict[str, str],
    name: str | None,
    poll: float = 2.0,
    timeout: float = 300.0,
) -> str:
    """An encrypted gp3 volume in `zone`, tagged at creation; waits until it is available."""
    vol_tags = dict(run_tags, **{tags.VOLUME_RUN: run_tags[tags.RUN_ID]})
    if name:
        vol_tags.update({tags.PERSISTENT: "true", tags.VOLUME_NAME: name})
    vol = clients.ec2.create_volume(
        AvailabilityZone=zone,
        Size=check_size(size),
        VolumeType="gp3",
        Encrypted=True,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags.tag_list(vol_tags)}],
    )
    volume_id = str(vol["VolumeId"])
    deadline = time.monotonic() + timeout
    while vol.get("State") != "available":
        if time.monotonic() > deadline:
            raise LaunchError(f"volume {volume_id} not available after {timeout:.0f} s")
        time.sleep(poll)
        vol = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    return volume_id


def delete_when_free(clients: Clients, volume_id: str, timeout: float = 120.0) -> bool:
    """Detach (its instance is ending) and delete a volume this launch created; False when
    it could not (`cleanup` finds it: not kept, its run over)."""
    ec2 = clients.ec2
    deadline = time.monotonic() + timeout
    detached = False
    while True:
        try:
            vols = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
            if not vols:
                return True
            if vols[0]["State"] == "available":
                ec2.delete_volume(VolumeId=volume_id)
                return True
            for att in [] if detached else vols[0].get("Attachments") or []:
                detached = True  # its instance is ending: no data to flush
                ec2.detach_volume(VolumeId=volume_id, InstanceId=att["InstanceId"], Force=True)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc).startswith("InvalidVolume.NotFound"):
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(2.0)


def mount_facts(launched: Any, mount: str) -> dict[str, Any]:
    """What the instance side needs (spec["data_volume"])."""
    return {
        "id": launched.volume,
        "mount": mount,
        "format": bool(launched.volume_format),
        "delete": bool(launched.volume_delete),
    }
