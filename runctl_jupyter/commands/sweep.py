"""`sweep`: run the cell, SCRIPT or NOTEBOOK once per trial of a search space (grid,
random or optuna), and `sweeps`, the list of them. A sweep takes every run option
(its trials are runs) plus the search and its scheduling; the checks after parsing
make a line that could not run fail here, before anything launches."""

from __future__ import annotations

import argparse
from typing import Any

from ..params.objectives import parse_objective
from ..params.search import parse_grid, parse_grid_hyperparams, parse_space
from ..params.values import BadParam
from .debug_options import add_debugger, finish_debugger
from .hyperparams import GridItem
from .run_options import add_hyperparameters, add_run_options, finish_run
from .train import train_options
from .value_types import nonneg_int, positive_int, typed

__all__ = ["CALLS", "FINISH", "add_sweep", "add_sweeps"]

SWEEP_EPILOG = """\
examples:
  %%runctl sweep --grid lr=0.001,0.01,0.1 --grid batch_size=32,64 --max-parallel 4 --objective val_acc:max
  %%runctl sweep --random 20 --space lr=loguniform(1e-4,1e-1) --space layers=choice(2,3,4) --seed 0
  %runctl sweep train.py --hyperparams "lr:0.001,0.01 batch_size:32,64"
  %runctl sweep --resume SWEEP --retry-failed

distributions: uniform(a,b) loguniform(a,b) randint(a,b) quniform(a,b,q) normal(mu,sigma) choice(x,y,...)"""


def add_sweep(sub: Any) -> None:
    p = sub.add_parser(
        "sweep",
        help="many runs over a search space (grid, random, optuna)",
        description="Run the cell, SCRIPT or NOTEBOOK once per trial of a search space.",
        usage="%(prog)s [TARGET] [options] [-- SCRIPT ARGS]",
        epilog=SWEEP_EPILOG,
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="SCRIPT.py or NOTEBOOK.ipynb")
    add_hyperparameters(p, sweep=True)
    g = p.add_argument_group("search")
    g.add_argument(
        "--grid",
        dest="grid_items",
        action=GridItem,
        metavar="K=V1,V2",
        help="every combination of the values (repeatable)",
    )
    g.add_argument("--random", type=positive_int, metavar="N", help="N random trials over --space")
    g.add_argument(
        "--space",
        action="append",
        default=None,
        metavar="K=DIST(ARGS)",
        help="a distribution to sample (repeatable; below)",
    )
    g.add_argument(
        "--search", choices=("grid", "random", "optuna"), help="optuna: TPE over --space"
    )
    g.add_argument(
        "--trials", type=positive_int, metavar="N", help="trials of a random/optuna search"
    )
    g.add_argument("--seed", type=int, metavar="S", help="the search's seed (recorded)")
    g.add_argument(
        "--objective",
        type=typed(parse_objective),
        metavar="METRIC:max|min",
        help="how trials are ranked (a trial's best value)",
    )
    g.add_argument(
        "--prune", choices=("median", "asha"), help="stop trials worse than the others so far"
    )
    g = p.add_argument_group("scheduling")
    g.add_argument("--max-parallel", type=positive_int, metavar="N", help="trials at once")
    g.add_argument("--stop-on-failure", action="store_true", help="stop at the first failed trial")
    g.add_argument(
        "--max-failures", type=nonneg_int, metavar="K", help="tolerate K failures, stop at the next"
    )
    g.add_argument("--resume", metavar="SWEEP", help="continue a stopped or orphaned sweep")
    g.add_argument("--retry-failed", action="store_true", help="with --resume: rerun failed trials")
    add_run_options(p)
    add_debugger(p, hidden=True)  # parsed only to say why a sweep refuses it


def add_sweeps(sub: Any) -> None:
    sub.add_parser("sweeps", help="list sweeps", description="List sweeps.")


def finish_sweep(ns: argparse.Namespace) -> None:
    finish_run(ns)
    finish_debugger(ns, sweep=True)
    grid: dict[str, list[Any]] = {}
    for kind, option, text in ns.grid_items or []:
        new = parse_grid([text], option) if kind == "grid" else parse_grid_hyperparams(text, option)
        for key, values in new.items():
            if key in grid:
                raise BadParam(f"grid key {key} is given twice; put all its values in one --grid")
            grid[key] = values
    del ns.grid_items
    ns.grid = grid
    ns.space = parse_space(ns.space)
    for key in ns.params:
        if key in grid or key in ns.space:
            raise BadParam(f"{key} is both fixed (-p) and swept; drop one of them")
    for key in grid:
        if key in ns.space:
            raise BadParam(f"{key} is both in --grid and --space; drop one of them")
    if ns.random is not None:
        if ns.search not in (None, "random"):
            raise BadParam(f"--random N is a random search; it cannot go with --search {ns.search}")
        if ns.trials not in (None, ns.random):
            raise BadParam("--random N already sets the number of trials; drop --trials")
        ns.search, ns.trials = "random", ns.random
    if ns.search is None:
        ns.search = "random" if ns.space and not grid else "grid"
    if ns.retry_failed and not ns.resume:
        raise BadParam("--retry-failed goes with --resume SWEEP")
    if ns.resume:
        return
    if ns.search == "grid":
        if ns.space:
            raise BadParam(
                "--space is for random or optuna search; add --random N or --search optuna --trials N"
            )
        if ns.trials is not None:
            raise BadParam("a grid runs every combination; --trials is for --search random|optuna")
        if not grid:
            raise BadParam(
                "nothing to sweep: give --grid KEY=V1,V2 (repeatable), or --random N --space KEY=DIST(...)"
            )
    else:
        if not ns.space and not grid:
            raise BadParam(
                f"--search {ns.search} needs a --space KEY=DIST(...) (or --grid) to search"
            )
        if ns.trials is None:
            flag = "--random N" if ns.search == "random" else "--trials N"
            raise BadParam(f"say how many trials with {flag}")


# sweep fields passed as keyword arguments; every other run option goes in `options`
_SWEEP_KWARGS = (
    "target",
    "args",
    "params",
    "grid",
    "space",
    "search",
    "trials",
    "seed",
    "max_parallel",
    "objective",
    "stop_on_failure",
    "max_failures",
    "prune",
    "early_stop",
    "cost_limit",
    "resume",
    "retry_failed",
    "experiment",
    "name",
    "project",
    "tags",
    "backend",
    "metrics",
    "detach",
    "yes",
    "max_hours",
    "ship_objects",
    "ship",
)
# sweep-only fields that never belong in a trial's run options
_SWEEP_ONLY = ("random",)


def _call_sweep(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    kw = {k: getattr(ns, k) for k in _SWEEP_KWARGS}
    kw["args"], kw["tags"], kw["metrics"] = tuple(ns.args), tuple(ns.tags), tuple(ns.metrics)
    kw["options"] = train_options(ns, exclude=_SWEEP_KWARGS + _SWEEP_ONLY)
    return "sweep", kw


FINISH = {"sweep": finish_sweep}
CALLS = {"sweep": _call_sweep, "sweeps": lambda ns: ("sweeps", {})}
