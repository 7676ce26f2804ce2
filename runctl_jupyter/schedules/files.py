"""A schedule is one JSON file, `$RUNCTL_HOME/schedules/NAME.json`: what runs (target,
params, run options), when (cron or rate, time zone, or a data prefix), whether it is
enabled, and its history of fires. Writers hold `NAME.lock` (flock), so two fires of
one schedule never interleave."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from ..errors import RunctlError

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
HISTORY_KEPT = 100  # the newest fires; older ones are dropped from the file


def check_schedule_name(name: str) -> str:
    """Names go into a crontab line and AWS names: letters, digits, `.`, `_`, `-`."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name) or name.startswith((".", "-")):
        raise RunctlError(
            f"schedule name {name!r}: use letters, digits, '.', '_' and '-' "
            "(at most 64, not starting with '.' or '-'), e.g. --schedule-name nightly"
        )
    return name


def name_from_target(target: str) -> str:
    """`examples/01_quickstart.ipynb` -> `01_quickstart` (unsafe characters -> `-`)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", Path(target).stem).lstrip(".-")
    return stem[:64] or "schedule"


def schedules_dir(home: Path) -> Path:
    return Path(home) / "schedules"


def schedule_path(home: Path, name: str) -> Path:
    return schedules_dir(home) / f"{check_schedule_name(name)}.json"


def read_schedule(home: Path, name: str) -> dict:
    path = schedule_path(home, name)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunctlError(
            f"no schedule {name!r}: `%runctl schedules` lists them, "
            "`%runctl schedule add TARGET --cron ...` makes one"
        ) from None
    except ValueError as exc:
        raise RunctlError(f"{path} is not valid JSON ({exc}): fix or remove it") from None


def write_schedule(home: Path, schedule: dict) -> None:
    """Atomically: a reader never sees half a file."""
    path = schedule_path(home, schedule["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    schedule["history"] = list(schedule.get("history") or [])[-HISTORY_KEPT:]
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(schedule, indent=1, default=str))
    os.replace(tmp, path)


def create_schedule(home: Path, schedule: dict) -> None:
    """A new schedule's file; refused when the name is taken (nothing is overwritten)."""
    path = schedule_path(home, schedule["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(path, "x") as handle:
            handle.write(json.dumps(schedule, indent=1, default=str))
    except FileExistsError:
        raise RunctlError(
            f"schedule {schedule['name']!r} exists: pick another with --schedule-name NAME, "
            f"or `%runctl schedule remove {schedule['name']}` first"
        ) from None


def delete_schedule(home: Path, name: str) -> None:
    for suffix in (".json", ".lock", ".manifest.json"):
        (schedules_dir(home) / f"{name}{suffix}").unlink(missing_ok=True)


def all_schedules(home: Path) -> list[dict]:
    out = []
    for path in sorted(schedules_dir(home).glob("*.json")):
        if path.name.endswith(".manifest.json"):
            continue
        with contextlib.suppress(ValueError, OSError):
            out.append(json.loads(path.read_text()))
    return out


@contextlib.contextmanager
def locked(home: Path, name: str) -> Iterator[None]:
    """Held while a schedule is fired or changed: two crons of one schedule take turns."""
    path = schedules_dir(home) / f"{check_schedule_name(name)}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(home: Path, name: str) -> dict:
    """The data manifest of the last triggered run: {key: [size, etag]}."""
    try:
        return json.loads((schedules_dir(home) / f"{name}.manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def write_manifest(home: Path, name: str, manifest: dict) -> None:
    path = schedules_dir(home) / f"{name}.manifest.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(manifest, sort_keys=True))
    os.replace(tmp, path)
