"""Leases on shared resources, the notebook side: a run that uses a `--volume` or a kept
`--instance` holds a lease on it, taken before anything is created and given back when
the run ends (docs/teams.md, "Leases"; the object layout is agent/lease.py's).

Acquire, read-write: put our holder object (`leases/<res>/rw/<run>.json`), then the
guard `leases/<res>.json` with `IfNoneMatch="*"`: of two launches racing, S3 lets exactly
one create it (the loser gets 412 PreconditionFailed). A guard whose holder is gone or
expired is taken over with `IfMatch=<its etag>` (again, one winner). Then no live
read-only holder may be there. Read-only: put our holder under `ro/`, then no live
read-write guard may be there. Each side writes before it reads, so of a read-write and
a read-only acquire racing, at least one sees the other and backs off.
S3 conditional writes: https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..agent.lease import (
    EXPIRY_BEATS,
    LOST,
    guard_key,
    holder_body,
    holder_key,
    holders_prefix,
    is_live,
)
from .clients import AWSError, error_code

# a lease taken at launch lasts this long before the agent's first renewal
LAUNCH_SECONDS = 3600.0


class LeaseHeld(AWSError):
    """The resource is leased by another run: one line naming its owner and run."""


def _read(s3: Any, bucket: str, key: str) -> tuple[dict | None, str | None]:
    try:
        answer = s3.get_object(Bucket=bucket, Key=key)
    except Exception as exc:
        if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            return None, None
        raise
    try:
        body = json.loads(answer["Body"].read())
    except ValueError:
        body = {}
    return (body if isinstance(body, dict) else {}), str(answer["ETag"])


def rw_holder(s3: Any, bucket: str, prefix: str, resource: str, now: float | None = None) -> Any:
    """(the live read-write holder or None, the guard's etag or None)."""
    guard, etag = _read(s3, bucket, guard_key(prefix, resource))
    if guard is None:
        return None, None
    run_id = str(guard.get("run_id") or "")
    holder, _ = (
        _read(s3, bucket, holder_key(prefix, resource, "rw", run_id)) if run_id else (None, None)
    )
    return (holder if is_live(holder, now) else None), etag


def ro_holders(s3: Any, bucket: str, prefix: str, resource: str, now: float | None = None) -> list:
    found = []
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=holders_prefix(prefix, resource, "ro")
    )
    for page in pages:
        for item in page.get("Contents") or []:
            body, _ = _read(s3, bucket, item["Key"])
            if is_live(body, now):
                found.append(body)
    return found


def holders(s3: Any, bucket: str, prefix: str, resource: str) -> list[dict]:
    """Every live holder of `resource` (read-write first); [] when it is free."""
    try:
        rw, _ = rw_holder(s3, bucket, prefix, resource)
        return ([rw] if rw else []) + ro_holders(s3, bucket, prefix, resource)
    except Exception as exc:
        if error_code(exc) == "NoSuchBucket":
            return []
        raise


def _who(holder: dict) -> str:
    return f"{holder.get('owner') or 'someone'}'s run {holder.get('run_id') or '?'}"


def refusal(resource: str, holder: dict, wanted: str) -> str:
    """One line: who holds `resource`, and what to do."""
    kind = "instance" if resource.startswith("i-") else "volume"
    mine = f"wait until it ends, or `runctl stop {holder.get('run_id')}` if it is yours"
    if kind == "instance":
        return f"instance {resource} is in use by {_who(holder)} (leased); {mine}, or launch without --instance"
    if holder.get("mode") == "ro":
        return (
            f"volume {resource} is shared read-only by {_who(holder)}; attach it with "
            f"--share read-only too, or {mine}"
        )
    also = "" if wanted == "rw" else " (read-write: nobody may share it meanwhile)"
    return f"volume {resource} is leased read-write by {_who(holder)}{also}; {mine}"


def _put(s3: Any, bucket: str, key: str, body: bytes, **cond: str) -> str:
    answer = s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256", **cond)
    return str(answer["ETag"])


def _delete(s3: Any, bucket: str, key: str, etag: str | None) -> None:
    try:
        if etag:
            s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    except Exception as exc:
        if error_code(exc) not in LOST:
            raise


