"""`--volume vol-...`: the user's EBS volume, mounted on the instance as work/volume.

The volume is attached by the launch (or, on a spot fleet's replacement instance,
by `prepare` itself); here its block device is found and mounted, never formatted.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


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


def mount_command(device: str, mount_point: str, read_only: bool = False) -> list[str]:
    """`mount` (read-only for `--share read-only`: a Multi-Attach volume is written by
    at most the one read-write holder, docs/teams.md "Leases")."""
    return ["mount", *(["-o", "ro"] if read_only else []), device, mount_point]


def mount_volume(volume_id: str, work: Path, root: str = "/", read_only: bool = False) -> Path:
    """Mount the `--volume` (never formatted: it holds the user's data) and link it as
    work/volume; `read_only`: `mount -o ro`."""
    import subprocess

    device = volume_device(volume_id, root)
    if device is None:
        raise RuntimeError(
            f"volume {volume_id} is attached but no device appeared; check `lsblk` on the instance"
        )
    mount_point = Path(root) / "mnt" / volume_id
    mounted = Path(root, "proc", "mounts")
    text = mounted.read_text() if mounted.exists() else ""
    if f" {mount_point} " not in text:
        mount_point.mkdir(parents=True, exist_ok=True)
        subprocess.run(mount_command(device, str(mount_point), read_only), check=True)
    link = work / "volume"
    if not link.exists():
        link.symlink_to(mount_point)
    return mount_point
