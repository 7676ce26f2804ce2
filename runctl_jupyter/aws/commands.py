"""What `runctl aws setup|policy|doctor`, `runctl resources` and `runctl cleanup` do.

Thin functions over setup/policy/doctor/resources for the session, the magic and
the shell; each returns text (or rows) and never prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import RunctlError
from . import policy as _policy
from .clients import AWSError, Clients, error_code, owner_from_arn
from .inventory import Failure, Listing, Resource, partial_note
from .policy import RUN_PREFIX, bucket_name
from .resources import annotate, cleanup, list_resources, orphans, table
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


def aws(
    action: str,
    config: Any = None,
    region: str | None = None,
    team: str | None = None,
    admin: bool = False,
) -> AWSReport:
    """`runctl aws setup|policy|doctor`; `policy --team T [--admin]`: a team member's (admin's)."""
    if (team or admin) and action != "policy":
        raise RunctlError(f"--team and --admin go with `aws policy`, not `aws {action}`")
    if admin and not team:
        raise RunctlError("--admin needs --team: say whose admin, e.g. aws policy --team vision --admin")
    if team:
        from .team_policy import check_team

        try:
            check_team(team)
        except ValueError as exc:
            raise RunctlError(str(exc)) from None
    if action == "policy":
        try:
            clients = make_clients(config, region)
            ident = clients.identity()
            account, reg = ident["Account"], clients.region
        except AWSError:  # the policy is useful before credentials exist
            account, reg = "*", region or "*"
        bucket = getattr(config, "bucket", "") or None
        if team:
            from .team_policy import team_policy

            return AWSReport(_policy.render(team_policy(team, account, reg, bucket, admin)))
        ecr = getattr(config, "ecr_repository", "") or ""
        return AWSReport(_policy.render(user_policy(account, reg, bucket, ecr)))
    clients = make_clients(config, region)
    bucket = getattr(config, "bucket", "") or None
    if action == "setup":
        from .setup import setup

        ecr_repository = getattr(config, "ecr_repository", "") or ""
        return AWSReport(setup(clients, bucket, ecr_repository).summary())
    if action == "doctor":
        from .doctor import doctor, report, summary

        checks = doctor(clients, bucket)
        ok = all(c.ok for c in checks)
        return AWSReport(report(checks), ok=ok, problem="" if ok else summary(checks))
    raise AWSError(f"unknown aws action {action!r}: use setup, policy or doctor")


class ResourceList(Listing):
    """`runctl resources`: what was read in every region asked, and what was not."""

    @property
    def resources(self) -> list[Resource]:
        return list(self)

    def rows(self) -> list[dict[str, Any]]:
        return [r.row() for r in self]

    def __str__(self) -> str:
        return "\n".join(
            [table(self), *self.gaps(), *([partial_note(self.failures)] if self.partial else [])]
        )


def _regions(
    config: Any, regions: Iterable[str] | None, all_regions: bool = False
) -> list[str | None]:
    """The regions asked (`--region`, repeated or comma-separated), every region enabled
    for the account (`--all-regions`: ec2 DescribeRegions), else the configured one."""
    if all_regions:
        clients = make_clients(config)
        try:
            answer = clients.ec2.describe_regions()  # enabled (opted-in) regions only
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            raise AWSError(
                f"--all-regions: cannot list the account's regions (ec2 DescribeRegions: "
                f"{error_code(exc) or type(exc).__name__}); name them with --region R instead"
            ) from None
        return sorted(r["RegionName"] for r in answer.get("Regions", []))
    chosen = [r for r in (regions or []) if r]
    return list(dict.fromkeys(chosen)) or [getattr(config, "region", "") or None]


def _bucket(config: Any, account: str, region: str, home: str) -> str:
    """runctl's bucket in `region`: c.AWSBackend.bucket in its own region, else the default name."""
    configured = getattr(config, "bucket", "") or ""
    return configured if configured and region == home else bucket_name(account, region)


