"""What a sweep searches over: a grid (`--grid lr=0.001,0.01`, the original runctl's
`--hyperparams "lr:0.001,0.01 batch_size:32,64"`) or a space of distributions
(`--space lr=loguniform(1e-4,1e-1)`), checked here so a bad one fails before launch."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any

from .values import BadParam, check_key, parse_value, split_top_level

__all__ = ["parse_grid", "parse_grid_hyperparams", "parse_space"]


def _grid_values(key: str, text: str, option: str) -> list[Any]:
    parts = [p.strip() for p in split_top_level(text, ",")]
    if not any(parts):
        raise BadParam(f"{option} {key} has no values; write e.g. {option} {key}=0.001,0.01")
    if "" in parts:
        raise BadParam(f"{option} {key}={text}: an empty value between commas; remove it")
    try:
        return [parse_value(p) for p in parts]
    except BadParam as exc:
        raise BadParam(f"bad {option} {key}: {exc}") from None


def parse_grid(items: Iterable[str] | None, option: str = "--grid") -> dict[str, list[Any]]:
    """`["lr=0.001,0.01", "batch_size=32,64"]` -> `{"lr": [0.001, 0.01], "batch_size": [32, 64]}`."""
    out: dict[str, list[Any]] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadParam(
                f"bad {option} {item!r}: expected KEY=V1,V2,..., e.g. {option} lr=0.001,0.01"
            )
        check_key(key, option)
        if key in out:
            raise BadParam(f"{option} {key} is given twice; put all its values in one {option}")
        out[key] = _grid_values(key, text, option)
    return out


def parse_grid_hyperparams(text: str, option: str = "--hyperparams") -> dict[str, list[Any]]:
    """The original runctl's sweep spelling: `"lr:0.001,0.01 batch_size:32,64"` -> a grid."""
    out: dict[str, list[Any]] = {}
    words = [w for w in split_top_level(text, " \t\n") if w]
    if not words:
        raise BadParam(f"{option} is empty; write {option} 'lr:0.001,0.01 batch_size:32,64'")
    for word in words:
        key, sep, values = word.partition(":")
        if not sep:
            key, sep, values = word.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadParam(
                f"bad {option} {word!r}: expected KEY:V1,V2 items separated by spaces, "
                f"e.g. {option} 'lr:0.001,0.01 batch_size:32,64'"
            )
        check_key(key, option)
        if key in out:
            raise BadParam(f"{option} {key} is given twice; put all its values in one item")
        if any("=" in v for v in split_top_level(values, ",")):
            raise BadParam(
                f"{option} {word!r}: in a sweep {option} is a grid, KEY:V1,V2 items separated "
                "by spaces; give fixed values with -p KEY=VALUE"
            )
        out[key] = _grid_values(key, values, option)
    return out


# --space KEY=dist(args): distributions a sweep can sample from
_DISTS = {
    "uniform": "uniform(low,high)",
    "loguniform": "loguniform(low,high) with 0 < low",
    "randint": "randint(low,high), integers low..high inclusive",
    "quniform": "quniform(low,high,q)",
    "normal": "normal(mean,sigma)",
    "choice": "choice(a,b,...)",
}
_DIST_ALIASES = {"log_uniform": "loguniform", "int": "randint", "intuniform": "randint"}
_SPACE = re.compile(r"\s*([A-Za-z_]\w*)\s*\((.*)\)\s*", re.S)


def _space_error(key: str, text: str, why: str) -> BadParam:
    known = ", ".join(_DISTS.values())
    return BadParam(f"bad --space {key}={text}: {why}; use one of {known}")


def parse_space(items: Iterable[str] | None, option: str = "--space") -> dict[str, dict[str, Any]]:
    """`["lr=loguniform(1e-4,1e-1)", "layers=choice(2,3,4)"]` ->
    `{"lr": {"dist": "loguniform", "args": [0.0001, 0.1]}, "layers": {"dist": "choice", ...}}`.
    """
    out: dict[str, dict[str, Any]] = {}
    for item in items or ():
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadParam(
                f"bad {option} {item!r}: expected KEY=DIST(ARGS), e.g. {option} lr=loguniform(1e-4,1e-1)"
            )
        check_key(key, option)
        if key in out:
            raise BadParam(f"{option} {key} is given twice; give each key one distribution")
        m = _SPACE.fullmatch(text)
        if not m:
            raise _space_error(key, text, "expected DIST(ARGS)")
        dist = _DIST_ALIASES.get(m.group(1), m.group(1))
        if dist not in _DISTS:
            raise _space_error(key, text, f"unknown distribution {m.group(1)!r}")
        parts = [p.strip() for p in split_top_level(m.group(2), ",")]
        if parts == [""] or "" in parts:
            raise _space_error(key, text, "missing arguments")
        try:
            args = [parse_value(p) for p in parts]
        except BadParam as exc:
            raise _space_error(key, text, str(exc)) from None
        _check_dist(key, text, dist, args)
        out[key] = {"dist": dist, "args": args}
    return out


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_dist(key: str, text: str, dist: str, args: list[Any]) -> None:
    if dist == "choice":
        return
    want = 3 if dist == "quniform" else 2
    if len(args) != want or not all(_is_num(a) for a in args):
        raise _space_error(key, text, f"{dist} takes {want} numbers")
    if dist == "normal":
        if args[1] <= 0:
            raise _space_error(key, text, "sigma must be > 0")
        return
    low, high = args[0], args[1]
    if not low < high:
        raise _space_error(key, text, "low must be less than high")
    if dist == "loguniform" and low <= 0:
        raise _space_error(key, text, "loguniform needs 0 < low")
    if dist == "randint" and not (isinstance(low, int) and isinstance(high, int)):
        raise _space_error(key, text, "randint takes two integers")
    if dist == "quniform" and args[2] <= 0:
        raise _space_error(key, text, "q must be > 0")
