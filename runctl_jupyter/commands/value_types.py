"""argparse types for option values: bounded numbers, GPU counts, checkpoint
intervals, and params/'s parsers. A bad value raises ArgumentTypeError, which
argparse turns into a one-line usage error naming the option."""

from __future__ import annotations

import argparse
import re
from typing import Any

from ..params.values import BadParam

__all__ = [
    "checkpoint_every",
    "data_size",
    "gpus",
    "int_at_least",
    "nonneg_float",
    "nonneg_int",
    "positive_float",
    "positive_int",
    "region_list",
    "typed",
]


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def int_at_least(low: int):
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


positive_int = int_at_least(1)
nonneg_int = int_at_least(0)


def gpus(text: str) -> int | str:
    if text == "all":
        return "all"
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a number of GPUs or 'all', got {text!r}"
        ) from None


_EVERY = re.compile(r"(\d+(?:\.\d+)?)\s*(steps?|m|mins?|minutes?)?")


def checkpoint_every(text: str) -> dict[str, Any]:
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


_REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d{1,2}")


def region_list(text: str) -> list[str]:
    """`--region us-east-1` or `--region us-east-1,eu-west-1`: AWS region names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected a region name such as us-east-1")
    for name in names:
        if not _REGION.fullmatch(name):
            raise argparse.ArgumentTypeError(
                f"{name!r} is not an AWS region name (such as us-east-1 or eu-west-1)"
            )
    return names


def typed(parse_fn):
    """Wrap a params/ parser as an argparse type (its BadParam becomes a usage error)."""

    def convert(text: str) -> Any:
        try:
            return parse_fn(text)
        except BadParam as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse_fn.__name__
    return convert


GP3_MAX_GIB = 16384  # a gp3 volume: 1 GiB to 16 TiB (Amazon EBS volume types)


def data_size(text: str) -> int:
    """`--data-size GB`: a whole number of GiB that a gp3 volume can have."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole GiB, got {text!r}") from None
    if not 1 <= value <= GP3_MAX_GIB:
        raise argparse.ArgumentTypeError(f"a gp3 volume has 1 to {GP3_MAX_GIB} GiB, got {text!r}")
    return value
