"""Typed hyperparameters from words: `-p lr=1e-3`, `--hyperparams a=1,b=[2,3]`, grids, spaces.

A value is never evaluated as code and never passes through a shell: it is an int,
a float, a bool, None, a JSON or Python *literal* (list, dict, quoted string), or
else the exact text the user typed (`x=$(touch /tmp/pwned)` stays that string).
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import RunctlError

__all__ = [
    "BadParam",
    "check_key",
    "merge_params",
    "normalize_params",
    "parse_assignment",
    "parse_assignments",
    "parse_early_stop",
    "parse_grid",
    "parse_grid_hyperparams",
    "parse_hyperparams",
    "parse_objective",
    "parse_space",
    "parse_value",
    "split_top_level",
]


class BadParam(RunctlError):
    """A hyperparameter, grid or search-space value that cannot be used."""


_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_TRUE = {"true", "True"}
_FALSE = {"false", "False"}
_NONE = {"none", "None", "null"}
# names injected into a run's globals by runctl itself
_RESERVED = {"runctl"}


def parse_value(text: str) -> Any:
    """Type one value: int, float, bool, None, a JSON/Python literal list or dict, else the text.

    >>> parse_value("1e-3"), parse_value("[64,32]"), parse_value("abc")
    (0.001, [64, 32], 'abc')
    """
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text in _NONE:
        return None
    if text[:1] in "[{(\"'" and text:
        return _parse_literal(text)
    return text


def _parse_literal(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise BadParam(
                f"{text!r} looks like a list, dict or quoted string but is not valid "
                "JSON or a Python literal; fix it, or to pass it as plain text write it "
                f"as a JSON string: '\"{text}\"'"
            ) from None
    return _jsonable(value, where=text)


def _jsonable(value: Any, where: str) -> Any:
    """Tuples become lists, numpy scalars Python numbers; anything else non-JSON is an error."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, (bool, int, float)) or k is None:
                    k = json.dumps(k)  # what json.dumps would make of it anyway
                else:
                    raise BadParam(f"{where}: dict key {k!r} is not a string; use string keys")
            out[k] = _jsonable(v, where)
        return out
    # numpy scalars (and 0-d arrays) without importing numpy
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        return _jsonable(value.item(), where)
    if hasattr(value, "tolist") and hasattr(value, "shape"):
        raise BadParam(
            f"{where} is an array of shape {tuple(value.shape)}; hyperparameters must be "
            "numbers, strings, bools, None, lists or dicts; pass data as a notebook variable "
            "instead (it is shipped with the cell)"
        )
    raise BadParam(
        f"{where} is a {type(value).__name__}; hyperparameters must be numbers, strings, "
        "bools, None, lists or dicts (JSON values)"
    )


def check_key(key: str, option: str = "-p") -> str:
    """A parameter key must be a Python identifier: it becomes a global in the cell."""
    if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key):
        raise BadParam(
            f"bad {option} key {key!r}: keys become Python variables, so use a name like "
            "lr or batch_size"
        )
    if key in _RESERVED:
        raise BadParam(f"bad {option} key {key!r}: the name is taken by runctl itself; rename it")
    return key


def parse_assignment(item: str, option: str = "-p") -> tuple[str, Any]:
    """`"lr=1e-3"` -> `("lr", 0.001)`."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise BadParam(f"bad {option} {item!r}: expected KEY=VALUE, e.g. {option} lr=0.01")
    check_key(key, option)
    try:
        return key, parse_value(text)
    except BadParam as exc:
        raise BadParam(f"bad {option} {key}: {exc}") from None


def parse_assignments(items: Iterable[str] | None, option: str = "-p") -> dict[str, Any]:
    """`["lr=1e-3", "hidden=[64,32]"]` -> `{"lr": 0.001, "hidden": [64, 32]}`; later wins."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, value = parse_assignment(item, option)
        out.pop(key, None)
        out[key] = value
    return out


