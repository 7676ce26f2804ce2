"""A model's versions and aliases published to S3, for `runctl.load_model` on an
instance (agent/models_mirror.py fetches them before each attempt).

`models promote` and `models rollback` publish the model when this session runs on AWS
(`c.Runctl.backend = "aws"`) or one of its versions came from an AWS run: to
`runctl/models/<owner>/<project>/<name>/` in runctl's bucket, where `<owner>` and
`<project>` are those an AWS run of this session is tagged with, so its role may read
them (aws/policy.py `_models_reach`) and no other owner's or project's run may. Each
version's file goes once (`artifacts/NNNNNN/<file>`, a pickled object or a file; a
folder is not published), with its sha256 in `versions/NNNNNN.json`; `aliases.jsonl`
is copied whole, so an alias moved here moves there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..registry import Registry


def wanted(session: Any, registry: Registry, name: str) -> bool:
    if session.config.backend == "aws":
        return True
    for entry in registry.versions(name):
        try:
            spec = json.loads(
                (session.store.run_dir(str(entry.get("run_id"))) / "spec.json").read_text()
            )
        except (OSError, ValueError):
            continue
        if spec.get("backend") == "aws":
            return True
    return False


def publish(session: Any, registry: Registry, name: str) -> str:
    """Publish `name`; the line to say."""
    from ..aws.clients import owner_from_arn
    from ..aws.policy import models_prefix

    backend = session.backend("aws")
    clients = backend.clients
    # as an AWS run's roles are tagged: c.Runctl.owner when set on purpose, else the IAM name
    chosen = session._owner_chosen() and session.config.owner
    owner = chosen or owner_from_arn(clients.identity()["Arn"])
    bucket = backend._bucket(clients)
    folder = f"{models_prefix(owner, session.config.project or 'default')}{name}/"
    listed = clients.s3.list_objects_v2(Bucket=bucket, Prefix=folder + "artifacts/")
    have = {o["Key"] for o in listed.get("Contents", [])}
    sent = 0
    for entry in registry.versions(name):
        path = Path(entry["artifact"])
        if not path.is_file():
            continue  # a folder, or gone: not published (load_model says so there)
        number = f"{int(entry['version']):06d}"
        key = f"{folder}artifacts/{number}/{path.name}"
        if key not in have:
            clients.s3.upload_file(
                str(path), bucket, key, ExtraArgs={"ServerSideEncryption": "AES256"}
            )
        record = {**entry, "file": path.name}
        clients.s3.put_object(
            Bucket=bucket,
            Key=f"{folder}versions/{number}.json",
            Body=json.dumps(record, indent=1, default=str).encode(),
            ServerSideEncryption="AES256",
        )
        sent += 1
    aliases = registry.root / name / "aliases.jsonl"
    if aliases.exists():
        clients.s3.put_object(
            Bucket=bucket,
            Key=f"{folder}aliases.jsonl",
            Body=aliases.read_bytes(),
            ServerSideEncryption="AES256",
        )
    return f"published {name} ({sent} version(s)) to s3://{bucket}/{folder} for runs on AWS"
