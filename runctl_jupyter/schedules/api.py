"""What `Session.schedule(...)` and `Session.schedules()` do. Everything a new schedule
needs is checked before anything is written (the target, the cron or rate, the data
URI, the run options); then its file, then its clock: a crontab entry (local), or an
EventBridge Scheduler schedule that starts an instance with this machine off
(`--backend aws`, aws_clock.py); when the clock cannot be made, the file goes."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..display.text import format_duration, format_time, table_html, table_text
from ..errors import RunctlError
from . import files, timing
from .data import parse_s3_prefix
from .fire import Nothing, fire, last_run_still_active, when_text

NOTEBOOK_OPTIONS = ("params", "experiment", "name")  # what `execute` takes
DEFAULT_SETTLE = 60.0
DEFAULT_CHECK_EVERY = 300.0


def _aws_clock(schedule: dict) -> bool:
    """Fired by EventBridge Scheduler (an AWS time schedule), not by this crontab."""
    return schedule.get("backend") == "aws" and bool(schedule.get("aws"))


def _target(target: str | None) -> tuple[str, str]:
    path = Path(target or "").expanduser()
    if not target or path.suffix not in (".py", ".ipynb"):
        raise RunctlError(
            f"schedule add {target or ''!r}: give a SCRIPT.py or a NOTEBOOK.ipynb to run"
        )
    if not path.is_file():
        raise RunctlError(f"no file {target!r} (looked in {Path.cwd()}): check the path")
    return str(path.resolve()), "notebook" if path.suffix == ".ipynb" else "script"


def _when(cron: str | None, rate: str | None, data: str | None, check_every: str | None) -> dict:
    given = [flag for flag, v in (("--cron", cron), ("--rate", rate), ("--on-new-data", data)) if v]
    if len(given) != 1:
        raise RunctlError(
            "schedule add needs exactly one of --cron EXPR, --rate INTERVAL, --on-new-data "
            f"s3://BUCKET/PREFIX/ ({', '.join(given) or 'none'} given)"
        )
    if check_every and not data:
        raise RunctlError("--check-every goes with --on-new-data (how often the prefix is listed)")
    if rate:
        value, unit = timing.parse_rate(rate)
        return {"cron": None, "rate": [value, unit]}
    if data:
        every = timing.parse_duration(check_every, "--check-every") if check_every else None
        minutes = round((every or DEFAULT_CHECK_EVERY) / 60)
        if minutes < 1 or 60 % minutes:
            raise RunctlError("--check-every must divide an hour: 1m, 5m, 10m, 15m, 30m or 60m")
        return {"cron": "* * * * *" if minutes == 1 else f"*/{minutes} * * * *", "rate": None}
    timing.cron_fields(cron or "")
    return {"cron": " ".join(str(cron).split()), "rate": None}


def _run_options(kind: str, backend: str, run: dict) -> dict:
    from ..runs.start import check_options

    run = {
        k: v for k, v in run.items() if v not in (None, (), [], {}, False) or k == "ship_objects"
    }
    if kind == "notebook":
        extra = sorted(k for k in run if k not in (*NOTEBOOK_OPTIONS, "ship_objects", "options"))
        extra += sorted(k for k, v in (run.get("options") or {}).items() if v not in (None, False))
        if extra:
            raise RunctlError(
                "a notebook schedule takes -p, --experiment and --name (it runs like `execute`); "
                f"drop {', '.join('--' + e.replace('_', '-') for e in extra)}"
            )
    options = dict(run.get("options") or {})
    if backend == "local":  # a local data trigger's --region is its bucket's, not a run's
        options.pop("region", None)
        run["options"] = options
    check_options(options, backend)
    return run


def add(session: Any, target: str | None, run: dict, **how: Any) -> str:
    """`schedule add TARGET --cron/--rate/--on-new-data ...`: checked, then made."""
    backend = run.pop("backend", None) or session.config.backend
    path, kind = _target(target)
    if backend == "aws" and kind == "notebook":
        raise RunctlError(
            "a notebook schedule runs on this machine (like `execute`): drop --backend aws, "
            "or schedule a SCRIPT.py for AWS runs"
        )
    when = _when(how.get("cron"), how.get("rate"), how.get("on_new_data"), how.get("check_every"))
    zone = _zone(backend, how)
    expression = None
    if backend == "aws":  # checked before anything is made
        from .aws_clock import check_name

        data = how.get("on_new_data")
        expression = "" if data else timing.aws_expression(when["cron"], when["rate"])
        check_name(how.get("schedule_name") or files.name_from_target(path))
    schedule = {
        "format": 1,
        "name": files.check_schedule_name(how.get("schedule_name") or files.name_from_target(path)),
        "target": path,
        "kind": kind,
        "backend": backend,
        **when,
        "timezone": zone,
        "enabled": True,
        "allow_overlap": bool(how.get("allow_overlap")),
        "data": _data(how),
        "run": _run_options(kind, backend, dict(run)),
        "created": time.time(),
        "history": [],
    }
    home = session.store.home
    files.create_schedule(home, schedule)
    try:
        clock = _make_clock(session, schedule, expression)
    except BaseException:
        files.delete_schedule(home, schedule["name"])
        raise
    return "\n".join([f"schedule {schedule['name']} added: {when_text(schedule)}", *clock])


def _data(how: dict) -> dict | None:
    uri = how.get("on_new_data")
    for flag in ("max_data_age", "settle"):
        if how.get(flag) and not uri:
            raise RunctlError(f"--{flag.replace('_', '-')} goes with --on-new-data s3://...")
    if not uri:
        return None
    parse_s3_prefix(uri)
    max_age = how.get("max_data_age")
    settle = how.get("settle")
    return {
        "uri": uri,
        "max_age": timing.parse_duration(max_age, "--max-data-age") if max_age else None,
        "settle": timing.parse_duration(settle, "--settle") if settle else DEFAULT_SETTLE,
        "region": how.get("region"),
    }


def _zone(backend: str, how: dict) -> str:
    """The schedule's time zone: --timezone (AWS only), else this machine's name for AWS
    (EventBridge needs a name), else "" (the crontab's: this machine's)."""
    zone = how.get("timezone")
    if zone and (backend != "aws" or how.get("on_new_data")):
        raise RunctlError(
            "--timezone goes with an AWS time schedule (--backend aws with --cron or --rate); "
            "a local crontab fires in this machine's zone"
        )
    if zone:
        timing.zone_info(zone)  # one line for a zone that is not IANA's
        return str(zone)
    if backend == "aws" and not how.get("on_new_data"):
        from .aws_clock import local_zone

        return local_zone()
    return ""


def _make_clock(session: Any, schedule: dict, expression: str | None = None) -> list[str]:
    """The crontab entry (local) or the EventBridge resources (aws); the lines to show."""
    lines = []
    if schedule["cron"] and not schedule["data"]:
        fires = timing.next_fires(schedule["cron"], 3, tz=schedule["timezone"])
        lines.append("next fires: " + ", ".join(f.strftime("%Y-%m-%d %H:%M %Z") for f in fires))
    if expression is not None:
        return lines + _make_aws_clock(session, schedule, expression)
    from .crontab import install_entry

    cron = schedule["cron"] or timing.rate_as_cron(*schedule["rate"])
    line = install_entry(
        session.config.crontab_file,
        session.store.home,
        schedule["name"],
        cron,
        True,
        bool(schedule["data"]),
    )
    if schedule["rate"]:
        fires = timing.next_fires(cron, 3)
        lines.append("next fires: " + ", ".join(f.strftime("%Y-%m-%d %H:%M %Z") for f in fires))
    return [*lines, f"crontab: {line}"]


def _make_aws_clock(session: Any, schedule: dict, expression: str) -> list[str]:
    from . import aws_clock

    schedule["aws"] = aws_clock.make(session, schedule, expression)
    files.write_schedule(session.store.home, schedule)
    facts = schedule["aws"]
    lines = []
    if schedule["data"]:
        from .aws_data import data_clock_line

        return [data_clock_line(schedule)]
    if schedule["rate"]:
        lines.append(f"fires every {schedule['rate'][0]} {schedule['rate'][1]}(s) from now")
    return [
        *lines,
        f"clock: EventBridge Scheduler schedule runctl-{schedule['name']} ({expression}, "
        f"{schedule['timezone']}): fires with this machine off; each fire starts one "
        f"{facts['instance_type']} from launch template {facts['launch_template_id']}, "
        "which runs the script and terminates",
    ]


def set_enabled(session: Any, name: str, enabled: bool) -> str:
    home = session.store.home
    with files.locked(home, name):
        schedule = files.read_schedule(home, name)
        from .crontab import set_entry_enabled

        if _aws_clock(schedule):
            from .aws_clock import set_enabled as set_aws

            set_aws(session, schedule, enabled)
        elif not set_entry_enabled(session.config.crontab_file, name, enabled):
            raise RunctlError(
                f"schedule {name} has no crontab entry (removed by hand?): "
                f"`schedule remove {name}` and add it again"
            )
        schedule["enabled"] = enabled
        files.write_schedule(home, schedule)
    return f"schedule {name} {'resumed' if enabled else 'paused'}"


def remove(session: Any, name: str) -> str:
    home = session.store.home
    with files.locked(home, name):
        schedule = files.read_schedule(home, name)  # one line when there is none
        from .crontab import remove_entry

        left: list[str] = []
        if _aws_clock(schedule):
            from .aws_clock import remove as remove_aws

            left = remove_aws(session, schedule)
        else:
            remove_entry(session.config.crontab_file, name)
        files.delete_schedule(home, name)
    if left:
        return (
            f"schedule {name} removed; left behind: {'; '.join(left)} "
            "(`runctl resources` lists them, `runctl cleanup` removes them)"
        )
    return f"schedule {name} removed (its runs stay: `%runctl runs`)"


def schedule(session: Any, action: str, name: str | None = None, **kwargs: Any) -> Any:
    """`schedule add|pause|resume|remove|run|fire|show`."""
    if action == "add":
        return add(session, kwargs.pop("target"), kwargs.pop("run"), **kwargs)
    name = files.check_schedule_name(name or "")
    if action in ("pause", "resume"):
        return set_enabled(session, name, action == "resume")
    if action == "remove":
        return remove(session, name)
    if action == "run" and _aws_clock(files.read_schedule(session.store.home, name)):
        from .aws_clock import fire_now

        return fire_now(session, files.read_schedule(session.store.home, name))
    if action in ("run", "fire"):
        said = fire(session, name, kwargs.get("if_new_data", False), manual=action == "run")
        quiet = action == "fire" and session.shell is None and isinstance(said, Nothing)
        return None if quiet else said  # cron mails what a command prints: not every check
    schedule = files.read_schedule(session.store.home, name)
    return ScheduleTable(session, [with_fired(session, schedule, strict=True)], history=True)


def with_fired(session: Any, schedule: dict, strict: bool = False) -> dict:
    """The schedule, with the runs its AWS clock fired (found in S3) in its history; when
    S3 cannot be read, as it was (`strict`: the error, for `schedule show`)."""
    if not _aws_clock(schedule):
        return schedule
    try:
        return _with_fired(session, schedule["name"])
    except Exception as exc:  # noqa: BLE001 - the table still lists the others
        if strict:
            raise
        return {**schedule, "unread": f"its fired runs could not be read from S3: {exc}"}


def _with_fired(session: Any, name: str) -> dict:
    home = session.store.home
    from .aws_clock import fired_runs
    from .aws_data import note_refusal

    with files.locked(home, name):
        schedule = files.read_schedule(home, name)
        known = {e.get("run") for e in schedule.get("history") or []}
        new = [s for s in fired_runs(session, schedule) if s["run_id"] not in known]
        for spec in new:
            why = spec.get("trigger") or {}
            entry = {"time": why.get("fired"), "status": "started", "run": spec["run_id"]}
            schedule.setdefault("history", []).append({**entry, "why": why})
        if note_refusal(session, schedule) or new:
            files.write_schedule(home, schedule)
    return schedule


class ScheduleTable:
    """`schedules`: name, when, next fire, last run and its status, enabled; with
    `show NAME`, its history of fires too."""

    HEADER = ["name", "target", "when", "next fire", "last run", "status", "enabled"]

    def __init__(self, session: Any, schedules: list[dict], history: bool = False) -> None:
        self.schedules = schedules
        self.rows = [schedule_row(session, s) for s in schedules]
        self.history = history

    def _cells(self) -> list[list[str]]:
        return [
            [
                str(r[k] or "-")
                for k in ("name", "target", "when", "next", "last_run", "status", "enabled")
            ]
            for r in self.rows
        ]

    def __str__(self) -> str:
        if not self.rows:
            return 'no schedules yet: `%runctl schedule add train.py --cron "0 3 * * 1"` makes one'
        text = table_text(self.HEADER, self._cells())
        for row in self.rows:
            if row["note"]:
                text += f"\n{row['name']}: {row['note']}"
        if self.history:
            for entry in self.schedules[0].get("history") or []:
                why = entry.get("why")
                why = why.get("reason") if isinstance(why, dict) else why
                text += f"\n  {format_time(entry.get('time'))}  {entry.get('status'):<8} {entry.get('run') or '-':<12} {why}"
        return text

    __repr__ = __str__  # IPython's text form too

    def _repr_html_(self) -> str:
        import html

        if not self.rows:
            return f"<p>{html.escape(str(self))}</p>"
        notes = "".join(
            f"<p>{html.escape(r['name'] + ': ' + r['note'])}</p>" for r in self.rows if r["note"]
        )
        return table_html(self.HEADER, self._cells()) + notes


def schedule_row(session: Any, schedule: dict) -> dict:
    """One schedule as plain data (the lab sidebar can use it as is)."""
    history = schedule.get("history") or []
    last = next((e for e in reversed(history) if e.get("run")), None)
    status = None
    if last:
        try:
            session.store.refresh(last["run"])
            row = session.store.get(last["run"])
            status = row["status"] + (
                f" ({row['reason']})" if row.get("reason") and row["status"] != "succeeded" else ""
            )
        except RunctlError:
            status = "unknown"
    note = ""
    if history and history[-1].get("status") in ("refused", "failed", "skipped"):
        note = f"last fire {history[-1]['status']}: {history[-1].get('why')}"
    if schedule.get("unread"):
        note = str(schedule["unread"])
    return {
        "name": schedule["name"],
        "target": Path(schedule["target"]).name,
        "when": when_text(schedule)
        + (f" ({schedule['backend']})" if schedule["backend"] != "local" else ""),
        "next": _next(schedule),
        "last_run": last["run"] if last else None,
        "status": status,
        "enabled": "yes" if schedule.get("enabled", True) else "paused",
        "running": last_run_still_active(session, schedule) if last else None,
        "note": note,
    }


def _next(schedule: dict) -> str:
    if not schedule.get("enabled", True):
        return "-"
    if schedule.get("data"):
        if schedule.get("aws"):
            return "on new data (S3 -> EventBridge, then the settle time)"
        return f"on new data (checked every {format_duration(_every(schedule['cron']))})"
    if schedule.get("rate"):
        return f"every {schedule['rate'][0]} {schedule['rate'][1]}(s)"
    fires = timing.next_fires(schedule["cron"], 1, tz=schedule.get("timezone") or "")
    return fires[0].strftime("%Y-%m-%d %H:%M %Z") if fires else "-"


def _every(cron: str) -> float:
    first = cron.split()[0]
    return 60.0 * (int(first[2:]) if first.startswith("*/") else 1)
