"""The commands on runs that exist: `runs` lists them; `show`, `logs`, `attach`,
`stop`, `resume` and `rerun` take one RUN (rerun also a record.ipynb); `compare` takes
several; and `execute`, which like `rerun` starts a run from a file with `-p`
overrides: a whole notebook."""

from __future__ import annotations

import argparse
from typing import Any

from .hyperparams import add_params, merge_param_items
from .value_types import nonneg_int, positive_int

__all__ = [
    "CALLS",
    "FINISH",
    "RUN_STATES",
    "add_compare",
    "add_execute",
    "add_logs",
    "add_rerun",
    "add_resume",
    "add_runs",
    "add_show_attach",
    "add_stop",
]

RUN_STATES = (
    "queued",
    "provisioning",
    "starting",
    "running",
    "interrupted",
    "resuming",
    "succeeded",
    "failed",
    "stopped",
    "lost",
)


def add_runs(sub: Any) -> None:
    p = sub.add_parser(
        "runs", help="list runs, newest first", description="List runs, newest first."
    )
    p.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    p.add_argument(
        "--status",
        choices=(*RUN_STATES, "active"),
        metavar="STATUS",
        help=", ".join(RUN_STATES) + ", or active (any of the first six: not ended)",
    )
    p.add_argument("--limit", type=positive_int, default=20, metavar="N")
    p.add_argument("--all", action="store_true", help="no limit")
    p.add_argument("--project", metavar="P")
    p.add_argument("--sweep", metavar="SWEEP")
    p.add_argument(
        "--owner",
        metavar="NAME",
        help="teammates' runs too (c.Runctl.team, pulled from the team store): all, or one owner's",
    )


def add_show_attach(sub: Any) -> None:
    for name, text in (
        ("show", "details of a run or a sweep"),
        ("attach", "show a run live again"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("ref", metavar="RUN", help="run id, unique id prefix, or run name")


def add_logs(sub: Any) -> None:
    p = sub.add_parser(
        "logs", help="a run's output, every attempt", description="Show a run's output."
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", type=nonneg_int, metavar="N", help="only the last N lines")


def add_stop(sub: Any) -> None:
    p = sub.add_parser(
        "stop", help="stop a run (graceful, then SIGKILL)", description="Stop a run."
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("--force", action="store_true", help="kill at once, no grace period")


def add_resume(sub: Any) -> None:
    p = sub.add_parser(
        "resume",
        help="continue a stopped/failed/lost run from its checkpoint",
        description="Continue a stopped, failed or lost run from its latest checkpoint, same id.",
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("--detach", action="store_true")


def add_rerun(sub: Any) -> None:
    p = sub.add_parser(
        "rerun",
        help="a fresh run with the same code and params",
        description="Start a fresh run (new id) from a run or a record.ipynb; -p overrides params.",
    )
    p.add_argument("ref", metavar="RUN_OR_RECORD")
    add_params(p)
    p.add_argument("--detach", action="store_true")
    p.add_argument(
        "--trust",
        action="store_true",
        help="load the pickled objects of a record this home did not write (it can run code)",
    )


def add_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare", help="runs side by side", description="Compare runs side by side."
    )
    p.add_argument("refs", nargs="*", metavar="RUN")
    p.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    p.add_argument("--sweep", metavar="SWEEP")
    p.add_argument("--metric", metavar="M")


def add_execute(sub: Any) -> None:
    p = sub.add_parser(
        "execute",
        help="run a whole notebook headless (papermill parameters)",
        description="Execute NOTEBOOK.ipynb as a run; -p fills its `parameters` cell.",
    )
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    add_params(p)
    p.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    p.add_argument("--name", metavar="NAME")
    p.add_argument("--detach", action="store_true")


def _finish_runs(ns: argparse.Namespace) -> None:
    if ns.all:
        ns.limit = None


def _finish_rerun_execute(ns: argparse.Namespace) -> None:
    ns.params = merge_param_items(ns)
    del ns.param_items


FINISH = {
    "runs": _finish_runs,
    "rerun": _finish_rerun_execute,
    "execute": _finish_rerun_execute,
}


def _call_runs(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "runs", {
        "experiment": ns.experiment,
        "status": ns.status,
        "limit": ns.limit,
        "project": ns.project,
        "sweep": ns.sweep,
        "owner": ns.owner,
    }


def _call_compare(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "compare", {
        "refs": tuple(ns.refs),
        "experiment": ns.experiment,
        "sweep": ns.sweep,
        "metric": ns.metric,
    }


def _call_execute(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    return "execute", {
        "notebook": ns.notebook,
        "params": ns.params or None,
        "experiment": ns.experiment,
        "name": ns.name,
        "detach": ns.detach,
    }


def add_context(sub: Any) -> None:
    p = sub.add_parser(
        "context",
        help="what this notebook used last (reused by a bare train)",
        description="What this notebook (in the shell: this folder) launched with last.\n"
        "A train or sweep that leaves these out reuses them, and says so once;\n"
        "--fresh on a launch ignores them.",
    )
    p.add_argument("--clear", action="store_true", help="forget it")


CALLS = {
    "runs": _call_runs,
    "context": lambda ns: ("context", {"clear": ns.clear}),
    "show": lambda ns: ("show", {"ref": ns.ref}),
    "attach": lambda ns: ("attach", {"ref": ns.ref}),
    "logs": lambda ns: ("logs", {"ref": ns.ref, "follow": ns.follow, "tail": ns.tail}),
    "stop": lambda ns: ("stop", {"ref": ns.ref, "force": ns.force}),
    "resume": lambda ns: ("resume", {"ref": ns.ref, "detach": ns.detach}),
    "rerun": lambda ns: (
        "rerun",
        {"ref": ns.ref, "params": ns.params or None, "detach": ns.detach, "trust": ns.trust},
    ),
    "compare": _call_compare,
    "execute": _call_execute,
}
