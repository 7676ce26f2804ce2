"""`train --debug`: the run's process waits for a debugger (debugpy, docs/debugging.md).

Not the global `--debug` that comes BEFORE the command (`%runctl --debug train ...`:
an error's full traceback); strip_global takes that one off first, so after `train`
the word means this option. Its dest is `debugger`, never `debug`, which the global
flag owns on every namespace.
"""

from __future__ import annotations

import argparse

from ..params.values import BadParam
from .value_types import int_at_least, nonneg_int, positive_float

__all__ = ["DEFAULT_PORT", "DEFAULT_TIMEOUT", "add_debugger", "finish_debugger"]

DEFAULT_PORT = 5678  # debugpy's and VS Code's own default: a saved launch.json keeps working
DEFAULT_TIMEOUT = 300.0  # seconds the run waits for the client, then goes on without it


def port(text: str) -> int:
    value = nonneg_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is 1-65535 (0: a free one), got {value}")
    return value


port.__name__ = "port"


def add_debugger(p: argparse.ArgumentParser, *, hidden: bool = False) -> None:
    """The `debugging` group of `train --help` (a sweep parses them only to refuse them)."""
    g = p.add_argument_group("debugging (after the command; before it, --debug shows tracebacks)")

    def shown(text: str) -> str:
        return argparse.SUPPRESS if hidden else text

    g.add_argument(
        "--debug",
        dest="debugger",
        action="store_true",
        help=shown("the run waits for a debugger (debugpy) on 127.0.0.1 of the machine running it"),
    )
    g.add_argument(
        "--debug-rank",
        type=int_at_least(0),
        metavar="N",
        help=shown("the rank that waits for the debugger (0; --nodes M needs it)"),
    )
    g.add_argument(
        "--debug-port",
        type=port,
        metavar="P",
        help=shown(f"the port debugpy listens on ({DEFAULT_PORT}; 0: a free one)"),
    )
    g.add_argument(
        "--debug-timeout",
        type=positive_float,
        metavar="SECONDS",
        help=shown(
            f"wait this long for the debugger, then go on without it ({DEFAULT_TIMEOUT:.0f})"
        ),
    )


def finish_debugger(ns: argparse.Namespace, *, sweep: bool = False) -> None:
    """Refuse what cannot work; fill in the defaults of a `--debug` run."""
    extras = [
        flag
        for flag, value in (
            ("--debug-rank", ns.debug_rank),
            ("--debug-port", ns.debug_port),
            ("--debug-timeout", ns.debug_timeout),
        )
        if value is not None
    ]
    if sweep:
        if ns.debugger or extras:
            raise BadParam(
                "--debug waits for a debugger in one run, not in a sweep's trials: train the "
                "trial to debug alone, with its values (train --debug -p KEY=VALUE ...)"
            )
        for name in ("debugger", "debug_rank", "debug_port", "debug_timeout"):
            delattr(ns, name)  # never a trial's option
        return
    if not ns.debugger:
        if extras:
            raise BadParam(f"{extras[0]} goes with --debug (after the command): add --debug")
        return
    if (ns.nodes or 1) > 1 and ns.debug_rank is None:
        raise BadParam(
            f"--debug with --nodes {ns.nodes}: say which rank waits for the debugger, "
            "e.g. --debug-rank 0 (ranks 0 to nodes x processes per node - 1)"
        )
    if ns.debug_rank is None:
        ns.debug_rank = 0
    if ns.debug_port is None:
        ns.debug_port = DEFAULT_PORT
    if ns.debug_timeout is None:
        ns.debug_timeout = DEFAULT_TIMEOUT
