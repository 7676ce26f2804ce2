"""`dev`: write, test small, run, edit, run again: one dev run whose attempts restart
on each change (docs/dev.md). Its options are train's run options plus the dev group;
this is the subcommand, its help and how its namespace becomes `Session.dev(...)`."""

from __future__ import annotations

import argparse
from typing import Any

from ..params.assignments import parse_assignment
from ..params.values import BadParam
from .run_options import add_hyperparameters, add_run_options, finish_run
from .train import run_call
from .value_types import positive_int

__all__ = ["CALLS", "FINISH", "add_dev"]

DEV_EPILOG = """\
examples:
  %runctl dev train.py --watch                       # edit train.py: the run restarts
  %runctl dev train.py --backend aws --instance-type g5.xlarge --keep --watch
  %%runctl dev --validate-before-run --smoke-steps 5 --smoke-param n_samples=200
  runctl dev train.py --watch -p lr=0.1              # Ctrl-C ends the session

A %%runctl dev cell run again restarts its dev run (same id, next attempt) with the
new code; --watch restarts a SCRIPT's run when it or a module it imports from its
folder changes."""

# dev's own options: not run options, never in spec["options"]
_DEV_KWARGS = ("watch", "validate", "smoke_steps", "smoke_params")


def add_dev(sub: Any) -> None:
    p = sub.add_parser(
        "dev",
        help="a dev run: edit, and it restarts on the same machine (--watch)",
        description="Run the cell below (%%runctl dev) or SCRIPT as a run that restarts on each change.",
        usage="%(prog)s [SCRIPT] [options] [-- SCRIPT ARGS]",
        epilog=DEV_EPILOG,
    )
    p.add_argument("script", nargs="?", metavar="SCRIPT", help="a .py file (shell: required)")
    g = p.add_argument_group("dev")
    g.add_argument(
        "--watch",
        action="store_true",
        help="restart when SCRIPT or a module it imports from its folder changes",
    )
    g.add_argument(
        "--validate-before-run",
        dest="validate",
        action="store_true",
        help="first check syntax and that every import resolves where the run goes",
    )
    g.add_argument(
        "--smoke-steps",
        type=positive_int,
        metavar="N",
        help="first run N logged steps here (free), then launch; a failure stops there",
    )
    g.add_argument(
        "--smoke-param",
        dest="smoke_items",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="a hyperparameter of the smoke run only: its data slice (repeatable)",
    )
    add_hyperparameters(p, sweep=False)
    add_run_options(p)


def finish_dev(ns: argparse.Namespace) -> None:
    finish_run(ns)
    ns.smoke_params = dict(parse_assignment(text, "--smoke-param") for text in ns.smoke_items or [])
    del ns.smoke_items
    if ns.smoke_params and not ns.smoke_steps:
        raise BadParam("--smoke-param names the smoke run's data: add --smoke-steps N")
    if ns.nodes and ns.nodes > 1:
        raise BadParam(
            "dev runs on one machine: drop --nodes (a multi-node run: `runctl train --nodes M`)"
        )


def _call_dev(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "dev", run_call(ns, own=_DEV_KWARGS)


FINISH = {"dev": finish_dev}
CALLS = {"dev": _call_dev}
