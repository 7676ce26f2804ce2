"""An attempt started on a launched instance: its bundle (with the S3 sync settings its
agent follows) uploaded, the SSM bootstrap that starts the agent service, and the facts
kept in aws.json. A multi-node run does the same for M nodes (aws_cluster.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..aws import bootstrap, bundle, leases, ssm
from ..aws.clients import Clients
from ..aws.launch import Launched
from .aws_target import write_target

DEV_SYNC_SECONDS = 0.5  # a dev run's logs go up this often (others: every 15 s)


def published_models(clients: Clients, spec: dict) -> str:
    """The S3 folder of the registry's published models this run's role may read: its
    owner's (the `runctl:owner` tag its role carries) and its project's."""
    from ..aws.clients import owner_from_arn
    from ..aws.policy import models_prefix

    owner = (spec.get("options") or {}).get("owner") or owner_from_arn(clients.identity()["Arn"])
    return models_prefix(owner, spec.get("project") or "default")


def ship_and_start(
    backend: Any,
    clients: Clients,
    run_dir: Path,
    spec: dict,
    attempt: int,
    launched: Launched,
    bucket: str,
    pip: Any,
    sync_dirs: list,
) -> dict:
    assert launched.instance_id is not None, "ships to a launched (or chosen) instance"
    sync_cfg = {
        "kind": "s3",
        "bucket": bucket,
        "prefix": backend.prefix,
        "region": clients.region,
        "instance_id": launched.instance_id,
        "spot_request_id": launched.spot_request_id,
        "fleet_id": launched.fleet_id,
        "launch_template_id": launched.launch_template_id,
        "persistent": launched.persistent,  # the fleet refills: leave it on `resuming`
        "terminate": not (launched.reused or launched.keep),
    }
    held = getattr(backend, "held", {}).get(spec["run_id"]) or []
    sync_cfg.update(leases.sync_settings(held, backend.lease_renew_seconds))
    sync_cfg["models"] = published_models(clients, spec)  # what load_model may read
    if getattr(backend, "ecr_repository", "") and (spec.get("options") or {}).get("image_build"):
        sync_cfg["ecr_repository"] = backend.ecr_repository  # agent/ecr.py: pull, or build and push
    if (spec.get("options") or {}).get("dev"):
        sync_cfg["interval"] = DEV_SYNC_SECONDS  # a restart's first lines show at once
    data, requirements = bundle.build(run_dir, spec, sync_cfg, pip=pip, sync_dirs=sync_dirs)
    key = bundle.bundle_key(backend.prefix, spec["run_id"], attempt)
    backend._say("starting", f"uploading the bundle ({len(data) // 1024 + 1} KiB)")
    clients.s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
    script = bootstrap.script(
        bucket, key, clients.region, spec["run_id"], attempt, pins=requirements or ()
    )
    backend._say("starting", f"bootstrapping {launched.instance_id} through SSM")
    command_id = ssm.send(
        clients, launched.instance_id, script, comment=f"runctl run {spec['run_id']}"
    )
    done = ssm.wait(
        clients,
        command_id,
        launched.instance_id,
        timeout=backend.bootstrap_timeout,
        poll=backend.aws_poll,
        what="bootstrap",
    )
    for line in (done.get("StandardOutputContent") or "").splitlines():
        if line.startswith("runctl: s3://") and " to fetch, " in line:  # --data staging
            backend._say("starting", line[len("runctl: ") :])
    facts = launched.facts()
    facts.update(
        region=clients.region,
        bucket=bucket,
        prefix=backend.prefix,
        bundle_key=key,
        command_id=command_id,
        requirements=requirements,
        attempt=attempt,
    )
    write_target(run_dir, facts)
    return facts
