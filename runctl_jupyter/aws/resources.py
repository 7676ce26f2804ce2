"""Every runctl-managed resource, which of them are orphans, and cleaning those up.

Only resources tagged `runctl:managed=true` are ever listed or touched. An orphan
is one of this owner's (or anyone's with `all_owners`) whose run is over or
unknown and that is not kept on purpose (`runctl:keep`, `runctl:persistent`,
`runctl:protected`, `runctl:role=setup`). A kept instance's persistent spot request
is kept with it, but not once that instance is gone: it would launch another, so it is
an orphan then (`stranded`).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import tags
from .clients import Clients, error_code

ACTIVE_RUN = frozenset({"queued", "provisioning", "starting", "running", "interrupted", "resuming"})
KINDS = (
    "instance",
    "volume",
    "security-group",
    "spot-request",
    "fleet",
    "launch-template",
    "placement-group",
)
_MANAGED_FILTER = [{"Name": f"tag:{tags.MANAGED}", "Values": ["true"]}]


@dataclass
class Resource:
    kind: str
    id: str
    region: str
    state: str
    created: _dt.datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    detail: str = ""  # instance type, volume size, ...
    run_status: str | None = None
    stranded: bool = False  # a kept spot request whose instance is gone

    @property
    def owner(self) -> str:
        return self.tags.get(tags.OWNER, "")

    @property
    def run_id(self) -> str:
        return self.tags.get(tags.RUN_ID, "")

    @property
    def kept(self) -> bool:
        return tags.is_kept(self.tags) and not self.stranded

    def age_hours(self, now: _dt.datetime | None = None) -> float | None:
        if self.created is None:
            return None
        now = now or _dt.datetime.now(_dt.timezone.utc)
        created = (
            self.created if self.created.tzinfo else self.created.replace(tzinfo=_dt.timezone.utc)
        )
        return max(0.0, (now - created).total_seconds() / 3600)

    def row(self) -> dict[str, Any]:
        age = self.age_hours()
        return {
            "kind": self.kind,
            "id": self.id,
            "region": self.region,
            "state": self.state,
            "detail": self.detail,
            "age_h": None if age is None else round(age, 2),
            "owner": self.owner,
            "run": self.run_id,
            "run_status": self.run_status,
            "kept": self.kept,
        }


def _pages(client: Any, op: str, key: str, **kwargs: Any) -> Iterable[dict]:
    if client.can_paginate(op):
        for page in client.get_paginator(op).paginate(**kwargs):
            yield from page.get(key, [])
    else:
        yield from getattr(client, op)(**kwargs).get(key, [])


def list_resources(clients: Clients) -> list[Resource]:
    """Managed resources in the clients' region (instances that are not terminated, ...)."""
    ec2 = clients.ec2
    region = clients.region
    out: list[Resource] = []
    for kind in (
        _instances,
        _volumes,
        _security_groups,
        _spot_requests,
        _fleets,
        _launch_templates,
        _placement_groups,
    ):
        out.extend(kind(ec2, region))
    live = {r.id for r in out if r.kind == "instance"}
    for r in out:  # a persistent request outlives a terminated instance, and replaces it
        r.stranded = r.kind == "spot-request" and r.detail not in live
    return out


def _instances(ec2: Any, region: str) -> list[Resource]:
    out = []
    for res in _pages(ec2, "describe_instances", "Reservations", Filters=_MANAGED_FILTER):
        for inst in res["Instances"]:
            state = inst["State"]["Name"]
            if state == "terminated":
                continue
            kind = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
            out.append(
                Resource(
                    "instance",
                    inst["InstanceId"],
                    region,
                    state,
                    inst.get("LaunchTime"),
                    tags.tag_dict(inst.get("Tags")),
                    f"{inst['InstanceType']} {kind} {inst.get('Placement', {}).get('AvailabilityZone', '')}",
                )
            )
    return out


def _volumes(ec2: Any, region: str) -> list[Resource]:
    return [
        Resource(
            "volume",
            vol["VolumeId"],
            region,
            vol["State"],
            vol.get("CreateTime"),
            tags.tag_dict(vol.get("Tags")),
            f"{vol['Size']} GiB {vol.get('VolumeType', '')} {vol['AvailabilityZone']}",
        )
        for vol in _pages(ec2, "describe_volumes", "Volumes", Filters=_MANAGED_FILTER)
    ]


def _security_groups(ec2: Any, region: str) -> list[Resource]:
    return [
        Resource(
            "security-group",
            sg["GroupId"],
            region,
            "available",
            None,
            tags.tag_dict(sg.get("Tags")),
            sg["GroupName"],
        )
        for sg in _pages(ec2, "describe_security_groups", "SecurityGroups", Filters=_MANAGED_FILTER)
    ]


def _spot_requests(ec2: Any, region: str) -> list[Resource]:
    """Open, active or disabled (a kept instance stopped) requests: a closed or cancelled
    one holds nothing."""
    states = ["open", "active", "disabled"]
    spot_filters = [*_MANAGED_FILTER, {"Name": "state", "Values": states}]
    return [
        Resource(
            "spot-request",
            req["SpotInstanceRequestId"],
            region,
            req["State"],
            req.get("CreateTime"),
            tags.tag_dict(req.get("Tags")),
            req.get("InstanceId", ""),
        )
        for req in _pages(
            ec2, "describe_spot_instance_requests", "SpotInstanceRequests", Filters=spot_filters
        )
    ]


