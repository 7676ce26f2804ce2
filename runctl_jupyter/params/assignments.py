"""`KEY=VALUE` words for one run: `-p lr=1e-3` and the original runctl's
`--hyperparams epochs=50,lr=0.001`; later assignments win."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .values import BadParam, check_key, parse_value, split_top_level

__all__ = ["parse_assignment", "parse_assignments", "parse_hyperparams"]


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


def parse_hyperparams(text: str, option: str = "--hyperparams") -> dict[str, Any]:
    """The original runctl's `--hyperparams epochs=50,lr=0.001,hidden=[64,32]`.

    Commas inside brackets or quotes do not split.
    """
    items = [p.strip() for p in split_top_level(text, ",")]
    items = [p for p in items if p]
    if not items:
        raise BadParam(f"{option} is empty; write {option} epochs=50,lr=0.001")
    return parse_assignments(items, option)
