"""When a schedule fires: a cron expression (checked by python-crontab, never parsed
by hand), or a rate (`6 hours`); the next fire times; AWS's spelling of both.

Next fire times are computed here from python-crontab's parsed fields (croniter, which
its `schedule()` needs, is not a dependency): Vixie cron's rule, where a day matches
when both day fields match, or either of them when both are restricted. Times are in
the schedule's time zone; a time that a DST change skips is skipped."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import RunctlError

FIELDS = ("minute", "hour", "day of month", "month", "weekday")
AWS_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SEARCH_DAYS = 366 * 5  # far enough for Feb 29 on a Monday


def cron_fields(expr: str) -> list[Any]:
    """The five parsed fields of `expr`, or one line that says what is wrong."""
    from crontab import CronSlices

    text = " ".join(str(expr).split())
    hint = 'five fields, minute hour day-of-month month weekday, e.g. --cron "0 3 * * 1"'
    if not text or text.startswith("@reboot") or "~" in text:
        raise RunctlError(f"--cron {expr!r}: not a schedule cron can keep; give {hint}")
    try:
        slices = CronSlices(text)
    except (ValueError, KeyError, AssertionError) as exc:
        raise RunctlError(f"--cron {expr!r}: {_why(exc)}; give {hint}") from None
    if not CronSlices.is_valid(text):
        raise RunctlError(f"--cron {expr!r}: not a valid cron expression; give {hint}")
    return list(slices)


def _why(exc: Exception) -> str:
    text = str(exc).strip().strip('"')
    return text.replace("'", "") or "not a valid cron expression"


def _values(field: Any) -> set[int]:
    values: set[int] = set()
    for part in field.parts:
        if hasattr(part, "range"):
            values.update(part.range())
            if getattr(part, "dangling", None) is not None:
                values.add(int(part.dangling))
        else:
            values.add(int(part))
    return values


def _restricted(field: Any) -> bool:
    return str(field) != "*"


def next_fires(expr: str, count: int = 3, after: dt.datetime | None = None, tz: str = "") -> list:
    """The next `count` fire times (aware datetimes in `tz`, default this machine's zone)."""
    fields = cron_fields(expr)
    minutes, hours, days, months, weekdays = (sorted(_values(f)) for f in fields)
    either_day = _restricted(fields[2]) and _restricted(fields[4])
    zone = zone_info(tz)
    start = (after or dt.datetime.now(dt.timezone.utc)).astimezone(zone)
    found: list[dt.datetime] = []
    day = start.date()
    for _ in range(SEARCH_DAYS):
        in_month = day.month in months
        dom, dow = day.day in days, (day.isoweekday() % 7) in weekdays
        if in_month and ((dom or dow) if either_day else (dom and dow)):
            for hour in hours:
                for minute in minutes:
                    when = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)
                    if when > start and _exists(when):
                        found.append(when)
                        if len(found) == count:
                            return found
        day += dt.timedelta(days=1)
    return found


def _exists(when: dt.datetime) -> bool:
    """False for a wall time a DST change skips (it does not survive a UTC round trip)."""
    back = when.astimezone(dt.timezone.utc).astimezone(when.tzinfo)
    return back.replace(tzinfo=None) == when.replace(tzinfo=None)


def zone_info(tz: str) -> Any:
    if not tz:
        return dt.datetime.now().astimezone().tzinfo
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise RunctlError(
            f"--timezone {tz!r}: not an IANA time zone; give one like Europe/Paris or UTC"
        ) from None


def parse_rate(text: str) -> tuple[int, str]:
    """`6 hours`, `1 day`, `30m` -> (6, "hour") ..., or one line."""
    match = re.fullmatch(r"\s*(\d+)\s*(minutes?|hours?|days?|m|h|d)\s*", str(text))
    if not match or int(match.group(1)) < 1:
        raise RunctlError(
            f'--rate {text!r}: give a positive whole number and a unit, e.g. --rate "6 hours"'
        )
    unit = {"m": "minute", "h": "hour", "d": "day"}.get(match.group(2), match.group(2))
    return int(match.group(1)), unit.rstrip("s")


def rate_as_cron(value: int, unit: str) -> str:
    """A local rate becomes a cron line when it divides an hour or a day evenly."""
    if unit == "minute" and 60 % value == 0:
        return "* * * * *" if value == 1 else f"*/{value} * * * *"
    if unit == "hour" and 24 % value == 0:
        return "0 * * * *" if value == 1 else f"0 */{value} * * *"
    if unit == "day" and value == 1:
        return "0 0 * * *"
    raise RunctlError(
        f"--rate {value} {unit}s: a local schedule's rate must divide an hour or a day "
        '(e.g. 15 minutes, 6 hours, 1 day); give --cron instead, e.g. --cron "0 3 */2 * *"'
    )


def aws_expression(cron: str | None, rate: tuple[int, str] | None) -> str:
    """EventBridge Scheduler's spelling: `cron(0 3 ? * MON *)` or `rate(6 hours)`.
    Its cron has six fields (a year), weekdays 1-7 from Sunday, and `?` in one day field."""
    if rate is not None:
        value, unit = rate
        return f"rate({value} {unit}{'s' if value != 1 else ''})"
    fields = cron_fields(cron or "")
    if _restricted(fields[2]) and _restricted(fields[4]):
        raise RunctlError(
            f"--cron {cron!r}: EventBridge Scheduler cannot fire on a day of the month OR a "
            "weekday; restrict only one of the two day fields for --backend aws"
        )

    def field(index: int) -> str:
        if not _restricted(fields[index]):
            return "*"
        return ",".join(str(v) for v in sorted(_values(fields[index])))

    days, weekdays = field(2), "?"
    if _restricted(fields[4]):
        days = "?"
        weekdays = ",".join(AWS_WEEKDAYS[v] for v in sorted(_values(fields[4])))
    return f"cron({field(0)} {field(1)} {days} {field(3)} {weekdays} *)"


def parse_duration(text: str, option: str) -> float:
    """`7d`, `12h`, `30m`, `90s`, `2w` -> seconds, or one line."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", str(text))
    if not match or float(match.group(1)) <= 0:
        raise RunctlError(
            f"{option} {text!r}: give a number and a unit (s, m, h, d, w), e.g. {option} 7d"
        )
    return float(match.group(1)) * DURATION_UNITS[match.group(2)]