def split_top_level(text: str, seps: str = ",") -> list[str]:
    """Split on any char of `seps` that is not inside brackets or quotes."""
    parts: list[str] = []
    buf: list[str] = []
    depth = 0
    quote = ""
    escaped = False
    for ch in text:
        if quote:
            buf.append(ch)
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        elif ch in seps and depth == 0:
            parts.append("".join(buf))
            buf = []
            continue
        buf.append(ch)
    if quote:
        raise BadParam(f"unbalanced {quote} in {text!r}; close the quote")
    parts.append("".join(buf))
    return parts


def parse_hyperparams(text: str, option: str = "--hyperparams") -> dict[str, Any]:
    """The original runctl's `--hyperparams epochs=50,lr=0.001,hidden=[64,32]`.

    Commas inside brackets or quotes do not split.
    """
    items = [p.strip() for p in split_top_level(text, ",")]
    items = [p for p in items if p]
    if not items:
        raise BadParam(f"{option} is empty; write {option} epochs=50,lr=0.001")
    return parse_assignments(items, option)


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


def parse_space(items: Iterable[str] | None, option: str = "--space") -> dict[str, dict]:
    """`["lr=loguniform(1e-4,1e-1)", "layers=choice(2,3,4)"]` ->
    `{"lr": {"dist": "loguniform", "args": [0.0001, 0.1]}, "layers": {"dist": "choice", ...}}`.
    """
    out: dict[str, dict] = {}
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


def parse_objective(text: str, option: str = "--objective") -> dict[str, str]:
    """`"val_acc:max"` -> `{"metric": "val_acc", "mode": "max"}`."""
    metric, sep, mode = text.partition(":")
    metric, mode = metric.strip(), mode.strip().lower()
    if not metric or not sep or mode not in ("max", "min"):
        raise BadParam(
            f"bad {option} {text!r}: expected METRIC:max or METRIC:min, e.g. {option} val_acc:max"
        )
    return {"metric": metric, "mode": mode}


_EARLY_KEYS = {"patience": int, "min_delta": float, "warmup": int}


def parse_early_stop(text: str, option: str = "--early-stop") -> dict[str, Any]:
    """`"val_loss:min,patience=10,min_delta=0.001"` or the original `"patience=10"` ->
    `{"metric": "val_loss"|None, "mode": "min"|None, "patience": 10, "min_delta": 0.0, "warmup": 0}`.

    With no METRIC:MODE the run's `--objective` metric is used, else the first `--metrics` one.
    """
    out: dict[str, Any] = {
        "metric": None,
        "mode": None,
        "patience": 10,
        "min_delta": 0.0,
        "warmup": 0,
    }
    example = f"e.g. {option} val_loss:min,patience=10"
    for i, part in enumerate(p.strip() for p in text.split(",")):
        if not part:
            continue
        if "=" not in part:
            if i != 0:
                raise BadParam(f"bad {option} {text!r}: METRIC:MODE must come first, {example}")
            obj = parse_objective(part, option)
            out["metric"], out["mode"] = obj["metric"], obj["mode"]
            continue
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in _EARLY_KEYS:
            raise BadParam(
                f"bad {option} {text!r}: unknown setting {key!r}; known: "
                f"{', '.join(_EARLY_KEYS)}, {example}"
            )
        try:
            num = _EARLY_KEYS[key](value.strip())
        except ValueError:
            raise BadParam(f"bad {option} {key}={value}: expected a number, {example}") from None
        if num < 0 or (key == "patience" and num < 1):
            raise BadParam(f"bad {option} {key}={value}: must be positive, {example}")
        out[key] = num
    return out


def normalize_params(params: Mapping[str, Any], source: str = "params") -> dict[str, Any]:
    """Check keys (identifiers) and make values JSON (numpy scalars -> Python numbers)."""
    if not isinstance(params, Mapping):
        raise BadParam(f"{source} must be a dict of hyperparameters, not {type(params).__name__}")
    out: dict[str, Any] = {}
    for key, value in params.items():
        check_key(key, option=source)
        out[key] = _jsonable(value, where=f"{source}[{key!r}]")
    return out


def merge_params(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge dicts of hyperparameters, later ones winning: `merge_params(var_dict, p_dict)`."""
    out: dict[str, Any] = {}
    for i, src in enumerate(sources):
        if src is None:
            continue
        for key, value in normalize_params(src, source="params" if i == 0 else "-p").items():
            out.pop(key, None)
            out[key] = value
    return out
