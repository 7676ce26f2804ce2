"""One hyperparameter value from text, and the checks every key and value pass.

A value is never evaluated as code and never passes through a shell: it is an int,
a float, a bool, None, a JSON or Python *literal* (list, dict, quoted string), or
else the exact text the user typed (`x=$(touch /tmp/pwned)` stays that string).
A key becomes a global in the run's code, so it must be an identifier; a value is
stored as JSON, so a dict given from Python (`--params VAR`, the API) is checked too.
"""

from __future__ import annotations

import ast
import json
import keyword
import re
from collections.abc import Mapping
from typing import Any

from ..errors import RunctlError

__all__ = [
    "BadParam",
    "check_key",
    "merge_params",
    "normalize_params",
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
