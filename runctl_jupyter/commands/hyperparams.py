"""Hyperparameters on a command line: `-p KEY=VALUE` and the original runctl's
`--hyperparams` (a run's values, or a sweep's grid). argparse keeps each spelling in
its own list; these actions record every item in one list in command-line order,
so that across both spellings the later value wins."""

from __future__ import annotations

import argparse
from typing import Any

from ..params.assignments import parse_assignment, parse_hyperparams

__all__ = ["GridItem", "add_params", "merge_param_items"]


class _Ordered(argparse.Action):
    """Append (kind, value) to a shared list so -p/--hyperparams merge in command-line order."""

    kind = ""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((self.kind, option_string, values))
        setattr(namespace, self.dest, items)


class _ParamItem(_Ordered):
    kind = "p"


class _HyperItem(_Ordered):
    kind = "hyper"


class GridItem(_Ordered):
    kind = "grid"


def add_params(p: argparse._ActionsContainer, *, hyper_is_grid: bool = False) -> None:
    p.add_argument(
        "-p",
        "--param",
        dest="param_items",
        action=_ParamItem,
        metavar="KEY=VALUE",
        help="a typed hyperparameter (repeatable; later wins)",
    )
    if hyper_is_grid:
        p.add_argument(
            "--hyperparams",
            dest="grid_items",
            action=_HyperItem,
            metavar="'K:V1,V2 K2:V1,V2'",
            help="the original runctl's grid spelling (same as --grid)",
        )
    else:
        p.add_argument(
            "--hyperparams",
            dest="param_items",
            action=_HyperItem,
            metavar="K=V,K=V",
            help="the original runctl's spelling: epochs=50,lr=0.001 (commas in [] or quotes do not split)",
        )


def merge_param_items(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, option, text in getattr(ns, "param_items", None) or []:
        if kind == "p":
            key, value = parse_assignment(text, option)
            new = {key: value}
        else:
            new = parse_hyperparams(text, option)
        for key, value in new.items():
            out.pop(key, None)
            out[key] = value
    return out
