"""A dev run's restart on its EC2 instance (`runctl dev`, runs/dev.py; docs/dev.md).

Only the changed files go up, next to the run's bundles and named by content hash
(`runs/<id>/bundle/files/<sha256>`), with a small manifest of where each goes
(`runs/<id>/bundle/dev/<attempt>-<ms>.json`); one SSM command
(`bootstrap.restart_script`, a fixed control.json) asks the instance's agent to
restart: it stops the attempt, fetches the files with its own S3 client while the
code stops, checks each against its hash, and starts the next attempt
(agent/restart.py). No instance, bundle, venv or package install.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..aws import bootstrap, ssm
from .aws_target import read_target

DELIVERY_SECONDS = 30
RESTART_TIMEOUT = 60.0


def dev_prefix(prefix: str, run_id: str) -> str:
    """Where a run's dev files go: beside its bundles (aws/bundle.py `bundle_key`)."""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}runs/{run_id}/bundle/"


def restart(
    backend: Any, run_dir: Path, spec: dict, changed: dict[str, bytes], names: list[str]
) -> bool:
    """Upload `changed` (name in the bundle -> bytes), then ask the instance's agent to
    restart. False when no agent is there (its wait ran out): the caller relaunches."""
    target = read_target(Path(run_dir), spec)
    instance_id, bucket = target.get("instance_id"), target.get("bucket")
    if not instance_id or not bucket:
        return False
    clients = backend.clients_for(target.get("region"))
    base = dev_prefix(target.get("prefix", backend.prefix), spec["run_id"])
    files = {}
    for name, data in sorted(changed.items()):
        digest = hashlib.sha256(data).hexdigest()
        clients.s3.put_object(
            Bucket=bucket, Key=f"{base}files/{digest}", Body=data, ServerSideEncryption="AES256"
        )
        files[name] = digest
    attempt = int(target.get("attempt") or 1)
    manifest_key = f"{base}dev/{attempt}-{int(time.time() * 1000)}.json"
    manifest = {"files": files, "files_prefix": f"{base}files/", "changed": names}
    clients.s3.put_object(
        Bucket=bucket,
        Key=manifest_key,
        Body=json.dumps(manifest).encode(),
        ServerSideEncryption="AES256",
    )
    script = bootstrap.restart_script(spec["run_id"], manifest_key)
    command_id = ssm.send(
        clients,
        instance_id,
        script,
        comment="runctl dev restart",
        delivery_timeout=DELIVERY_SECONDS,
    )
    answer = ssm.wait(
        clients, command_id, instance_id, timeout=RESTART_TIMEOUT, poll=backend.aws_poll,
        what="dev restart",
    )  # fmt: skip
    return "restart-requested" in (answer.get("StandardOutputContent") or "")
