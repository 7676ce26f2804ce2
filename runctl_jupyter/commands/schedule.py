"""`schedule` and `schedules`: runs fired by a clock (--cron, --rate) or by new data in
S3 (--on-new-data), with no server of ours running. `schedule add` takes the options of
`train` (run_options.py) for the runs it fires."""

from __future__ import annotations

import argparse
from typing import Any

from ..params.values import BadParam
from .run_options import add_hyperparameters, add_run_options, finish_run
from .train import TRAIN_KWARGS, train_options

__all__ = ["CALLS", "FINISH", "add_schedule", "add_schedules"]

ACTIONS = ("add", "pause", "resume", "remove", "run", "fire", "show")
SCHEDULE_EPILOG = """\
examples:
  %runctl schedule add examples/01_quickstart.ipynb --cron "0 3 * * 1" -p epochs=50
  %runctl schedule add train.py --on-new-data s3://bucket/incoming/ --max-data-age 7d
  %runctl schedule add train.py --rate "6 hours" --backend aws --instance-type g5.xlarge
  %runctl schedule pause NAME | resume NAME | remove NAME | show NAME
  %runctl schedule run NAME          # fire now

A local schedule is an entry in your crontab (it calls `runctl schedule fire NAME`), so
it fires while this machine is on. With --backend aws, a --cron or --rate schedule is an
EventBridge Scheduler schedule that starts an EC2 instance with this machine off."""

# the train keywords a fired run is started with (the rest go in its options)
_RUN_KWARGS = tuple(k for k in TRAIN_KWARGS if k not in ("script", "detach", "ship"))
# when and how it fires: Session.schedule(action="add", ...) keywords
_HOW = (
    "cron",
    "rate",
    "on_new_data",
    "max_data_age",
    "settle",
    "check_every",
    "allow_overlap",
    "schedule_name",
    "timezone",
)
_SCHEDULE_FIELDS = ("action", "target", *_HOW, "if_new_data", "script", "ship", "detach", "fresh")
_PARSERS: dict[str, argparse.ArgumentParser] = {}


def add_schedule(sub: Any) -> None:
    p = sub.add_parser(
        "schedule",
        help="fire runs on a cron, a rate or new S3 data",
        description="Fire a SCRIPT.py or NOTEBOOK.ipynb on a schedule or when new data lands.",
        usage="%(prog)s add TARGET (--cron EXPR | --rate N UNIT | --on-new-data S3_URI) "
        "[options] | pause NAME | resume NAME | remove NAME | run NAME | show NAME",
        epilog=SCHEDULE_EPILOG,
    )
    p.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    p.add_argument("target", nargs="?", metavar="TARGET|NAME", help="add: the file; else NAME")
    g = p.add_argument_group("when it fires")
    g.add_argument("--cron", metavar="EXPR", help='five cron fields, e.g. "0 3 * * 1"')
    g.add_argument("--rate", metavar="INTERVAL", help='"6 hours", "30 minutes", "1 day"')
    g.add_argument("--on-new-data", metavar="S3_URI", help="fire when the prefix holds new objects")
    g.add_argument("--max-data-age", metavar="AGE", help="refuse data older than this, e.g. 7d")
    g.add_argument("--settle", metavar="SECONDS", help="wait for uploads to stop (default 60s)")
    g.add_argument("--check-every", metavar="MINUTES", help="local data trigger: how often (5m)")
    g.add_argument(
        "--allow-overlap", action="store_true", help="fire even when the last run still runs"
    )
    g.add_argument("--schedule-name", metavar="NAME", help="default: the file's name")
    g.add_argument(
        "--timezone", metavar="TZ", help="AWS: the cron's IANA zone (default: this machine's)"
    )
    g.add_argument("--if-new-data", action="store_true", help=argparse.SUPPRESS)
    add_hyperparameters(p, sweep=False)
    add_run_options(p)
    if isinstance(p, argparse.ArgumentParser):  # not the stand-in that only lists commands
        _PARSERS["schedule"] = p


def add_schedules(sub: Any) -> None:
    sub.add_parser(
        "schedules",
        help="list schedules: next fire, last run",
        description="List schedules: when they fire next, their last run and its status.",
    )


def _given_add_options(ns: argparse.Namespace) -> list[str]:
    parser = _PARSERS["schedule"]
    return [
        action.option_strings[0]
        for action in parser._actions
        if action.option_strings
        and action.dest not in ("help", "if_new_data")
        and getattr(ns, action.dest, action.default) not in (action.default, None, [], ())
    ]


def _finish_schedule(ns: argparse.Namespace) -> None:
    if ns.action != "add":
        given = [o for o in _given_add_options(ns) if o != "-p" or ns.param_items]
        if given:
            raise BadParam(f"{', '.join(given)}: only `schedule add` takes these")
        if not ns.target:
            raise BadParam(f"it is: schedule {ns.action} NAME (`schedules` lists them)")
        if ns.if_new_data and ns.action != "fire":
            raise BadParam("--if-new-data goes with `schedule fire NAME`")
        return
    if not ns.target:
        raise BadParam(
            "it is: schedule add SCRIPT.py|NOTEBOOK.ipynb --cron EXPR (or --rate, --on-new-data)"
        )
    if ns.params_var is not None:
        raise BadParam("a schedule keeps its hyperparameters: give them with -p KEY=VALUE")
    if ns.detach or ns.fresh:
        raise BadParam(
            "a fired run is always detached and uses only the options given here: "
            "drop --detach and --fresh"
        )
    finish_run(ns)


def _call_schedule(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    if ns.action != "add":
        return "schedule", {"action": ns.action, "name": ns.target, "if_new_data": ns.if_new_data}
    run = {k: getattr(ns, k) for k in _RUN_KWARGS}
    run["args"], run["tags"], run["metrics"] = list(ns.args), list(ns.tags), list(ns.metrics)
    run["options"] = train_options(ns, exclude=_RUN_KWARGS + _SCHEDULE_FIELDS)
    how = {k: getattr(ns, k) for k in _HOW}
    how["region"] = ns.region
    return "schedule", {"action": "add", "target": ns.target, "run": run, **how}


FINISH = {"schedule": _finish_schedule}
CALLS = {"schedule": _call_schedule, "schedules": lambda ns: ("schedules", {})}
