"""The one argument parser behind `%runctl ...`, `%%runctl ...` and the `runctl` shell command.

    words = split_line("train -p note='a b' --experiment digits")   # shlex, POSIX, nothing expanded
    ns = parse(words)                                                # argparse.Namespace, ns.command
    method, kwargs = to_call(ns)                                     # what to call on the Session

Errors never exit the process: a bad line raises `UsageProblem` (a RunctlError) with a
one-line message, and `--help` raises `HelpRequested` carrying the help text, so a
kernel can print it.

Each command is parsed in the module named for it or its group: train.py (with
run_options.py, the options every run takes), dev.py, sweep.py (sweep, sweeps), runs.py
(runs, show, logs, attach, stop, resume, rerun, compare, execute), cost.py, and
aws.py (aws, resources, cleanup), models.py (the model registry), schedule.py (schedule,
schedules). A module adds its subparsers, finishes its
namespace after parsing (FINISH) and maps it to a Session call (CALLS).
Shared by them: argparser.py (raise, never exit), value_types.py and hyperparams.py
(-p and --hyperparams kept in line order).
completion.py completes a magic line from these parsers (imported only on a Tab).
"""

from __future__ import annotations

import argparse
import functools
import shlex
from typing import Any

from ..params.values import BadParam
from . import aws, cost, dev, models, runs, schedule, sweep, train
from .argparser import HelpRequested, RunctlArgumentParser, UsageProblem

__all__ = [
    "COMMANDS",
    "HelpRequested",
    "UsageProblem",
    "build_parser",
    "format_help",
    "parse",
    "split_line",
    "strip_global",
    "to_call",
]

COMMANDS = (
    "train dev sweep runs show logs attach stop resume rerun compare sweeps resources cleanup "
    "cost execute context models schedule schedules aws"
).split()

# each adds its subparsers, in the order `runctl --help` lists them
_ADD_PARSERS = (
    train.add_train,
    dev.add_dev,
    sweep.add_sweep,
    runs.add_runs,
    runs.add_show_attach,
    runs.add_logs,
    runs.add_stop,
    runs.add_resume,
    runs.add_rerun,
    runs.add_compare,
    sweep.add_sweeps,
    aws.add_resources,
    aws.add_cleanup,
    cost.add_cost,
    runs.add_execute,
    runs.add_context,
    models.add_models,
    schedule.add_schedule,
    schedule.add_schedules,
    aws.add_aws,
)
_FINISH = {
    **train.FINISH,
    **dev.FINISH,
    **sweep.FINISH,
    **runs.FINISH,
    **cost.FINISH,
    **models.FINISH,
    **schedule.FINISH,
}
_CALLS = {
    **train.CALLS,
    **dev.CALLS,
    **sweep.CALLS,
    **runs.CALLS,
    **cost.CALLS,
    **aws.CALLS,
    **models.CALLS,
    **schedule.CALLS,
}


class _CommandListed:
    """Stands in for a command's parser when only the list of commands is wanted (the
    magic's docstring at `%load_ext`, `--help`): every call on it is skipped, so no
    command parser is built (most of the cost of the full parser)."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def _top_parser(prog: str, parser_class: type) -> RunctlArgumentParser:
    top = RunctlArgumentParser(
        prog=prog,
        description="Run notebook cells and scripts as tracked training runs, here or on EC2 spot.",
        epilog=f"`{prog} COMMAND --help` shows a command's options.",
    )
    top.add_argument("--version", action="store_true", help="show the version")
    top.add_argument(
        "--debug",
        action="store_true",
        help="before COMMAND: show an error's full traceback (for a bug report), not its one "
        "line (after `train`, --debug makes the run wait for a debugger)",
    )
    sub: argparse._SubParsersAction[Any] = top.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=parser_class
    )
    for add in _ADD_PARSERS:
        add(sub)
    top.commands = dict(sub.choices)
    return top


@functools.lru_cache(maxsize=4)
def build_parser(prog: str = "runctl") -> RunctlArgumentParser:
    """The parser for every subcommand (cached per prog: "runctl" or "%runctl")."""
    return _top_parser(prog, RunctlArgumentParser)


@functools.lru_cache(maxsize=4)
def _command_list(prog: str) -> str:
    return _top_parser(prog, _CommandListed).format_help()


def format_help(prog: str = "runctl", command: str | None = None) -> str:
    if command is None:
        return _command_list(prog)
    return _subparser(build_parser(prog), command).format_help()


def _subparser(top: RunctlArgumentParser, command: str) -> argparse.ArgumentParser:
    return top.commands[command]


def split_line(line: str) -> list[str]:
    """Split like a POSIX shell line (quotes group words); nothing is expanded or executed."""
    try:
        return shlex.split(line, posix=True)
    except ValueError as exc:
        what = "an unbalanced quote" if "quotation" in str(exc) else "a trailing backslash"
        raise UsageProblem(
            f"cannot split the line: {what} ({exc}); close the quote, "
            "or quote a value that contains ' or \" with the other kind"
        ) from None


def strip_global(words: list[str]) -> tuple[bool, list[str]]:
    """`--debug` before the command (`runctl --debug aws setup`): (debug, the other words).
    After the command it is that command's own (`train --debug`: wait for a debugger)."""
    words = list(words)
    debug = False
    while words and words[0] == "--debug":
        debug, words = True, words[1:]
    return debug, words


def parse(words: list[str], prog: str = "runctl") -> argparse.Namespace:
    """Parse words into a namespace with `.command` and one spelling per option
    (`.debug`: the global `--debug` came first)."""
    debug, words = strip_global(words)
    if not words or words[0] in ("-h", "--help"):
        raise HelpRequested(format_help(prog))
    if words[0] == "--version":
        from .._version import __version__

        raise HelpRequested(f"runctl-jupyter {__version__}\n")
    command, rest = words[0], words[1:]
    if command not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(command, COMMANDS, n=1, cutoff=0.7)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UsageProblem(
            f"{prog}: unknown command {command!r}; {hint}choose from {', '.join(COMMANDS)}"
        )
    script_args: list[str] = []
    if "--" in rest:
        cut = rest.index("--")
        rest, script_args = rest[:cut], rest[cut + 1 :]
    sub = _subparser(build_parser(prog), command)
    try:
        ns = sub.parse_intermixed_args(rest)
    except argparse.ArgumentError as exc:
        raise UsageProblem(
            f"{sub.prog}: {exc} (see {sub.prog} --help)", sub.format_usage()
        ) from None
    except BadParam as exc:
        raise UsageProblem(f"{sub.prog}: {exc}", sub.format_usage()) from None
    ns.command = command
    ns.debug = debug
    if script_args and command not in ("train", "dev", "sweep", "schedule"):
        raise UsageProblem(
            f"{sub.prog}: only train, dev and sweep take script arguments after -- "
            "(and schedule add)"
        )
    ns.args = script_args
    try:
        _FINISH.get(command, lambda ns: None)(ns)
    except BadParam as exc:
        raise UsageProblem(f"{sub.prog}: {exc}", sub.format_usage()) from None
    return ns


def to_call(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The Session method and keyword arguments for a parsed line.

    `train`/`sweep` leave out `code` and `user_ns` (only the magic has them) and
    `--params VAR` (ns.params_var: the caller resolves it and merges it under ns.params).
    """
    call = _CALLS.get(ns.command)
    if call is None:
        raise UsageProblem(f"unknown command {ns.command!r}")
    return call(ns)
