"""`--register-if "val_acc >= 0.95 and loss < 0.1"`: comparisons of final metrics with
numbers, joined by and/or. Parsed with Python's own parser into a tree that is walked
here; nothing is ever evaluated as Python."""

from __future__ import annotations

import ast
import operator
from typing import Any

from .values import BadParam

_OPS = {
    ast.GtE: operator.ge,
    ast.Gt: operator.gt,
    ast.LtE: operator.le,
    ast.Lt: operator.lt,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_HELP = 'e.g. --register-if "val_acc >= 0.95" (metric OP number, joined by and/or)'


def parse_condition(text: str) -> ast.expr:
    """The checked tree of a condition; BadParam (one line) for anything else."""
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise BadParam(f"--register-if {text!r} is not a comparison; {_HELP}") from None
    _check(tree, text)
    return tree


def _number(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    )


def _check(node: ast.expr, text: str) -> None:
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check(value, text)
        return
    if isinstance(node, ast.Compare) and all(type(op) in _OPS for op in node.ops):
        terms = [node.left, *node.comparators]
        if all(isinstance(t, ast.Name) or _number(t) for t in terms) and any(
            isinstance(t, ast.Name) for t in terms
        ):
            return
    raise BadParam(f"--register-if {text!r}: {ast.unparse(node)!r} is not allowed; {_HELP}")


def metric_names(tree: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def holds(tree: ast.expr, metrics: dict[str, Any]) -> tuple[bool, str]:
    """(whether the condition holds on these metrics, why: the part that decided)."""
    if isinstance(tree, ast.BoolOp):
        results = [holds(v, metrics) for v in tree.values]
        want_all = isinstance(tree.op, ast.And)
        for ok, why in results:
            if ok != want_all:
                return ok, why
        return want_all, " and ".join(why for _, why in results)
    assert isinstance(tree, ast.Compare)
    values = [_value(t, metrics) for t in (tree.left, *tree.comparators)]
    terms = [v for v in values if v is not None]
    shown = ast.unparse(tree)
    if len(terms) < len(values):
        missing = ", ".join(sorted(n for n in metric_names(tree) if metrics.get(n) is None))
        return False, f"{shown}: the run logged no {missing}"
    for op, a, b in zip(tree.ops, terms, terms[1:]):
        if not _OPS[type(op)](a, b):
            seen = ", ".join(f"{n}={metrics[n]:g}" for n in sorted(metric_names(tree)))
            return False, f"{shown} is false ({seen})"
    return True, shown


def _value(node: ast.expr, metrics: dict[str, Any]) -> float | None:
    if isinstance(node, ast.Name):
        value = metrics.get(node.id)
        return float(value) if isinstance(value, (int, float)) else None
    return float(ast.literal_eval(node))
