"""A run's data volume on the instance (`spec["data_volume"]`): mounted at its mount
path (`c.AWSBackend.data_mount`, /data), linked as work/volume, and at the run's end
deleted when it is not kept.

The volume is attached by the launch (or, on a spot fleet's replacement instance, by
`prepare` itself); here its block device is found, formatted (ext4) only when it is
runctl's own data volume and `blkid -p` finds nothing on it (a new volume: never a
volume with data, never a user's `--volume vol-...`), and mounted. RUNCTL_FS_ROOT
(a test's stand-in folder, default /) prefixes every path; the commands are argv lists.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

MKFS = ["mkfs.ext4", "-q", "-m", "0", "-E", "nodiscard", "-L", "runctl-data"]


def fs_root() -> str:
    return os.environ.get("RUNCTL_FS_ROOT") or "/"


def volume_device(volume_id: str, root: str = "/", timeout: float = 60.0) -> str | None:
    """The block device of an attached EBS volume (Nitro: by its NVMe serial; Xen: /dev/sdf)."""
    serial = volume_id.replace("-", "")
    candidates = [
        f"dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}",
        f"dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}-ns-1",
        "dev/sdf",
        "dev/xvdf",
    ]
    end = time.monotonic() + timeout
    while True:
        for rel in candidates:
            path = os.path.join(root, rel)
            if os.path.exists(path):
                return path
        if time.monotonic() > end:
            return None
        time.sleep(1.0)


def _is_blank(device: str) -> bool:
    """`blkid -p` (low-level probe, no cache) finds no filesystem or partition table: it
    prints nothing and exits 2 ("no devices could be identified")."""
    found = subprocess.run(["blkid", "-p", device], capture_output=True, text=True)
    return found.returncode == 2 and not found.stdout.strip()


def _mounted(root: str, mount_point: Path) -> bool:
    mounts = Path(root, "proc", "mounts")
    text = mounts.read_text() if mounts.exists() else ""
    return any(line.split()[1:2] == [str(mount_point)] for line in text.splitlines())


def mount_data_volume(facts: dict[str, Any], work: Path, root: str | None = None) -> Path:
    """Mount the run's data volume (formatted first only if runctl's own and blank);
    returns the mount point, linked as work/volume."""
    root = root or fs_root()
    volume_id = str(facts["id"])
    device = volume_device(volume_id, root)
    if device is None:
        raise RuntimeError(
            f"volume {volume_id} is attached but no device appeared; check `lsblk` on the instance"
        )
    mount_point = Path(root, str(facts.get("mount") or "/data").lstrip("/"))
    if not _mounted(root, mount_point):
        if facts.get("format") and _is_blank(device):
            subprocess.run([*MKFS, device], check=True, capture_output=True)
        mount_point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", device, str(mount_point)], check=True, capture_output=True)
    link = work / "volume"
    if not link.is_symlink() and not link.exists():
        link.symlink_to(mount_point)
    return mount_point


def release(facts: dict[str, Any], region: str | None, timeout: float = 120.0) -> str | None:
    """At the run's end, a volume not kept: unmount, detach, delete (the run's role may,
    by its `runctl:volume-run` tag); None when done, else the one line why not
    (`cleanup` finds it: not kept, its run over)."""
    from .clients import make_ec2_client

    root = fs_root()
    mount_point = Path(root, str(facts.get("mount") or "/data").lstrip("/"))
    volume_id = str(facts["id"])
    try:
        if _mounted(root, mount_point):
            subprocess.run(["umount", str(mount_point)], check=True, capture_output=True)
        ec2 = make_ec2_client(region)
        vol = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        for att in vol.get("Attachments") or []:
            ec2.detach_volume(VolumeId=volume_id, InstanceId=att["InstanceId"])
        deadline = time.monotonic() + timeout
        while vol["State"] != "available":
            if time.monotonic() > deadline:
                return f"volume {volume_id} still attached after {timeout:.0f} s"
            time.sleep(1.0)
            vol = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        ec2.delete_volume(VolumeId=volume_id)
    except Exception as exc:  # noqa: BLE001 - one line; the instance's end goes on
        return f"delete volume {volume_id}: {exc}"
    return None
