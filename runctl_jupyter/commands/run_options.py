"""The options of a run, shared by `train` and `sweep` (whose trials are runs):
hyperparameters, tracking, where it runs, cost and limits, data, checkpoints,
distributed; and their checks after parsing."""

from __future__ import annotations

import argparse
import re

from ..params.objectives import parse_early_stop
from ..params.values import BadParam
from .hyperparams import add_params, merge_param_items
from .models import add_register_options, check_register_options
from .value_types import (
    checkpoint_every,
    data_size,
    gpus,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    typed,
)

__all__ = ["add_hyperparameters", "add_run_options", "finish_run"]


class _ExtendSplit(argparse.Action):
    """`--metrics loss,acc --metrics lr` -> ["loss", "acc", "lr"] (deduplicated, in order)."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        for part in re.split(r"[,\s]+", values):
            if part and part not in items:
                items.append(part)
        setattr(namespace, self.dest, items)


def add_hyperparameters(p: argparse.ArgumentParser, *, sweep: bool) -> None:
    """The first group of `train`/`sweep --help`: what the code is given."""
    g = p.add_argument_group("hyperparameters")
    add_params(g, hyper_is_grid=sweep)
    g.add_argument(
        "--params",
        dest="params_var",
        metavar="VAR",
        help="a dict of hyperparameters: a notebook variable (magic) or a JSON file (shell); -p wins",
    )


def add_run_options(p: argparse.ArgumentParser) -> None:
    """The groups after the hyperparameters (and a sweep's search), in the order a
    researcher decides them: naming, where, what it may cost, data, checkpoints, ranks."""
    _add_tracking(p.add_argument_group("tracking"))
    _add_where(p.add_argument_group("where it runs"))
    _add_limits(p.add_argument_group("cost and limits"))
    _add_data(p.add_argument_group("data"))
    _add_checkpoints(p.add_argument_group("checkpoints and interruptions"))
    _add_distributed(p.add_argument_group("distributed"))


def _add_tracking(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--experiment",
        "--experiment-name",
        dest="experiment",
        metavar="NAME",
        help="group runs to compare (compare --experiment NAME)",
    )
    g.add_argument("--name", metavar="NAME", help="run name (RUN can be a name)")
    g.add_argument(
        "--project",
        metavar="P",
        help="tags the run and its cloud resources (runctl cost splits by it)",
    )
    g.add_argument(
        "--tag",
        dest="tags",
        action="append",
        default=None,
        metavar="TAG",
        help="a label (repeatable)",
    )
    g.add_argument(
        "--metrics",
        "--monitor-metrics",
        dest="metrics",
        action=_ExtendSplit,
        metavar="a,b",
        help="metrics to parse from printed lines (loss=0.3, loss: 0.3, JSON lines)",
    )
    add_register_options(g)


def _add_where(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--backend", metavar="NAME", help="local (default) or aws")
    g.add_argument(
        "--fresh",
        action="store_true",
        help="ignore what this notebook used last (%%runctl context)",
    )
    g.add_argument("--detach", action="store_true", help="return at once; the run goes on")
    g.add_argument(
        "--no-vars",
        dest="ship_objects",
        action="store_false",
        help="do not ship notebook objects the cell uses",
    )
    g.add_argument(
        "--ship",
        action="append",
        default=None,
        metavar="NAME",
        help="ship notebook variable NAME even if it looks like a secret (held back otherwise)",
    )
    g.add_argument(
        "--image",
        metavar="IMAGE|Dockerfile",
        help="run the code in this container image, or one built from this Dockerfile",
    )
    g.add_argument("--instance-type", metavar="TYPE", help="e.g. g5.xlarge (AWS)")
    spot = g.add_mutually_exclusive_group()
    spot.add_argument(
        "--spot",
        dest="spot",
        action="store_true",
        default=None,
        help="a spot instance (the default)",
    )
    spot.add_argument(
        "--on-demand", dest="spot", action="store_false", help="an on-demand instance"
    )
    g.add_argument(
        "--fallback",
        action=_ExtendSplit,
        metavar="on-demand|TYPE,...",
        help="other types, then on-demand, when spot capacity lacks",
    )
    g.add_argument("--instance", metavar="ID", help="reuse a running instance (i-...)")
    g.add_argument("--keep", action="store_true", help="leave a new instance running for reuse")
    g.add_argument(
        "--idle-minutes",
        type=positive_float,
        metavar="M",
        help="a kept instance stops itself after M minutes with no run (30)",
    )
    g.add_argument("--region", metavar="REGION", help="launch in this region (c.AWSBackend.region)")
    g.add_argument("--ami", metavar="AMI_ID", help="instead of the Deep Learning AMI")
    g.add_argument(
        "--pip",
        action=_ExtendSplit,
        metavar="auto|none|PKG",
        help="packages to install on the instance (default auto)",
    )
    g.add_argument("--requirements", metavar="FILE", help="a requirements.txt to install")


def _add_limits(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--yes", action="store_true", help="confirm a launch above the cost threshold")
    g.add_argument(
        "--cost-limit",
        type=positive_float,
        metavar="DOLLARS",
        help="stop the run gracefully when it has cost this much",
    )
    g.add_argument(
        "--max-hours", type=positive_float, metavar="H", help="stop the run after H hours"
    )
    g.add_argument(
        "--early-stop",
        "--early-stopping",
        dest="early_stop",
        type=typed(parse_early_stop),
        metavar="METRIC:MODE,patience=N",
        help="e.g. val_loss:min,patience=10[,min_delta=0.001]",
    )
    g.add_argument(
        "--stall-minutes",
        type=positive_float,
        metavar="M",
        help="warn when no step or output for M minutes (30)",
    )
    g.add_argument("--stop-on-stall", action="store_true", help="stop, not only warn, on a stall")


def _add_data(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--data",
        "--data-s3",
        dest="data",
        metavar="S3_URL",
        help="staged to data/ next to the code, onto the data volume when there is one (AWS)",
    )
    g.add_argument(
        "--validate-data",
        action="store_true",
        help="refuse an empty prefix or empty files; check sizes and checksums once staged",
    )
    g.add_argument(
        "--prewarm",
        action="store_true",
        help="read a volume restored from a snapshot once before training (fio or dd)",
    )
    g.add_argument(
        "--volume",
        metavar="VOL_ID|NAME",
        help="attach this EBS volume, or your --persistent one of this name (the instance goes to its AZ)",
    )
    g.add_argument(
        "--data-size",
        type=data_size,
        metavar="GB",
        help="a new encrypted gp3 volume at /data (c.AWSBackend.data_mount), deleted at the end",
    )
    g.add_argument(
        "--persistent",
        action="store_true",
        default=None,
        help="keep the --data-size volume after the run, for --volume NAME",
    )
    g.add_argument(
        "--volume-name",
        metavar="NAME",
        help="the --persistent volume's name (letters, digits, - _ .; default: the experiment)",
    )
    g.add_argument(
        "--sync",
        action="append",
        default=None,
        metavar="DIR",
        help="ship this folder with the code (repeatable)",
    )


def _add_checkpoints(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--checkpoint-every",
        "--checkpoint-interval",
        dest="checkpoint_every",
        type=checkpoint_every,
        metavar="N|Nm",
        help="checkpoint every N steps or N minutes (10m)",
    )
    g.add_argument(
        "--keep-checkpoints", type=positive_int, metavar="K", help="keep the K newest checkpoints"
    )
    g.add_argument(
        "--grace",
        dest="grace_seconds",
        type=nonneg_float,
        metavar="SECONDS",
        help="from a Stop's SIGTERM to SIGKILL (10)",
    )
    g.add_argument(
        "--max-interruptions",
        type=nonneg_int,
        metavar="N",
        help="automatic resumes after spot interruptions in a row (3)",
    )


def _add_distributed(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--gpus",
        "--num-gpus",
        dest="gpus",
        type=gpus,
        metavar="N|all",
        help="one process per GPU under torchrun",
    )
    g.add_argument(
        "--nproc-per-node", type=positive_int, metavar="N", help="processes per machine (torchrun)"
    )
    g.add_argument("--nodes", type=positive_int, metavar="M", help="machines (AWS; one run)")
    g.add_argument(
        "--efa", action="store_true", help="require EFA networking between the nodes (AWS)"
    )


def finish_run(ns: argparse.Namespace) -> None:
    check_register_options(ns)
    ns.params = merge_param_items(ns)
    del ns.param_items
    ns.tags = list(ns.tags or [])
    ns.metrics = list(ns.metrics or [])
    if ns.pip is not None:
        if ns.pip == ["auto"]:
            ns.pip = None
        elif any(p in ("auto", "none") for p in ns.pip) and len(ns.pip) > 1:
            raise BadParam("--pip auto and --pip none cannot be mixed with package names")
        elif ns.pip == ["none"]:
            ns.pip = []
    if ns.instance and ns.instance_type:
        raise BadParam(
            "--instance reuses a running instance of its own type; leave out --instance-type"
        )
    _check_ship(ns)
    _check_volume(ns)
    if ns.params_var is not None and not ns.params_var:
        raise BadParam("--params needs a variable name (a dict of hyperparameters)")


def _check_volume(ns: argparse.Namespace) -> None:
    """`--data-size`, `--persistent`, `--volume-name`, `--volume`: combinations that work."""
    size, volume = getattr(ns, "data_size", None), getattr(ns, "volume", None)
    if size and volume:
        raise BadParam("--data-size creates a volume and --volume attaches one: drop one of them")
    if getattr(ns, "persistent", None) and not (size or volume):
        raise BadParam(
            "--persistent keeps a data volume: add --data-size GB (a new one) or --volume NAME"
        )
    name = getattr(ns, "volume_name", None)
    if name is not None:
        if not getattr(ns, "persistent", None):
            raise BadParam("--volume-name names a --persistent volume: add --persistent")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
            raise BadParam(
                f"--volume-name {name!r}: use letters, digits, - _ . (a letter or digit first)"
            )
    if size and getattr(ns, "instance", None):
        raise BadParam(
            "--data-size launches its volume with a new instance; with --instance use --volume"
        )
    if size and getattr(ns, "keep", None) and not getattr(ns, "persistent", None):
        raise BadParam(
            "a --keep instance outlives its run: add --persistent to keep the --data-size volume"
        )


def _check_ship(ns: argparse.Namespace) -> None:
    ns.ship = list(dict.fromkeys(ns.ship or ()))
    if not ns.ship:
        return
    bad = next((name for name in ns.ship if not name.isidentifier()), None)
    if bad is not None:
        raise BadParam(f"--ship {bad!r}: give the name of a notebook variable, e.g. --ship api_key")
    if not ns.ship_objects:
        raise BadParam("--ship sends notebook variables and --no-vars sends none: drop one of them")
    if getattr(ns, "script", None) or getattr(ns, "target", None):
        raise BadParam(
            "--ship sends a notebook variable to a cell's run; a SCRIPT (and the shell) "
            "has none to send: drop --ship"
        )
