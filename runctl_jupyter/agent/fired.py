"""A run fired by an AWS schedule, on the instance EventBridge Scheduler started.

The schedule's bundle (schedules/aws_clock.py) holds a template run: its spec, code
and pins, with `trigger = {"schedule": NAME, ...}` and the S3 sync settings of the
schedule's prefix (`runctl/runs/sched-NAME/`, the reach of the schedule's instance
role). At boot the fire script (aws/bootstrap.py `fire_script`) takes a new run id;
`adopt` makes the template that run: its id, its creation and fire time, why it fired,
this instance; and puts its spec.json in S3 next to its events, where the notebook
side finds it by listing (`runs`, `schedules`). Standard library; boto3 is passed in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .s3 import run_prefix


def adopt(stage: str, run_id: str, me: str | None, s3: Any) -> dict:
    """Make the staged template run `run_id`; returns its spec."""
    path = Path(stage) / "run" / "spec.json"
    spec = json.loads(path.read_text())
    now = time.time()
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
