"""A run fired by an AWS schedule, on the instance EventBridge Scheduler started.

The schedule's bundle (schedules/aws_clock.py) holds a template run: its spec, code
and pins, with `trigger = {"schedule": NAME, ...}` and the S3 sync settings of the
schedule's prefix (`runctl/runs/sched-NAME/`, the reach of the schedule's instance
role). At boot the fire script (aws/bootstrap.py `fire_script`) takes a new run id;
`adopt` makes the template that run: its id, its creation and fire time, why it fired,
this instance; and puts its spec.json in S3 next to its events, where the notebook
side finds it by listing (`runs`, `schedules`). Standard library; boto3 is passed in.

A data trigger's fire (aws/data_rule.py: the settle schedule) checks the data first, as
the local fire does (schedules/data.py): the prefix's manifest (key, size, ETag) against
the last triggered run's, kept at `<schedule prefix>schedule/manifest.json`. No new
object, or data older than `--max-data-age`: no run; the reason goes to
`schedule/refused.json`, where `schedules` reads it, and the instance ends.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from .s3 import run_prefix

OBJECTS_IN_RECORD = 20


def adopt(stage: str, run_id: str, me: str | None, s3: Any) -> dict | None:
    """Make the staged template run `run_id`; returns its spec (None: no run, said why)."""
    path = Path(stage) / "run" / "spec.json"
    spec = json.loads(path.read_text())
    now = time.time()
    if (spec.get("trigger") or {}).get("data") and not check_data(spec, now, s3):
        return None
    cfg = dict(spec.get("sync") or {})
    cfg["instance_id"] = me
    spec.update(run_id=run_id, created=now, sync=cfg)
    trigger = dict(spec.get("trigger") or {})
    name = trigger.get("schedule", "?")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    trigger.update(
        fired=now,
        reason=trigger.get("reason") or f"EventBridge Scheduler at {stamp}",
        instance=me,
        clock="eventbridge-scheduler",
    )
    trigger.setdefault("schedule", name)
    spec["trigger"] = trigger
    text = json.dumps(spec, indent=1)
    path.write_text(text)
    key = run_prefix(cfg, run_id) + "spec.json"
    s3.put_object(Bucket=cfg["bucket"], Key=key, Body=text.encode(), ServerSideEncryption="AES256")
    return spec


def _objects(s3: Any, bucket: str, prefix: str) -> list[dict]:
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            if not item["Key"].endswith("/"):
                etag = str(item.get("ETag") or "").strip('"')
                modified = item["LastModified"].timestamp()
                found.append(
                    {
                        "key": item["Key"],
                        "size": int(item.get("Size") or 0),
                        "etag": etag,
                        "modified": modified,
                    }
                )
    return found


def digest(manifest: dict) -> str:
    """As schedules/data.py `manifest_digest`: the same data, the same hash."""
    text = json.dumps(sorted([k, *v] for k, v in manifest.items()), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _put(s3: Any, cfg: dict, name: str, value: Any) -> None:
    key = f"{cfg['prefix'].rstrip('/')}/schedule/{name}"
    body = json.dumps(value).encode()
    s3.put_object(Bucket=cfg["bucket"], Key=key, Body=body, ServerSideEncryption="AES256")


def _last_manifest(s3: Any, cfg: dict) -> dict:
    key = f"{cfg['prefix'].rstrip('/')}/schedule/manifest.json"
    try:
        return dict(json.loads(s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read()))
    except Exception:  # noqa: BLE001 - the first fire: no manifest yet
        return {}


def _refusal(uri: str, objects: list, fresh: list, max_age: Any, now: float) -> str:
    if not fresh:
        return f"no new data in {uri}: nothing fired"
    newest = max(objects, key=lambda o: o["modified"])
    age = now - newest["modified"]
    if max_age and age > float(max_age):
        bucket = uri[len("s3://") :].split("/", 1)[0]
        return (
            f"stale data: the newest object s3://{bucket}/{newest['key']} is {age / 3600:.1f}h "
            f"old, over --max-data-age {float(max_age) / 3600:.1f}h; upload fresh data or "
            "raise --max-data-age"
        )
    return ""


def check_data(spec: dict, now: float, s3: Any) -> bool:
    """New, fresh data: the trigger records it and the manifest is kept (True); else the
    reason is put in S3 for `schedules` (False)."""
    trigger, cfg = spec["trigger"], spec.get("sync") or {}
    uri = str(trigger["data"])
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    objects = _objects(s3, bucket, prefix)
    last = _last_manifest(s3, cfg)
    fresh = [o for o in objects if last.get(o["key"]) != [o["size"], o["etag"]]]
    reason = _refusal(uri, objects, fresh, trigger.get("max_age"), now)
    if reason:
        status = "skipped" if not fresh else "refused"
        _put(s3, cfg, "refused.json", {"time": now, "status": status, "why": reason})
        print("runctl: " + reason)
        return False
    manifest = {o["key"]: [o["size"], o["etag"]] for o in objects}
    newest = sorted(fresh, key=lambda o: o["modified"], reverse=True)
    trigger.update(
        reason=f"new data in {uri}",
        new_objects=len(fresh),
        objects=[f"s3://{bucket}/{o['key']}" for o in newest[:OBJECTS_IN_RECORD]],
        manifest=digest(manifest),
    )
    _put(s3, cfg, "manifest.json", manifest)
    return True
