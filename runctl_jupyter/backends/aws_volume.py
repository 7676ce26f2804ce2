"""A run's data volume on the notebook side: which volume the launch attaches or creates
(`--volume vol-...|NAME`, `--data-size GB` with `--persistent`/`--volume-name`, or on a
later attempt the volume the first one created), and, once launched, what the instance
side is told (`spec["data_volume"]`, `spec["data_mount"]`) (docs/aws.md, "Data volumes").
"""

from __future__ import annotations

from pathlib import Path

from ..aws import data_volume
from ..aws.clients import Clients
from ..aws.launch import Launched, LaunchRequest
from .aws_target import read_target


def choose(clients: Clients, run_dir: Path, spec: dict, opts: dict, req: LaunchRequest) -> None:
    """Fill the request's volume fields, before anything is created."""
    if opts.get("data_size"):
        earlier = read_target(run_dir, spec).get("volume")
        if earlier and _exists(clients, str(earlier)):
            req.volume = str(earlier)  # a later attempt: the volume the first one created
            return
        req.data_size = data_volume.check_size(int(opts["data_size"]))
        if opts.get("persistent"):
            name = opts.get("volume_name") or data_volume.default_name(
                spec.get("experiment"), spec["run_id"]
            )
            req.volume_name = data_volume.check_new_name(clients, str(name), req.owner)
    elif opts.get("volume"):
        req.volume = data_volume.resolve(clients, str(opts["volume"]), req.owner)


def record(run_dir: Path, spec: dict, launched: Launched, mount: str) -> None:
    """Tell the instance side where to mount the volume, and the run where it is."""
    from ..store.folders import write_spec

    if not launched.volume:
        return
    spec["data_volume"] = data_volume.mount_facts(launched, mount)
    spec["data_mount"] = mount
    write_spec(run_dir, spec)


def _exists(clients: Clients, volume_id: str) -> bool:
    """False once the end of an earlier attempt deleted it (a `resume` gets a new one)."""
    found = clients.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])
    return bool(found["Volumes"])
