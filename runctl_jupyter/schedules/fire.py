"""`schedule fire NAME`: what cron (or `schedule run`) calls. Under the schedule's lock:
skip when paused; for a data trigger, list the prefix and fire only on objects the last
triggered run did not see, once they settled, and never on stale data; never overlap a
still-running run of the same schedule (unless --allow-overlap); then start the run
detached with its "why" (spec["trigger"]) and append the fire to the history."""

from __future__ import annotations

import time
from typing import Any

from ..errors import RunctlError
from ..events import ACTIVE_STATUSES
from . import data as data_mod
from .files import locked, read_manifest, read_schedule, write_manifest, write_schedule


class Nothing(str):
    """A fire that did nothing worth a line in cron's mail (paused, no new data yet)."""


def fire(session: Any, name: str, if_new_data: bool = False, manual: bool = False) -> str:
    """Fire once if due; returns one line saying what happened (cron mails it: a fire, a
    skip, a refusal; a `Nothing` only in a notebook)."""
    home = session.store.home
    with locked(home, name):
        schedule = read_schedule(home, name)
        if not schedule.get("enabled", True) and not manual:
            return Nothing(f"schedule {name} is paused: nothing fired (`schedule resume {name}`)")
        now = time.time()
        why: dict[str, Any] = {
            "schedule": name,
            "fired": now,
            "reason": "run by hand" if manual else when_text(schedule),
        }
        manifest = None
        if schedule.get("data"):
            checked = _check_data(session, schedule, if_new_data and not manual, now)
            if isinstance(checked, str):
                return checked
            why.update(checked["why"])
            manifest = checked["manifest"]
        running = last_run_still_active(session, schedule)
        if running and not schedule.get("allow_overlap"):
            line = f"skipped: run {running} of schedule {name} is still running (--allow-overlap fires anyway)"
            _note(schedule, {"time": now, "status": "skipped", "run": None, "why": line})
            write_schedule(home, schedule)
            return line
        return _start(session, schedule, why, manifest)


def when_text(schedule: dict) -> str:
    if schedule.get("data"):
        return f"new data in {schedule['data']['uri']}"
    if schedule.get("rate"):
        return f"rate {schedule['rate'][0]} {schedule['rate'][1]}(s)"
    return f"cron {schedule.get('cron')}"


def _note(schedule: dict, entry: dict) -> None:
    """Append to the history; a repeated skip for the same reason is not appended again."""
    history = schedule.setdefault("history", [])
    last = history[-1] if history else {}
    if entry["status"] in ("skipped", "refused") and last.get("status") == entry["status"]:
        if last.get("why") == entry.get("why"):
            last["time"] = entry["time"]
            return
    history.append(entry)


def last_run_still_active(session: Any, schedule: dict) -> str | None:
    """The id of the schedule's last run if it has not ended (the store's view, refreshed)."""
    for entry in reversed(schedule.get("history") or []):
        run_id = entry.get("run")
        if not run_id:
            continue
        try:
            session.store.refresh(run_id)
            status = session.store.get(run_id)["status"]
        except RunctlError:
            return None
        return run_id if status in ACTIVE_STATUSES else None
    return None


def _check_data(session: Any, schedule: dict, only_if_new: bool, now: float) -> Any:
    """{"why", "manifest"} to fire with, or the one line that says why not."""
    settings, home, name = schedule["data"], session.store.home, schedule["name"]
    bucket, prefix = data_mod.parse_s3_prefix(settings["uri"])
    try:
        s3 = session.backend("aws").clients_for(settings.get("region")).s3
        objects = data_mod.list_prefix(s3, bucket, prefix)
    except Exception as exc:  # a botocore error: one line on the schedule, then raised
        from ..aws.errors import explain, is_aws

        if not is_aws(exc) and not isinstance(exc, RunctlError):
            raise
        line = f"could not list {settings['uri']}: {exc if isinstance(exc, RunctlError) else explain(exc)}"
        _note(schedule, {"time": now, "status": "failed", "run": None, "why": line})
        write_schedule(home, schedule)
        raise RunctlError(line) from exc
    manifest = data_mod.manifest_of(objects)
    fresh = data_mod.new_objects(objects, read_manifest(home, name))
    if only_if_new and not fresh:
        return Nothing(f"no new data in {settings['uri']}: nothing fired")
    wait = data_mod.unsettled_for(fresh, float(settings.get("settle") or 0), now)
    if only_if_new and wait > 0:
        return (
            f"new data in {settings['uri']} is still arriving: fires once it settles ({wait:.0f}s)"
        )
    stale = data_mod.stale_reason(objects, settings.get("max_age"), settings["uri"], now)
    if stale:
        schedule["refused"] = {"time": now, "why": stale}
        _note(schedule, {"time": now, "status": "refused", "run": None, "why": stale})
        write_schedule(home, schedule)
        return f"refused: {stale}"
    why = {
        "data": settings["uri"],
        "new_objects": len(fresh),
        "objects": data_mod.trigger_objects(bucket, fresh),
        "manifest": data_mod.manifest_digest(manifest),
    }
    return {"why": why, "manifest": manifest}


def _start(session: Any, schedule: dict, why: dict, manifest: dict | None) -> str:
    home, name = session.store.home, schedule["name"]
    try:
        run = launch(session, schedule, why)
    except RunctlError as exc:
        line = f"could not start a run of schedule {name}: {exc}"
        _note(schedule, {"time": why["fired"], "status": "failed", "run": None, "why": line})
        write_schedule(home, schedule)
        raise RunctlError(line) from exc
    if manifest is not None:  # the next fire compares with what this run was given
        write_manifest(home, name, manifest)
    schedule.pop("refused", None)
    _note(schedule, {"time": why["fired"], "status": "started", "run": run.id, "why": why})
    write_schedule(home, schedule)
    return f"schedule {name} fired run {run.id} ({why['reason']})"


def launch(session: Any, schedule: dict, why: dict) -> Any:
    """The run, detached, through the same Session calls as `train SCRIPT` / `execute`."""
    run = dict(schedule.get("run") or {})
    if schedule["kind"] == "notebook":
        return session.execute(
            notebook=schedule["target"],
            params=run.get("params"),
            experiment=run.get("experiment"),
            name=run.get("name"),
            detach=True,
            trigger=why,
        )
    run["args"] = tuple(run.get("args") or ())
    return session.train(script=schedule["target"], detach=True, trigger=why, **run)