def _list_all(
    config: Any, regions: Iterable[str] | None, all_regions: bool
) -> tuple[ResourceList, dict]:
    """Every region's listing (a few regions at a time) and the caller's identity."""
    from concurrent.futures import ThreadPoolExecutor

    home = make_clients(config)
    ident = home.identity()  # no credentials: one clear line, not a botocore traceback
    wanted = _regions(config, regions, all_regions)
    prefix = getattr(config, "prefix", "") or RUN_PREFIX

    def one(region: str | None) -> Listing:
        clients = home if region in (None, home.region) else make_clients(config, region)
        bucket = _bucket(config, ident["Account"], clients.region, home.region)
        return list_resources(clients, bucket=bucket, prefix=prefix)

    out = ResourceList()
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(wanted)))) as pool:
        for listing in pool.map(one, wanted):
            out.add(listing)
    return out, ident


def resources(
    run_status: RunStatus,
    config: Any = None,
    regions: Iterable[str] | None = None,
    all_regions: bool = False,
) -> ResourceList:
    """Every runctl-managed resource in the regions asked, with its run's status; what
    could not be read is in `.failures`."""
    listing, _ = _list_all(config, regions, all_regions)
    annotate(listing, run_status)
    return listing


class CleanupReport(str):
    """What `cleanup` did, as text; `.failures`: what its listing could not read."""

    failures: list[Failure]

    def __new__(cls, text: str, failures: Iterable[Failure] = ()) -> CleanupReport:
        report = super().__new__(cls, text)
        report.failures = list(failures)
        return report


def cleanup_orphans(
    run_status: RunStatus,
    owner: str | None = None,
    all_owners: bool = False,
    yes: bool = False,
    confirm: Callable[[str], bool] | None = None,
    config: Any = None,
    regions: Iterable[str] | None = None,
    all_regions: bool = False,
    partial: bool = False,
) -> CleanupReport:
    """List orphans; delete them with `yes`, or after `confirm(question)` says so; else a
    dry run. On a partial listing nothing is deleted unless `partial` too."""
    listing, ident = _list_all(config, regions, all_regions)
    who = owner or owner_from_arn(ident["Arn"])
    scope = "everyone's" if all_owners else f"{who}'s"
    found = orphans(listing, run_status, who, all_owners)
    lines: list[str] = []
    for region in listing.regions:
        here = [r for r in found if r.region == region]
        if here:
            lines.append(
                f"{region}: {len(here)} orphan(s) of {scope} runs that are over or unknown:"
            )
            lines.append(table(here))
        else:
            lines.append(
                f"{region}: no orphans ({scope} runctl-managed resources are all in use or kept)"
            )
    lines.extend(listing.gaps())
    if not found:
        if listing.partial:
            lines.append(partial_note(listing.failures))
        return CleanupReport("\n".join(lines), listing.failures)
    if listing.partial and not partial:
        lines.append(
            "not deleting: the listing is partial (see above), and deleting on it could leave a "
            "fleet or request to relaunch what goes; fix access and rerun, or "
            "`runctl cleanup --yes --partial` to delete what was listed"
        )
        return CleanupReport("\n".join(lines), listing.failures)
    go = yes or (confirm is not None and confirm(f"delete these {len(found)} resource(s)?"))
    if not go:
        flags = "--yes --partial" if listing.partial else "--yes"
        lines.append(f"dry run: nothing deleted; run `runctl cleanup {flags}` to delete them")
        return CleanupReport("\n".join(lines), listing.failures)
    for region in listing.regions:
        here = [r for r in found if r.region == region]
        if here:
            clients = make_clients(config, region)
            for resource, ok, what in cleanup(clients, here):
                lines.append(
                    f"  {resource.kind} {resource.id}: {what}" + ("" if ok else "  <- see above")
                )
    return CleanupReport("\n".join(lines), listing.failures)
