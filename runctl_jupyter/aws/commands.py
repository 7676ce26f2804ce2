"""What `runctl aws setup|policy|doctor`, `runctl resources` and `runctl cleanup` do.

Thin functions over setup/policy/doctor/resources for the session, the magic and
the shell; each returns text (or rows) and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import policy as _policy
from .clients import AWSError, Clients, owner_from_arn
from .resources import Resource, annotate, cleanup, list_resources, orphans, table
from .user_policy import user_policy

RunStatus = Callable[[str], "str | None"]


def make_clients(config: Any = None, region: str | None = None) -> Clients:
    """Clients from c.AWSBackend settings (`config` is an AWSBackend or None)."""
    return Clients(
        region=region or (getattr(config, "region", "") or None),
        profile=getattr(config, "profile", "") or None,
    )


@dataclass
class AWSReport:
    text: str
    ok: bool = True
    problem: str = ""  # not ok: one line saying what to fix

    def __str__(self) -> str:
        return self.text


def aws(action: str, config: Any = None, region: str | None = None) -> AWSReport:
    """`runctl aws setup|policy|doctor`."""
    if action == "policy":
        try:
            clients = make_clients(config, region)
            ident = clients.identity()
            account, reg = ident["Account"], clients.region
        except AWSError:  # the policy is useful before credentials exist
            account, reg = "*", region or "*"
        bucket = getattr(config, "bucket", "") or None
        return AWSReport(_policy.render(user_policy(account, reg, bucket)))
    clients = make_clients(config, region)
    bucket = getattr(config, "bucket", "") or None
    if action == "setup":
        from .setup import setup

        return AWSReport(setup(clients, bucket).summary())
    if action == "doctor":
        from .doctor import doctor, report, summary

        checks = doctor(clients, bucket)
        ok = all(c.ok for c in checks)
        return AWSReport(report(checks), ok=ok, problem="" if ok else summary(checks))
    raise AWSError(f"unknown aws action {action!r}: use setup, policy or doctor")


@dataclass
class ResourceList:
    resources: list[Resource] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self.resources]

    def __str__(self) -> str:
        return table(self.resources)


def _regions(config: Any, regions: Iterable[str] | None) -> list[str | None]:
    chosen = [r for r in (regions or []) if r]
    return list(chosen) or [getattr(config, "region", "") or None]


def resources(
    run_status: RunStatus, config: Any = None, regions: Iterable[str] | None = None
) -> ResourceList:
    """Every runctl-managed resource in the configured regions, with its run's status."""
    out = ResourceList()
    for region in _regions(config, regions):
        clients = make_clients(config, region)
        clients.identity()  # no credentials: one clear line, not a botocore traceback
        found = list_resources(clients)
        annotate(found, run_status)
        out.resources.extend(found)
        out.regions.append(clients.region)
    return out


def cleanup_orphans(
    run_status: RunStatus,
    owner: str | None = None,
    all_owners: bool = False,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    config: Any = None,
    regions: Iterable[str] | None = None,
) -> str:
    """List orphans; delete them with `yes`, or after `confirm(question)` says so; else a dry run."""
    lines: list[str] = []
    for region in _regions(config, regions):
        clients = make_clients(config, region)
        who = owner or owner_from_arn(clients.identity()["Arn"])
        found = orphans(list_resources(clients), run_status, who, all_owners)
        scope = "everyone's" if all_owners else f"{who}'s"
        if not found:
            lines.append(
                f"{clients.region}: no orphans ({scope} runctl-managed resources are all in use or kept)"
            )
            continue
        lines.append(
            f"{clients.region}: {len(found)} orphan(s) of {scope} runs that are over or unknown:"
        )
        lines.append(table(found))
        go = yes or (
            confirm is not None
            and confirm(f"delete these {len(found)} resource(s) in {clients.region}?")
        )
        if not go:
            lines.append("dry run: nothing deleted; run `runctl cleanup --yes` to delete them")
            continue
        for resource, ok, what in cleanup(clients, found):
            lines.append(
                f"  {resource.kind} {resource.id}: {what}" + ("" if ok else "  <- see above")
            )
    return "\n".join(lines)
