"""A small IAM policy evaluator: AWS's documented logic, for the parts runctl's policies use.

moto evaluates no IAM in server mode, so the strict layer (strict_aws.py) asks this module
whether a principal's policies allow a request, with the request context built from moto's
real state (the resources' tags, the role's tags). Each rule cites the page stating it.

- Evaluation: an explicit Deny wins; else an Allow of a matching statement; else the
  implicit deny. https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
- Action: case-insensitive, `*` and `?` wildcards; NotAction matches every other action.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_action.html
- Resource: `*` and `?` wildcards (case-sensitive), policy variables allowed.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_resource.html
- Condition: every operator of a statement must match (AND), any value of a key's list
  (OR); a key missing from the request context makes the operator false, except with
  `...IfExists`. Keys are case-insensitive, values case-sensitive.
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-logic-multiple-context-keys-or-values.html
- Policy variables `${key}`: replaced by the request context's value; an unresolved one
  makes its element not match (no default here).
  https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class Unresolved(Exception):
    """A policy variable whose key is not in the request context."""


@dataclass
class Context:
    """One authorization: the action, one resource ARN, and the condition keys
    (lower-cased names: `aws:resourcetag/runctl:managed`, `aws:principaltag/...`)."""

    action: str
    resource: str
    keys: dict[str, str | list[str]] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        found = self.keys.get(key.lower())
        if found is None:
            return None
        return list(found) if isinstance(found, list) else [found]


def _listed(value: object) -> list:
    return value if isinstance(value, list) else [value]


def _resolve(text: str, ctx: Context) -> str:
    """Policy variables, then the three special characters `${*}`, `${?}`, `${$}`."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name in ("*", "?", "$"):
            return "\0" + name  # a literal, not a wildcard (kept apart from globbing)
        values = ctx.value(name)
        if not values:
            raise Unresolved(name)
        return values[0]

    return _VARIABLE.sub(one, text)


def _glob(pattern: str, text: str, case: bool = True) -> bool:
    """`*` any run of characters, `?` one; `\\0X` a literal X."""
    parts = re.split(r"(\0.|\*|\?)", pattern)
    rx = "".join(
        ".*" if p == "*" else "." if p == "?" else re.escape(p[1:] if p.startswith("\0") else p)
        for p in parts
    )
    return re.fullmatch(rx, text, 0 if case else re.IGNORECASE) is not None


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(fnmatch.fnmatchcase(action.lower(), p.lower()) for p in patterns)


def _resource_matches(patterns: Iterable[str], ctx: Context) -> bool:
    for pattern in patterns:
        try:
            if _glob(_resolve(pattern, ctx), ctx.resource):
                return True
        except Unresolved:
            continue
    return False


def _compare(base: str, wanted: str, actual: str, ctx: Context) -> bool:
    try:
        wanted = _resolve(wanted, ctx)
    except Unresolved:
        return False
    if base == "StringEquals":
        return actual == wanted.replace("\0", "")
    if base == "StringEqualsIgnoreCase":
        return actual.lower() == wanted.replace("\0", "").lower()
    if base in ("StringLike", "ArnLike", "ArnEquals"):
        return _glob(wanted, actual)
    if base == "Bool":
        return actual.lower() == wanted.lower()
    raise NotImplementedError(f"condition operator {base}")


def _operator_matches(operator: str, block: dict, ctx: Context) -> bool:
    if_exists = operator.endswith("IfExists")
    op = operator[: -len("IfExists")] if if_exists else operator
    quantifier, _, op = op.rpartition(":")
    negated = op.startswith(("StringNot", "ArnNot"))
    base = op.replace("Not", "", 1) if negated else op
    for key, wanted in block.items():
        actual = ctx.value(key)
        if actual is None:
            # a missing key: false, but true for IfExists, negated operators and ForAllValues
            if if_exists or negated or quantifier == "ForAllValues":
                continue
            return False
        wanted_list = [str(w) for w in _listed(wanted)]
        hits = [any(_compare(base, w, v, ctx) for w in wanted_list) for v in actual]
        # ForAllValues: every value of the request's key; else (ForAnyValue, single keys) any
        found = all(hits) if quantifier == "ForAllValues" else any(hits)
        if found == negated:
            return False
    return True


def statement_matches(statement: dict, ctx: Context) -> bool:
    if "Action" in statement:
        if not _action_matches(_listed(statement["Action"]), ctx.action):
            return False
    elif _action_matches(_listed(statement.get("NotAction", [])), ctx.action):
        return False
    if "Resource" in statement:
        if not _resource_matches(_listed(statement["Resource"]), ctx):
            return False
    elif _resource_matches(_listed(statement.get("NotResource", [])), ctx):
        return False
    return all(
        _operator_matches(op, block, ctx)
        for op, block in (statement.get("Condition") or {}).items()
    )


def decide(policies: Iterable[dict], ctx: Context) -> str:
    """ "Deny" (explicit), "Allow", or "ImplicitDeny" for one resource of a request."""
    allowed = False
    for policy in policies:
        for statement in _listed(policy.get("Statement", [])):
            if statement_matches(statement, ctx):
                if statement.get("Effect") == "Deny":
                    return "Deny"
                allowed = True
    return "Allow" if allowed else "ImplicitDeny"


def allowed(policies: Iterable[dict], contexts: Iterable[Context]) -> Context | None:
    """The first resource of a request the policies do not allow; None when all are.

    A request naming several resources is allowed only when each one is:
    https://docs.aws.amazon.com/service-authorization/latest/reference/reference_policies_actions-resources-contextkeys.html
    """
    policies = list(policies)
    for ctx in contexts:
        if decide(policies, ctx) != "Allow":
            return ctx
    return None
