"""`cost`: spend so far by experiment, project, owner, team, instance type and day (one
grouping with `--by`, one month with `--month`); or,
as `cost price TYPE`, one instance type's price. The words after `cost` are read
here, after parsing, so a wrong one gets a message that says what to write."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..params.values import BadParam

__all__ = ["CALLS", "FINISH", "add_cost"]

BY = ("owner", "project", "team", "experiment")


def _month(text: str) -> str:
    """--month YYYY-MM, a calendar month (UTC)."""
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", text):
        raise argparse.ArgumentTypeError(f"--month takes YYYY-MM, e.g. 2026-11, not {text!r}")
    return text


def add_cost(sub: Any) -> None:
    p = sub.add_parser(
        "cost",
        help="spend so far; `cost price TYPE` for a price",
        description=(
            "Spend by experiment, project, owner, team, instance type and day (each grouping "
            "adds up to the total); or one price."
        ),
        usage="%(prog)s [--by owner|project|team|experiment] [--month YYYY-MM] "
        "[price TYPE [--region R] [--spot] [--offline]]",
    )
    p.add_argument("--by", choices=BY, help="one grouping: who, which project or team, what")
    p.add_argument(
        "--month", type=_month, metavar="YYYY-MM", help="only the runs started in this month (UTC)"
    )
    p.add_argument("words", nargs="*", metavar="price TYPE")
    p.add_argument("--region", metavar="REGION")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--offline", action="store_true", help="use the bundled price table")


def _finish_cost(ns: argparse.Namespace) -> None:
    words = ns.words
    del ns.words
    ns.instance_type = None
    if words and (ns.by or ns.month):
        raise BadParam("--by and --month go with the report (cost), not cost price")
    if not words:
        ns.action = "report"
    elif words[0] == "price" and len(words) == 2:
        ns.action, ns.instance_type = "price", words[1]
    elif words[0] == "price":
        raise BadParam("say which instance type: cost price TYPE, e.g. cost price g5.xlarge")
    else:
        raise BadParam(f"unknown cost command {words[0]!r}; use cost, or cost price TYPE")


def _call_cost(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "cost", {
        "action": ns.action,
        "instance_type": ns.instance_type,
        "region": ns.region,
        "spot": ns.spot,
        "offline": ns.offline,
        "by": ns.by,
        "month": ns.month,
    }


FINISH = {"cost": _finish_cost}
CALLS = {"cost": _call_cost}
