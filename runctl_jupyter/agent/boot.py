"""Which attempt an instance runs: the claim the bootstrap's staging step makes.

Every attempt that starts on an instance leaves a marker in S3,
`<prefix>runs/<id>/attempts/000002.json = {"instance_id", "t"}`. The boot script of
a spot fleet's instances (aws/bootstrap.py, `ATTEMPT=next`) runs at
every instance's first boot, including the first instance, which the notebook
bootstraps through SSM. So the boot script starts an attempt only on a
*replacement*: an attempt was already claimed by another instance. With no marker
(the first instance, before or while SSM bootstraps it) or a marker of this
instance, it does nothing, so an attempt never runs twice.

On a replacement, after the run folder is restored from S3 (`restore`), the next
attempt is one past the last in the events; when the stream ends with an `exit`
event the run is over (a delete that failed left the fleet): the fleet is deleted
and this instance terminated.

boto3 is imported lazily (it is in the instance's venv).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .clients import make_s3_client
from .s3 import run_prefix

MARKERS = "attempts/"


def markers(cfg: dict, run_id: str, s3: Any = None) -> dict[int, dict]:
    """The attempts claimed so far: {attempt: {"instance_id", "t"}}."""
    s3 = s3 or make_s3_client(cfg.get("region"))
    prefix = run_prefix(cfg, run_id) + MARKERS
    out: dict[int, dict] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=cfg["bucket"], Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"][len(prefix) :].split(".", 1)[0]
            if name.isdigit():
                body = s3.get_object(Bucket=cfg["bucket"], Key=obj["Key"])["Body"].read()
                try:
                    out[int(name)] = json.loads(body)
                except ValueError:
                    out[int(name)] = {}
    return out


def replacement_wanted(cfg: dict, run_id: str, me: str | None) -> str | None:
    """None when this instance should start the next attempt, else why not."""
    if not me:
        return "this instance's id is unknown (no instance metadata): not starting"
    claimed = markers(cfg, run_id)
    if not claimed:
        return "no attempt has started yet: the first one is bootstrapped through SSM"
    last = max(claimed)
    owner = claimed[last].get("instance_id")
    if owner == me:
        return f"attempt {last} is this instance's already"
    if owner is None:
        return f"attempt {last} is being launched and bootstrapped through SSM"
    return None


def record_attempt(cfg: dict, run_id: str, attempt: int, me: str | None) -> None:
    s3 = make_s3_client(cfg.get("region"))
    key = f"{run_prefix(cfg, run_id)}{MARKERS}{int(attempt):06d}.json"
    body = json.dumps({"instance_id": me, "t": time.time()}).encode()
    s3.put_object(Bucket=cfg["bucket"], Key=key, Body=body)


def next_attempt(run_dir: Path) -> int | None:
    """One past the last attempt in the restored events; None when the run is over."""
    from ..events import read_events
    from .service import attempt_end

    if attempt_end(run_dir) == "exit":
        return None
    events, _ = read_events(run_dir / "events.jsonl")
    return max((int(e.get("attempt", 1)) for e in events), default=0) + 1


def adopt(run_dir: Path, me: str) -> dict:
    """Make the spec this instance's: its id in the sync settings (the end of the run
    terminates this instance). The launch template already tagged it and required
    IMDSv2; a `--volume` is attached by `_prepare(attach_as=...)` (the fleet launches
    only in the volume's AZ)."""
    spec_path = run_dir / "spec.json"
    spec = json.loads(spec_path.read_text())
    cfg = spec.get("sync") or {}
    cfg["instance_id"] = me
    spec["sync"] = cfg
    tmp = spec_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    tmp.replace(spec_path)
    return spec


def attach_volume(ec2: Any, volume_id: str, me: str, timeout: float = 300.0) -> None:
    """Attach the run's data volume here once the interrupted instance has let it go."""
    deadline = time.monotonic() + timeout
    while True:
        vol = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        attached = [a.get("InstanceId") for a in vol.get("Attachments", [])]
        if me in attached:
            return
        if vol["State"] == "available":
            ec2.attach_volume(VolumeId=volume_id, InstanceId=me, Device="/dev/sdf")
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"volume {volume_id} is still attached to {attached} after {timeout:.0f} s"
            )
        time.sleep(5)


def fail_attempt(run_dir: Path, attempt: int, message: str) -> None:
    """The replacement could not start its attempt: the run ends `failed` with the reason
    (in the events, so a notebook that looks later sees why), then everything goes to S3."""
    from ..events import EventWriter
    from .s3 import Sync

    spec = json.loads((run_dir / "spec.json").read_text())
    cfg = spec.get("sync") or {}
    # the sync first: it takes what the events hold now (restored from S3) as sent
    sync = Sync(run_dir, cfg) if cfg.get("kind") == "s3" else None
    events = EventWriter(run_dir, attempt)
    events.write("status", status="starting")
    error = {"type": "ResumeFailed", "message": message, "traceback": ""}
    events.write(
        "exit", status="failed", reason="resume", exit_code=None, error=error, duration=0.0
    )
    events.close()
    if sync is not None:
        sync.final(deadline=120)