def _own_holder(s3: Any, bucket: str, key: str, body: bytes) -> str:
    """Our holder object, written (a resumed run finds its own: written over, `IfMatch`)."""
    _, etag = _read(s3, bucket, key)
    return _put(s3, bucket, key, body, **({"IfMatch": etag} if etag else {"IfNoneMatch": "*"}))


def _take_guard(s3: Any, bucket: str, prefix: str, resource: str, run_id: str, owner: str) -> str:
    """The read-write guard for `run_id`, or LeaseHeld naming its live holder."""
    key = guard_key(prefix, resource)
    body = json.dumps({"resource": resource, "run_id": run_id, "owner": owner, "t": time.time()})
    for _ in range(5):
        holder, etag = rw_holder(s3, bucket, prefix, resource)
        if holder is not None and holder.get("run_id") != run_id:
            raise LeaseHeld(refusal(resource, holder, "rw"))
        cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
        try:
            return _put(s3, bucket, key, body.encode(), **cond)
        except Exception as exc:
            if error_code(exc) not in LOST:
                raise
    raise AWSError(f"the lease on {resource} keeps changing hands; launch again")


def acquire(
    s3: Any,
    bucket: str,
    prefix: str,
    resource: str,
    mode: str,
    owner: str,
    run_id: str,
    seconds: float = LAUNCH_SECONDS,
) -> dict:
    """Take the lease on `resource` for `run_id` (mode "rw" or "ro"), or raise LeaseHeld
    (nothing of ours is left behind). Returns what the agent renews."""
    own = holder_key(prefix, resource, mode, run_id)
    etag = _own_holder(s3, bucket, own, holder_body(resource, owner, run_id, mode, seconds))
    try:
        if mode == "rw":
            guard = _take_guard(s3, bucket, prefix, resource, run_id, owner)
            others = [
                h for h in ro_holders(s3, bucket, prefix, resource) if h.get("run_id") != run_id
            ]
            if others:
                _delete(s3, bucket, guard_key(prefix, resource), guard)
                raise LeaseHeld(refusal(resource, others[0], "rw"))
        else:
            holder, _ = rw_holder(s3, bucket, prefix, resource)
            if holder is not None and holder.get("run_id") != run_id:
                raise LeaseHeld(refusal(resource, holder, "ro"))
    except BaseException:
        _delete(s3, bucket, own, etag)
        raise
    return {"resource": resource, "mode": mode, "owner": owner}


def release(s3: Any, bucket: str, prefix: str, run_id: str, held: list[dict]) -> None:
    """Give back what `acquire` took (a failed launch); the agent does it at a run's end."""
    for lease in held:
        key = holder_key(prefix, lease["resource"], lease["mode"], run_id)
        _, etag = _read(s3, bucket, key)
        _delete(s3, bucket, key, etag)


def wanted(opts: dict) -> list[tuple[str, str]]:
    """(resource, mode) a run's options lease: its `--volume`, its kept `--instance`."""
    found = []
    if opts.get("volume"):
        found.append((str(opts["volume"]), "ro" if opts.get("share") == "read-only" else "rw"))
    if opts.get("instance"):
        found.append((str(opts["instance"]), "rw"))
    return found


def acquire_all(
    s3: Any, bucket: str, prefix: str, run_id: str, owner: str, opts: dict, seconds: float
) -> list[dict]:
    """Every lease the run needs, all or none."""
    held: list[dict] = []
    try:
        for resource, mode in wanted(opts):
            held.append(acquire(s3, bucket, prefix, resource, mode, owner, run_id, seconds))
    except BaseException:
        release(s3, bucket, prefix, run_id, held)
        raise
    return held


def sync_settings(held: list[dict], renew_seconds: float) -> dict:
    """What the agent's Keeper needs (spec["sync"]: `leases`, `lease_renew_seconds`)."""
    if not held:
        return {}
    return {"leases": held, "lease_renew_seconds": renew_seconds, "lease_beats": EXPIRY_BEATS}


def cleanup_refusal(s3: Any, bucket: str, prefix: str, resource: str) -> str | None:
    """Why `cleanup` must leave `resource` alone (a live lease), or None."""
    found = holders(s3, bucket, prefix, resource)
    if not found:
        return None
    return f"leased by {_who(found[0])}: left alone; it is free when that run ends"
