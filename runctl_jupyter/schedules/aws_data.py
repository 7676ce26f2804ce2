"""An AWS data trigger's notebook side, beside schedules/aws_clock.py (what `add` makes):
what `add` says of its clock, the instance's skips and refusals read back from S3 into
the schedule's history, and the data bucket's EventBridge notifications handed over to
another data trigger of the same bucket at removal (aws/data_rule.py makes the rest)."""

from __future__ import annotations

import json
from typing import Any


def hand_over_events(session: Any, schedule: dict, facts: dict) -> dict:
    """When another data trigger uses the same bucket, its EventBridge notifications
    stay on: the other schedule is now the one that turns them off at its removal."""
    from . import files

    if not facts.get("events_turned_on"):
        return facts
    home = session.store.home
    for other in files.all_schedules(home):
        theirs = other.get("aws") or {}
        if other["name"] != schedule["name"] and theirs.get("data_bucket") == facts["data_bucket"]:
            other["aws"] = {**theirs, "events_turned_on": True}
            files.write_schedule(home, other)
            return {**facts, "events_turned_on": False}
    return facts


def note_refusal(session: Any, schedule: dict) -> bool:
    """An AWS schedule's last fire that ran nothing (no new data, stale data, its last
    run still running), as the instance wrote it (agent/fired.py), into the history;
    True when it is new."""
    facts = schedule.get("aws") or {}
    if not facts.get("bucket"):
        return False
    s3 = session.backend("aws").clients_for(facts["region"]).s3
    key = f"{facts['prefix']}schedule/refused.json"
    try:
        said = json.loads(s3.get_object(Bucket=facts["bucket"], Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - none yet
        return False
    history = schedule.setdefault("history", [])
    entry = {k: said.get(k) for k in ("time", "status", "why")}
    if entry in [{k: e.get(k) for k in entry} for e in history]:
        return False
    history.append(entry)
    history.sort(key=lambda e: e.get("time") or 0)
    return True


def data_clock_line(schedule: dict) -> str:
    """What `schedule add` says of an AWS data trigger's clock."""
    from ..display.text import format_duration

    facts = schedule["aws"]
    settle = format_duration(float(schedule["data"].get("settle") or 0))
    return (
        f"clock: S3 -> EventBridge rule {facts['rule']} -> SSM Automation: new objects in "
        f"{schedule['data']['uri']} (re)set the one-shot schedule "
        f"runctl-{schedule['name']}-settle {settle} after the last one; fires with this "
        f"machine off, one {facts['instance_type']} per burst, which checks the data again"
    )
