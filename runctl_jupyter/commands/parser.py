"""The one argument parser behind `%runctl ...`, `%%runctl ...` and the `runctl` shell command.

    words = split_line("train -p note='a b' --experiment digits")   # shlex, POSIX, nothing expanded
    ns = parse(words)                                                # argparse.Namespace, ns.command
    method, kwargs = to_call(ns)                                     # what to call on the Session

Errors never exit the process: a bad line raises `UsageProblem` (a RunctlError) with a
one-line message, and `--help` raises `HelpRequested` carrying the help text, so a
kernel can print it.
"""

from __future__ import annotations

import argparse
import functools
import re
import shlex
from typing import Any, NoReturn

from .. import params as P
from ..errors import RunctlError

__all__ = [
    "COMMANDS",
    "HelpRequested",
    "RUN_STATES",
    "UsageProblem",
    "build_parser",
    "format_help",
    "parse",
    "split_line",
    "to_call",
    "train_options",
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


class UsageProblem(RunctlError):
    """A line that does not parse; `.usage` holds the subcommand's usage text."""

    def __init__(self, message: str, usage: str | None = None):
        super().__init__(message)
        self.usage = usage


class HelpRequested(Exception):
    """`--help` was asked for; `.text` is the help to print (never sys.exit in a kernel)."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _HelpAction(argparse.Action):
    def __init__(
        self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None
    ):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        raise HelpRequested(parser.format_help())


class RunctlArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("add_help", False)
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("exit_on_error", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)
        self.add_argument("-h", "--help", action=_HelpAction, help="show this help")

    def error(self, message: str) -> NoReturn:
        raise UsageProblem(f"{self.prog}: {message} (see {self.prog} --help)", self.format_usage())

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            self.error((message or "error").strip())
        raise HelpRequested(message or "")


# ---------------------------------------------------------------- value types


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _int_at_least(low: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    convert.__name__ = f"int>={low}"
    return convert


_positive_int = _int_at_least(1)
_nonneg_int = _int_at_least(0)


def _gpus(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a number of GPUs or 'all', got {text!r}"
        ) from None


_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(steps?|m|mins?|minutes?)?")


def _checkpoint_every(text: str) -> dict[str, Any]:
    m = _EVERY.fullmatch(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"expected N (steps) or Nm (minutes), e.g. 500 or 10m, got {text!r}"
        )
    number, unit = m.group(1), m.group(2) or "steps"
    if unit.startswith("step"):
        if "." in number or int(number) < 1:
            raise argparse.ArgumentTypeError(f"steps must be a whole number >= 1, got {text!r}")
        return {"every": int(number), "unit": "steps"}
    minutes = float(number)
    if minutes <= 0:
        raise argparse.ArgumentTypeError(f"minutes must be > 0, got {text!r}")
    return {"every": minutes, "unit": "minutes"}


def _typed(parse_fn):
    """Wrap a params.py parser as an argparse type (its BadParam becomes a usage error)."""

    def convert(text: str) -> Any:
        try:
            return parse_fn(text)
        except P.BadParam as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse_fn.__name__
    return convert


# ---------------------------------------------------------------- order-keeping actions


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


class _GridItem(_Ordered):
    kind = "grid"


class _ExtendSplit(argparse.Action):
    """`--metrics loss,acc --metrics lr` -> ["loss", "acc", "lr"] (deduplicated, in order)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        for part in re.split(r"[,\s]+", values):
            if part and part not in items:
                items.append(part)
        setattr(namespace, self.dest, items)


# ---------------------------------------------------------------- the parser


TRAIN_EPILOG = """\
examples:
  %%runctl train -p lr=0.05 -p hidden=[64,32] --experiment digits-mlp
  %runctl train train.py -p epochs=10 --backend aws --instance-type g5.xlarge -- --data ./data
  runctl train train.py --hyperparams epochs=50,lr=0.001 --metrics loss,acc --detach

-p values are typed: 3 is an int, 1e-3 a float, true/false bools, none None,
[64,32] and {"a": 1} a list and a dict; anything else is the exact text."""

SWEEP_EPILOG = """\
examples:
  %%runctl sweep --grid lr=0.001,0.01,0.1 --grid batch_size=32,64 --max-parallel 4 --objective val_acc:max
  %%runctl sweep --random 20 --space lr=loguniform(1e-4,1e-1) --space layers=choice(2,3,4) --seed 0
  %runctl sweep train.py --hyperparams "lr:0.001,0.01 batch_size:32,64"
  %runctl sweep --resume SWEEP --retry-failed

distributions: uniform(a,b) loguniform(a,b) randint(a,b) quniform(a,b,q) normal(mu,sigma) choice(x,y,...)"""


def _add_params(p: argparse.ArgumentParser, *, hyper_is_grid: bool = False) -> None:
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


def _add_run_options(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    _add_params(p, hyper_is_grid=sweep)
    p.add_argument(
        "--params",
        dest="params_var",
        metavar="VAR",
        help="a dict of hyperparameters: a notebook variable (magic) or a JSON file (shell); -p wins",
    )
    g = p.add_argument_group("tracking")
    g.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    g.add_argument("--name", metavar="NAME", help="run name (RUN can be a name)")
    g.add_argument("--project", metavar="P")
    g.add_argument("--tag", dest="tags", action="append", default=None, metavar="TAG")
    g.add_argument(
        "--metrics",
        "--monitor-metrics",
        dest="metrics",
        action=_ExtendSplit,
        metavar="a,b",
        help="metrics to parse from printed lines (loss=0.3, loss: 0.3, JSON lines)",
    )
    g = p.add_argument_group("execution")
    g.add_argument("--backend", metavar="NAME", help="local (default) or aws")
    g.add_argument("--detach", action="store_true", help="return at once; the run goes on")
    g.add_argument(
        "--no-vars",
        dest="ship_objects",
        action="store_false",
        help="do not ship notebook objects the cell uses",
    )
    g.add_argument("--yes", action="store_true", help="confirm a launch above the cost threshold")
    g.add_argument(
        "--max-hours", type=_positive_float, metavar="H", help="stop the run after H hours"
    )
    g.add_argument("--cost-limit", type=_positive_float, metavar="DOLLARS")
    g.add_argument(
        "--early-stop",
        "--early-stopping",
        dest="early_stop",
        type=_typed(P.parse_early_stop),
        metavar="METRIC:MODE,patience=N",
        help="e.g. val_loss:min,patience=10[,min_delta=0.001]",
    )
    g.add_argument(
        "--checkpoint-every",
        "--checkpoint-interval",
        dest="checkpoint_every",
        type=_checkpoint_every,
        metavar="N|Nm",
        help="checkpoint every N steps or N minutes (10m)",
    )
    g.add_argument("--keep-checkpoints", type=_positive_int, metavar="K")
    g.add_argument("--grace", dest="grace_seconds", type=_nonneg_float, metavar="SECONDS")
    g.add_argument("--stall-minutes", type=_positive_float, metavar="M")
    g.add_argument("--stop-on-stall", action="store_true")
    g = p.add_argument_group("cloud (AWS)")
    g.add_argument("--instance-type", metavar="TYPE", help="e.g. g5.xlarge")
    spot = g.add_mutually_exclusive_group()
    spot.add_argument("--spot", dest="spot", action="store_true", default=None)
    spot.add_argument("--on-demand", dest="spot", action="store_false")
    g.add_argument("--instance", metavar="ID", help="reuse a running instance (i-...)")
    g.add_argument("--keep", action="store_true", help="leave a new instance running for reuse")
    g.add_argument("--idle-minutes", type=_positive_float, metavar="M")
    g.add_argument("--region", metavar="REGION")
    g.add_argument("--ami", metavar="AMI_ID")
    g.add_argument("--data", "--data-s3", dest="data", metavar="S3_URL")
    g.add_argument("--validate-data", action="store_true")
    g.add_argument("--volume", metavar="VOL_ID")
    g.add_argument("--sync", action="append", default=None, metavar="DIR")
    g.add_argument(
        "--pip",
        action=_ExtendSplit,
        metavar="auto|none|PKG",
        help="packages to install on the instance (default auto)",
    )
    g.add_argument("--requirements", metavar="FILE")
    g.add_argument("--max-interruptions", type=_nonneg_int, metavar="N")
    g.add_argument(
        "--fallback",
        action=_ExtendSplit,
        metavar="on-demand|TYPE,...",
        help="other types, then on-demand, when spot capacity lacks",
    )
    g.add_argument("--gpus", "--num-gpus", dest="gpus", type=_gpus, metavar="N|all")
    g.add_argument("--nproc-per-node", type=_positive_int, metavar="N")
    g.add_argument("--nodes", type=_positive_int, metavar="M")
    g.add_argument(
        "--efa", action="store_true", help="require EFA networking between the nodes (AWS)"
    )


@functools.lru_cache(maxsize=4)
def build_parser(prog: str = "runctl") -> RunctlArgumentParser:
    """The parser for every subcommand (cached per prog: "runctl" or "%runctl")."""
    top = RunctlArgumentParser(
        prog=prog,
        description="Run notebook cells and scripts as tracked training runs, here or on EC2 spot.",
        epilog=f"`{prog} COMMAND --help` shows a command's options.",
    )
    top.add_argument("--version", action="store_true", help="show the version")
    sub = top.add_subparsers(dest="command", metavar="COMMAND", parser_class=RunctlArgumentParser)

    p = sub.add_parser(
        "train",
        help="run a cell (%%%%runctl train) or SCRIPT as a tracked run",
        description="Run the cell below (%%runctl train) or SCRIPT as a tracked run.",
        usage="%(prog)s [SCRIPT] [options] [-- SCRIPT ARGS]",
        epilog=TRAIN_EPILOG,
    )
    p.add_argument("script", nargs="?", metavar="SCRIPT", help="a .py file (shell: required)")
    _add_run_options(p, sweep=False)

    p = sub.add_parser(
        "sweep",
        help="many runs over a search space (grid, random, optuna)",
        description="Run the cell, SCRIPT or NOTEBOOK once per trial of a search space.",
        usage="%(prog)s [TARGET] [options] [-- SCRIPT ARGS]",
        epilog=SWEEP_EPILOG,
    )
    p.add_argument("target", nargs="?", metavar="TARGET", help="SCRIPT.py or NOTEBOOK.ipynb")
    _add_run_options(p, sweep=True)
    g = p.add_argument_group("search")
    g.add_argument("--grid", dest="grid_items", action=_GridItem, metavar="K=V1,V2")
    g.add_argument("--random", type=_positive_int, metavar="N", help="N random trials over --space")
    g.add_argument("--space", action="append", default=None, metavar="K=DIST(ARGS)")
    g.add_argument("--search", choices=("grid", "random", "optuna"))
    g.add_argument("--trials", type=_positive_int, metavar="N")
    g.add_argument("--seed", type=int, metavar="S")
    g.add_argument("--objective", type=_typed(P.parse_objective), metavar="METRIC:max|min")
    g.add_argument("--prune", choices=("median", "asha"))
    g = p.add_argument_group("scheduling")
    g.add_argument("--max-parallel", type=_positive_int, metavar="N")
    g.add_argument("--stop-on-failure", action="store_true")
    g.add_argument("--max-failures", type=_nonneg_int, metavar="K")
    g.add_argument("--resume", metavar="SWEEP", help="continue a stopped or orphaned sweep")
    g.add_argument("--retry-failed", action="store_true", help="with --resume: rerun failed trials")

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
    p.add_argument("--limit", type=_positive_int, default=20, metavar="N")
    p.add_argument("--all", action="store_true", help="no limit")
    p.add_argument("--project", metavar="P")
    p.add_argument("--sweep", metavar="SWEEP")

    for name, text in (
        ("show", "details of a run or a sweep"),
        ("attach", "show a run live again"),
    ):
        p = sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("ref", metavar="RUN", help="run id, unique id prefix, or run name")

    p = sub.add_parser(
        "logs", help="a run's output, every attempt", description="Show a run's output."
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new output")
    p.add_argument("--tail", type=_nonneg_int, metavar="N", help="only the last N lines")

    p = sub.add_parser(
        "stop", help="stop a run (graceful, then SIGKILL)", description="Stop a run."
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("--force", action="store_true", help="kill at once, no grace period")

    p = sub.add_parser(
        "resume",
        help="continue a stopped/failed/lost run from its checkpoint",
        description="Continue a stopped, failed or lost run from its latest checkpoint, same id.",
    )
    p.add_argument("ref", metavar="RUN")
    p.add_argument("--detach", action="store_true")

    p = sub.add_parser(
        "rerun",
        help="a fresh run with the same code and params",
        description="Start a fresh run (new id) from a run or a record.ipynb; -p overrides params.",
    )
    p.add_argument("ref", metavar="RUN_OR_RECORD")
    _add_params(p)
    p.add_argument("--detach", action="store_true")

    p = sub.add_parser(
        "compare", help="runs side by side", description="Compare runs side by side."
    )
    p.add_argument("refs", nargs="*", metavar="RUN")
    p.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    p.add_argument("--sweep", metavar="SWEEP")
    p.add_argument("--metric", metavar="M")

    sub.add_parser("sweeps", help="list sweeps", description="List sweeps.")

    p = sub.add_parser(
        "resources", help="runctl-managed cloud resources", description="List cloud resources."
    )
    p.add_argument("--region", dest="regions", action="append", default=None, metavar="REGION")
    p.add_argument("--all-owners", action="store_true")

    p = sub.add_parser(
        "cleanup",
        help="delete orphaned cloud resources",
        description="List orphaned resources; delete them with --yes.",
    )
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument("--all-owners", action="store_true")

    p = sub.add_parser(
        "cost",
        help="spend so far; `cost price TYPE` for a price",
        description="Spend by experiment, project, owner, instance type and day; or one price.",
        usage="%(prog)s [price TYPE [--region R] [--spot] [--offline]]",
    )
    p.add_argument("words", nargs="*", metavar="price TYPE")
    p.add_argument("--region", metavar="REGION")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--offline", action="store_true", help="use the bundled price table")

    p = sub.add_parser(
        "execute",
        help="run a whole notebook headless (papermill parameters)",
        description="Execute NOTEBOOK.ipynb as a run; -p fills its `parameters` cell.",
    )
    p.add_argument("notebook", metavar="NOTEBOOK.ipynb")
    _add_params(p)
    p.add_argument("--experiment", "--experiment-name", dest="experiment", metavar="NAME")
    p.add_argument("--name", metavar="NAME")
    p.add_argument("--detach", action="store_true")

    p = sub.add_parser(
        "aws",
        help="aws setup | policy | doctor",
        description="Set up, print the IAM policy for, or check the AWS account.",
    )
    p.add_argument("action", choices=("setup", "policy", "doctor"))
    p.add_argument("--region", metavar="REGION")
    top.commands = dict(sub.choices)
    return top


COMMANDS = (
    "train sweep runs show logs attach stop resume rerun compare sweeps resources cleanup "
    "cost execute aws"
).split()


def format_help(prog: str = "runctl", command: str | None = None) -> str:
    top = build_parser(prog)
    if command is None:
        return top.format_help()
    return _subparser(top, command).format_help()


def _subparser(top: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
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


def parse(words: list[str], prog: str = "runctl") -> argparse.Namespace:
    """Parse words into a namespace with `.command` and one spelling per option."""
    top = build_parser(prog)
    words = list(words)
    if not words or words[0] in ("-h", "--help"):
        raise HelpRequested(top.format_help())
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
    sub = _subparser(top, command)
    try:
        ns = sub.parse_intermixed_args(rest)
    except argparse.ArgumentError as exc:
        raise UsageProblem(
            f"{sub.prog}: {exc} (see {sub.prog} --help)", sub.format_usage()
        ) from None
    except P.BadParam as exc:
        raise UsageProblem(f"{sub.prog}: {exc}", sub.format_usage()) from None
    ns.command = command
    if script_args and command not in ("train", "sweep"):
        raise UsageProblem(f"{sub.prog}: only train and sweep take script arguments after --")
    ns.args = script_args
    try:
        _FINISH.get(command, lambda ns: None)(ns)
    except P.BadParam as exc:
        raise UsageProblem(f"{sub.prog}: {exc}", sub.format_usage()) from None
    return ns


# ---------------------------------------------------------------- after parsing


def _merge_param_items(ns: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, option, text in getattr(ns, "param_items", None) or []:
        if kind == "p":
            key, value = P.parse_assignment(text, option)
            new = {key: value}
        else:
            new = P.parse_hyperparams(text, option)
        for key, value in new.items():
            out.pop(key, None)
            out[key] = value
    return out


def _finish_run(ns: argparse.Namespace) -> None:
    ns.params = _merge_param_items(ns)
    del ns.param_items
    ns.tags = list(ns.tags or [])
    ns.metrics = list(ns.metrics or [])
    if ns.pip is not None:
        if ns.pip == ["auto"]:
            ns.pip = None
        elif any(p in ("auto", "none") for p in ns.pip) and len(ns.pip) > 1:
            raise P.BadParam("--pip auto and --pip none cannot be mixed with package names")
        elif ns.pip == ["none"]:
            ns.pip = []
    if ns.instance and ns.instance_type:
        raise P.BadParam(
            "--instance reuses a running instance of its own type; leave out --instance-type"
        )
    if ns.params_var is not None and not ns.params_var:
        raise P.BadParam("--params needs a variable name (a dict of hyperparameters)")


def _finish_train(ns: argparse.Namespace) -> None:
    _finish_run(ns)


def _finish_sweep(ns: argparse.Namespace) -> None:
    _finish_run(ns)
    grid: dict[str, list[Any]] = {}
    for kind, option, text in ns.grid_items or []:
        new = (
            P.parse_grid([text], option)
            if kind == "grid"
            else P.parse_grid_hyperparams(text, option)
        )
        for key, values in new.items():
            if key in grid:
                raise P.BadParam(f"grid key {key} is given twice; put all its values in one --grid")
            grid[key] = values
    del ns.grid_items
    ns.grid = grid
    ns.space = P.parse_space(ns.space)
    for key in ns.params:
        if key in grid or key in ns.space:
            raise P.BadParam(f"{key} is both fixed (-p) and swept; drop one of them")
    for key in grid:
        if key in ns.space:
            raise P.BadParam(f"{key} is both in --grid and --space; drop one of them")
    if ns.random is not None:
        if ns.search not in (None, "random"):
            raise P.BadParam(
                f"--random N is a random search; it cannot go with --search {ns.search}"
            )
        if ns.trials not in (None, ns.random):
            raise P.BadParam("--random N already sets the number of trials; drop --trials")
        ns.search, ns.trials = "random", ns.random
    if ns.search is None:
        ns.search = "random" if ns.space and not grid else "grid"
    if ns.retry_failed and not ns.resume:
        raise P.BadParam("--retry-failed goes with --resume SWEEP")
    if ns.resume:
        return
    if ns.search == "grid":
        if ns.space:
            raise P.BadParam(
                "--space is for random or optuna search; add --random N or --search optuna --trials N"
            )
        if ns.trials is not None:
            raise P.BadParam(
                "a grid runs every combination; --trials is for --search random|optuna"
            )
        if not grid:
            raise P.BadParam(
                "nothing to sweep: give --grid KEY=V1,V2 (repeatable), or --random N --space KEY=DIST(...)"
            )
    else:
        if not ns.space and not grid:
            raise P.BadParam(
                f"--search {ns.search} needs a --space KEY=DIST(...) (or --grid) to search"
            )
        if ns.trials is None:
            flag = "--random N" if ns.search == "random" else "--trials N"
            raise P.BadParam(f"say how many trials with {flag}")


def _finish_rerun_execute(ns: argparse.Namespace) -> None:
    ns.params = _merge_param_items(ns)
    del ns.param_items


def _finish_runs(ns: argparse.Namespace) -> None:
    if ns.all:
        ns.limit = None


def _finish_cost(ns: argparse.Namespace) -> None:
    words = ns.words
    del ns.words
    ns.instance_type = None
    if not words:
        ns.action = "report"
    elif words[0] == "price" and len(words) == 2:
        ns.action, ns.instance_type = "price", words[1]
    elif words[0] == "price":
        raise P.BadParam("say which instance type: cost price TYPE, e.g. cost price g5.xlarge")
    else:
        raise P.BadParam(f"unknown cost command {words[0]!r}; use cost, or cost price TYPE")


_FINISH = {
    "train": _finish_train,
    "sweep": _finish_sweep,
    "rerun": _finish_rerun_execute,
    "execute": _finish_rerun_execute,
    "runs": _finish_runs,
    "cost": _finish_cost,
}


# ---------------------------------------------------------------- to the Session API

# train fields passed as keyword arguments; every other run option goes in `options`
_TRAIN_KWARGS = (
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
)
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
)
_NOT_OPTIONS = {"command", "params_var", "help"}


def train_options(
    ns: argparse.Namespace, exclude: tuple[str, ...] = _TRAIN_KWARGS
) -> dict[str, Any]:
    """Every run option that is not a keyword argument of its own, by canonical name."""
    return {
        key: value
        for key, value in sorted(vars(ns).items())
        if key not in exclude and key not in _NOT_OPTIONS
    }


def to_call(ns: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The Session method and keyword arguments for a parsed line.

    `train`/`sweep` leave out `code` and `user_ns` (only the magic has them) and
    `--params VAR` (ns.params_var: the caller resolves it and merges it under ns.params).
    """
    c = ns.command
    if c == "train":
        kw = {k: getattr(ns, k) for k in _TRAIN_KWARGS}
        kw["args"], kw["tags"], kw["metrics"] = tuple(ns.args), tuple(ns.tags), tuple(ns.metrics)
        kw["options"] = train_options(ns)
        return "train", kw
    if c == "sweep":
        kw = {k: getattr(ns, k) for k in _SWEEP_KWARGS}
        kw["args"], kw["tags"], kw["metrics"] = tuple(ns.args), tuple(ns.tags), tuple(ns.metrics)
        kw["options"] = train_options(ns, exclude=_SWEEP_KWARGS + _SWEEP_ONLY)
        return "sweep", kw
    if c == "runs":
        return "runs", {
            "experiment": ns.experiment,
            "status": ns.status,
            "limit": ns.limit,
            "project": ns.project,
            "sweep": ns.sweep,
        }
    if c in ("show", "attach"):
        return c, {"ref": ns.ref}
    if c == "logs":
        return "logs", {"ref": ns.ref, "follow": ns.follow, "tail": ns.tail}
    if c == "stop":
        return "stop", {"ref": ns.ref, "force": ns.force}
    if c == "resume":
        return "resume", {"ref": ns.ref, "detach": ns.detach}
    if c == "rerun":
        return "rerun", {"ref": ns.ref, "params": ns.params or None, "detach": ns.detach}
    if c == "compare":
        return "compare", {
            "refs": tuple(ns.refs),
            "experiment": ns.experiment,
            "sweep": ns.sweep,
            "metric": ns.metric,
        }
    if c == "sweeps":
        return "sweeps", {}
    if c == "resources":
        return "resources", {"regions": ns.regions, "all_owners": ns.all_owners}
    if c == "cleanup":
        return "cleanup", {"yes": ns.yes, "all_owners": ns.all_owners}
    if c == "cost":
        return "cost", {
            "action": ns.action,
            "instance_type": ns.instance_type,
            "region": ns.region,
            "spot": ns.spot,
            "offline": ns.offline,
        }
    if c == "execute":
        return "execute", {
            "notebook": ns.notebook,
            "params": ns.params or None,
            "experiment": ns.experiment,
            "name": ns.name,
            "detach": ns.detach,
        }
    if c == "aws":
        return "aws", {"action": ns.action, "region": ns.region}
    raise UsageProblem(f"unknown command {c!r}")


# sweep-only fields that never belong in a trial's run options
_SWEEP_ONLY = ("random",)
