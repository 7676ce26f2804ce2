"""`models`: the model registry (list, show, register, promote, rollback), and the
run options that register a run's model (`--register-model`, `--register-if`)."""

from __future__ import annotations

import argparse
from typing import Any

from ..params.conditions import parse_condition
from ..params.values import BadParam
from ..registry import RegistryError, check_name

__all__ = ["CALLS", "FINISH", "add_models", "add_register_options", "check_register_options"]

ACTIONS = ("list", "show", "register", "promote", "rollback", "export")
MODELS_EPILOG = """\
examples:
  %runctl models                                   # names, versions, aliases
  %runctl models show digits                       # versions with their runs
  %runctl models register digits RUN               # a run's latest checkpoint
  %runctl models promote digits 3 --alias production
  %runctl models rollback digits --alias production
  runctl models export digits 3 --mlflow sqlite:///mlflow.db   # into an MLflow registry"""


def add_register_options(g: Any) -> None:
    g.add_argument(
        "--register-model",
        metavar="NAME",
        help="register the run's model (register_model(), else its latest checkpoint)",
    )
    g.add_argument(
        "--register-if",
        metavar="EXPR",
        help='only if the final metrics say so: "val_acc >= 0.95"',
    )


def check_register_options(ns: argparse.Namespace) -> None:
    try:
        if ns.register_model is not None:
            check_name(ns.register_model)
        if ns.register_if is not None:
            if ns.register_model is None:
                raise BadParam("--register-if goes with --register-model NAME")
            parse_condition(ns.register_if)
    except RegistryError as exc:
        raise BadParam(f"--register-model: {exc}") from None


def add_models(sub: Any) -> None:
    p = sub.add_parser(
        "models",
        help="the model registry: versions, aliases, promote, rollback",
        description="Registered models: versions with their runs, and aliases.",
        usage="%(prog)s [list | show NAME | register NAME RUN | promote NAME VERSION | "
        "rollback NAME | export NAME VERSION --mlflow URI] [--alias A]",
        epilog=MODELS_EPILOG,
    )
    p.add_argument("action", nargs="?", default="list", choices=ACTIONS, metavar="ACTION")
    p.add_argument("name", nargs="?", metavar="NAME")
    p.add_argument("target", nargs="?", metavar="VERSION|RUN")
    p.add_argument(
        "--alias", default="production", metavar="A", help="promote/rollback (production)"
    )
    p.add_argument("--mlflow", metavar="URI", help="export: an MLflow tracking URI")


def _finish_models(ns: argparse.Namespace) -> None:
    words = {"show": 1, "register": 2, "promote": 2, "rollback": 1, "list": 0, "export": 2}
    needs = words[ns.action]
    given = [x for x in (ns.name, ns.target) if x is not None]
    if len(given) != needs:
        shapes = {
            "list": "models",
            "show": "models show NAME",
            "register": "models register NAME RUN",
            "promote": "models promote NAME VERSION [--alias A]",
            "rollback": "models rollback NAME [--alias A]",
            "export": "models export NAME VERSION --mlflow URI",
        }
        raise BadParam(f"it is: {shapes[ns.action]}")
    try:
        if ns.name is not None:
            check_name(ns.name)
        check_name(ns.alias, "alias")
    except RegistryError as exc:
        raise BadParam(str(exc)) from None
    if (ns.action == "export") != (ns.mlflow is not None):
        raise BadParam(
            "--mlflow URI goes with export, and export needs it: models export NAME VERSION --mlflow URI"
        )
    if ns.action in ("promote", "export"):
        try:
            ns.target = int(ns.target)
        except ValueError:
            raise BadParam(f"VERSION is a number (1, 2, ...), not {ns.target!r}") from None


FINISH = {"models": _finish_models}
CALLS = {
    "models": lambda ns: (
        "models",
        {
            "action": ns.action,
            "name": ns.name,
            "target": ns.target,
            "alias": ns.alias,
            "mlflow": ns.mlflow,
        },
    )
}