def _fleets(ec2: Any, region: str) -> list[Resource]:
    """Fleets not deleted (DescribeFleets has no tag filter: filtered here)."""
    try:
        fleets = list(_pages(ec2, "describe_fleets", "Fleets"))
    except Exception as exc:  # noqa: BLE001 - older accounts/emulators without fleets
        if error_code(exc) not in ("InvalidAction", "UnsupportedOperation", "NotImplemented"):
            raise
        fleets = []
    out = []
    for fleet in fleets:
        ftags = tags.tag_dict(fleet.get("Tags"))
        if ftags.get(tags.MANAGED) != "true" or fleet.get("FleetState", "").startswith("deleted"):
            continue
        out.append(
            Resource(
                "fleet",
                fleet["FleetId"],
                region,
                fleet.get("FleetState", ""),
                fleet.get("CreateTime"),
                ftags,
            )
        )
    return out


def _launch_templates(ec2: Any, region: str) -> list[Resource]:
    return [
        Resource(
            "launch-template",
            lt["LaunchTemplateId"],
            region,
            "available",
            lt.get("CreateTime"),
            tags.tag_dict(lt.get("Tags")),
            lt.get("LaunchTemplateName", ""),
        )
        for lt in _pages(
            ec2, "describe_launch_templates", "LaunchTemplates", Filters=_MANAGED_FILTER
        )
    ]


def _placement_groups(ec2: Any, region: str) -> list[Resource]:
    out = []
    for pg in ec2.describe_placement_groups().get("PlacementGroups", []):  # few; filtered here
        if tags.tag_dict(pg.get("Tags")).get(tags.MANAGED) != "true":
            continue
        out.append(
            Resource(
                "placement-group",
                pg["GroupName"],
                region,
                pg.get("State", ""),
                None,
                tags.tag_dict(pg.get("Tags")),
                pg.get("Strategy", ""),
            )
        )
    return out


def annotate(resources: list[Resource], run_status: Callable[[str], str | None]) -> None:
    for r in resources:
        r.run_status = run_status(r.run_id) if r.run_id else None


def orphans(
    resources: Iterable[Resource],
    run_status: Callable[[str], str | None],
    owner: str,
    all_owners: bool = False,
) -> list[Resource]:
    """This owner's managed resources whose run is over or unknown and that are not kept."""
    found = []
    for r in resources:
        if r.tags.get(tags.MANAGED) != "true" or r.kept:
            continue
        if not all_owners and r.owner != owner:
            continue
        status = run_status(r.run_id) if r.run_id else None
        r.run_status = status
        if status in ACTIVE_RUN:
            continue
        if r.kind == "volume" and r.state == "in-use":
            continue  # goes with its instance (DeleteOnTermination) or is attached on purpose
        found.append(r)
    return found


def delete(clients: Clients, resource: Resource) -> tuple[bool, str]:
    """Delete or terminate one resource; (ok, what happened). Refuses anything unmanaged or kept."""
    if resource.tags.get(tags.MANAGED) != "true" or resource.kept:
        return False, "not managed by runctl or kept on purpose: left alone"
    ec2 = clients.ec2
    try:
        if resource.kind == "instance":
            ec2.terminate_instances(InstanceIds=[resource.id])
            return True, "terminated"
        if resource.kind == "volume":
            ec2.delete_volume(VolumeId=resource.id)
            return True, "deleted"
        if resource.kind == "security-group":
            ec2.delete_security_group(GroupId=resource.id)
            return True, "deleted"
        if resource.kind == "spot-request":
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[resource.id])
            return True, "cancelled"
        if resource.kind == "fleet":
            ec2.delete_fleets(FleetIds=[resource.id], TerminateInstances=True)
            return True, "deleted with its instances"
        if resource.kind == "launch-template":
            ec2.delete_launch_template(LaunchTemplateId=resource.id)
            return True, "deleted"
        if resource.kind == "placement-group":
            ec2.delete_placement_group(GroupName=resource.id)
            return True, "deleted"
    except Exception as exc:  # noqa: BLE001 - reported per resource, the rest go on
        return False, f"failed: {error_code(exc) or exc}"
    return False, f"unknown kind {resource.kind}"


# Fleets and requests first (a fleet whose instance is terminated first launches a
# new one), then their templates, instances, volumes, groups last.
_ORDER = {
    "fleet": 0,
    "spot-request": 1,
    "launch-template": 2,
    "instance": 3,
    "volume": 4,
    "placement-group": 5,
    "security-group": 6,
}


def cleanup(clients: Clients, targets: Iterable[Resource]) -> list[tuple[Resource, bool, str]]:
    return [(r, *delete(clients, r)) for r in sorted(targets, key=lambda r: _ORDER.get(r.kind, 9))]


def table(resources: Iterable[Resource]) -> str:
    rows = [r.row() for r in resources]
    if not rows:
        return "no runctl-managed resources"
    cols = ["kind", "id", "state", "detail", "age_h", "owner", "run", "run_status", "kept"]
    widths = {
        c: max(len(c), *(len(str(row[c] if row[c] is not None else "")) for row in rows))
        for c in cols
    }
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    for row in rows:
        lines.append(
            "  ".join(str(row[c] if row[c] is not None else "").ljust(widths[c]) for c in cols)
        )
    return "\n".join(lines)
