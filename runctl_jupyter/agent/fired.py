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

Fires never overlap (unless the schedule was added with `--allow-overlap`: the
template's `trigger.allow_overlap`): each fire that starts a run names it in
`schedule/last.json`; the next fire reads that run's last event chunk and, when it has
no exit and is younger than the lost timeout (events.py: ×10 while the run boots, or
has no event yet), starts nothing and says why in `refused.json`, as above.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from ..events import FINAL_STATUSES, LOST_TIMEOUT, PROVISIONING_TIMEOUT_FACTOR
from .s3 import run_prefix

OBJECTS_IN_RECORD = 20


def adopt(stage: str, run_id: str, me: str | None, s3: Any) -> dict | None:
    """Make the staged template run `run_id`; returns its spec (None: no run, said why)."""
    path = Path(stage) / "run" / "spec.json"
    spec = json.loads(path.read_text())
    now = time.time()
    if refuse_overlap(spec, now, s3):
        return None
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
    _put(s3, cfg, "last.json", {"run_id": run_id, "time": now})
    return spec


def _get(s3: Any, cfg: dict, name: str) -> Any:
    key = f"{cfg['prefix'].rstrip('/')}/schedule/{name}"
    try:
        return json.loads(s3.get_object(Bucket=cfg["bucket"], Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - none yet (the first fire)
        return None


def _live(s3: Any, cfg: dict, run_id: str, fired: float, now: float) -> bool:
    """Whether the run `run_id` still runs: no exit in its last event chunk, which is
    younger than the lost timeout (none yet: fired within the booting timeout)."""
    prefix = f"{cfg['prefix'].rstrip('/')}/runs/{run_id}/events/"
    chunks = s3.list_objects_v2(Bucket=cfg["bucket"], Prefix=prefix).get("Contents") or []
    booting = LOST_TIMEOUT * PROVISIONING_TIMEOUT_FACTOR
    if not chunks:
        return now - fired < booting
    last = max(chunks, key=lambda c: c["Key"])  # numbered chunks: the newest is the last
    body = s3.get_object(Bucket=cfg["bucket"], Key=last["Key"])["Body"].read().decode()
    status = ""
    for line in body.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("type") == "exit" or event.get("status") in FINAL_STATUSES:
            return False
        if event.get("type") == "status":
            status = str(event.get("status") or status)
    timeout = LOST_TIMEOUT if status in ("", "running") else booting
    return now - last["LastModified"].timestamp() < timeout


def refuse_overlap(spec: dict, now: float, s3: Any) -> bool:
    """True (and the reason put in S3) when this schedule's last fired run still runs."""
    cfg = spec.get("sync") or {}
    if (spec.get("trigger") or {}).get("allow_overlap") or not cfg.get("bucket"):
        return False
    last = _get(s3, cfg, "last.json")
    if not isinstance(last, dict) or not last.get("run_id"):
        return False
    run_id = str(last["run_id"])
    if not _live(s3, cfg, run_id, float(last.get("time") or 0), now):
        return False
    reason = f"overlap: run {run_id} of this schedule is still running; --allow-overlap to run both"
    _put(s3, cfg, "refused.json", {"time": now, "status": "skipped", "why": reason})
    print("runctl: " + reason)
    return True


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
    return dict(_get(s3, cfg, "manifest.json") or {})


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
