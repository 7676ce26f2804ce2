"""`train`: run the cell below the magic, or SCRIPT, as one tracked run. Its own
options are the run options (run_options.py); this is the subcommand, its help and
how its namespace becomes `Session.train(...)`."""

from __future__ import annotations

import argparse
from typing import Any

from .debug_options import add_debugger, finish_debugger
from .run_options import add_hyperparameters, add_run_options, finish_run

__all__ = ["CALLS", "FINISH", "TRAIN_KWARGS", "add_train", "run_call", "train_options"]

TRAIN_EPILOG = """\
examples:
  %%runctl train -p lr=0.05 -p hidden=[64,32] --experiment digits-mlp
  %runctl train train.py -p epochs=10 --backend aws --instance-type g5.xlarge -- --data ./data
  runctl train train.py --hyperparams epochs=50,lr=0.001 --metrics loss,acc --detach

-p values are typed: 3 is an int, 1e-3 a float, true/false bools, none None,
[64,32] and {"a": 1} a list and a dict; anything else is the exact text."""


def add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="run a cell (%%%%runctl train) or SCRIPT as a tracked run",
        description="Run the cell below (%%runctl train) or SCRIPT as a tracked run.",
        usage="%(prog)s [SCRIPT] [options] [-- SCRIPT ARGS]",
        epilog=TRAIN_EPILOG,
    )
    p.add_argument("script", nargs="?", metavar="SCRIPT", help="a .py file (shell: required)")
    add_hyperparameters(p, sweep=False)
    add_run_options(p)
    add_debugger(p)


# train fields passed as keyword arguments; every other run option goes in `options`
TRAIN_KWARGS = (
    "script",
    "args",
    "params",
    "experiment",
    "name",
    "project",
    "tags",
    "backend",
    "metrics",
    "detach",
    "max_hours",
    "ship_objects",
    "ship",
)
_NOT_OPTIONS = {"command", "params_var", "help"}


def train_options(
    ns: argparse.Namespace, exclude: tuple[str, ...] = TRAIN_KWARGS
) -> dict[str, Any]:
    """Every run option that is not a keyword argument of its own, by canonical name."""
    return {
        key: value
        for key, value in sorted(vars(ns).items())
        if key not in exclude and key not in _NOT_OPTIONS
    }


def run_call(ns: argparse.Namespace, own: tuple[str, ...] = ()) -> dict[str, Any]:
    """train's keyword arguments, plus a command's `own` ones (dev's); every other run
    option goes in `options`."""
    keys = TRAIN_KWARGS + own
    kw = {k: getattr(ns, k) for k in keys}
    kw["args"], kw["tags"], kw["metrics"] = tuple(ns.args), tuple(ns.tags), tuple(ns.metrics)
    kw["options"] = train_options(ns, exclude=keys)
    return kw


def _call_train(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "train", run_call(ns)


def _finish_train(ns: argparse.Namespace) -> None:
    finish_run(ns)
    finish_debugger(ns)


FINISH = {"train": _finish_train}
CALLS = {"train": _call_train}
