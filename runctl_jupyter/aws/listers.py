"""One lister a resource kind: each reads one describe call (paginated) in one region and
returns the runctl-managed resources it found, or raises the call's error for
`resources.list_resources` to name (a listing never fails whole).

`LISTERS` holds (kind, service, operation, lister); the bucket's storage is listed by
`bucket_storage` (the bucket's name comes from the settings and the account).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import run_role, tags
from .clients import Clients, error_code
from .inventory import Resource

_MANAGED_FILTER = [{"Name": f"tag:{tags.MANAGED}", "Values": ["true"]}]
GIB = 1024**3
# ListObjectsV2 answers 1000 keys a page: past this many pages the size is a lower bound
MAX_BUCKET_PAGES = 1000


def _pages(client: Any, op: str, key: str, **kwargs: Any) -> Iterable[dict]:
    if client.can_paginate(op):
        for page in client.get_paginator(op).paginate(**kwargs):
            yield from page.get(key, [])
    else:
        yield from getattr(client, op)(**kwargs).get(key, [])


def instances(clients: Clients) -> list[Resource]:
    """Instances that are not terminated."""
    out = []
    for res in _pages(clients.ec2, "describe_instances", "Reservations", Filters=_MANAGED_FILTER):
        for inst in res["Instances"]:
            state = inst["State"]["Name"]
            if state == "terminated":
                continue
            kind = "spot" if inst.get("InstanceLifecycle") == "spot" else "on-demand"
            zone = inst.get("Placement", {}).get("AvailabilityZone", "")
            out.append(
                Resource(
                    "instance",
                    inst["InstanceId"],
                    clients.region,
                    state,
                    inst.get("LaunchTime"),
                    tags.tag_dict(inst.get("Tags")),
                    f"{inst['InstanceType']} {kind} {zone}",
                    facts={"instance_type": inst["InstanceType"], "spot": kind == "spot"},
                )
            )
    return out


def _named(vol: dict) -> str:
    """A `--persistent` data volume's name (what `--volume NAME` takes)."""
    name = tags.tag_dict(vol.get("Tags")).get(tags.VOLUME_NAME)
    return f" name={name}" if name else ""


def volumes(clients: Clients) -> list[Resource]:
    out = []
    for vol in _pages(clients.ec2, "describe_volumes", "Volumes", Filters=_MANAGED_FILTER):
        vtype = vol.get("VolumeType", "")
        facts = {"size_gb": float(vol["Size"]), "volume_type": vtype}
        if vtype in ("io1", "io2") and vol.get("Iops"):
            facts["iops"] = int(vol["Iops"])  # provisioned IOPS bill per IOPS-month
        out.append(
            Resource(
                "volume",
                vol["VolumeId"],
                clients.region,
                vol["State"],
                vol.get("CreateTime"),
                tags.tag_dict(vol.get("Tags")),
                f"{vol['Size']} GiB {vtype} {vol['AvailabilityZone']}" + _named(vol),
                facts=facts,
            )
        )
    return out


def snapshots(clients: Clients) -> list[Resource]:
    """This account's managed snapshots. A snapshot bills for the blocks it stores
    (incremental): its full size (or its volume's size) is an upper bound."""
    out = []
    for snap in _pages(
        clients.ec2,
        "describe_snapshots",
        "Snapshots",
        OwnerIds=["self"],
        Filters=_MANAGED_FILTER,
    ):
        full = snap.get("FullSnapshotSizeInBytes")
        size_gb = full / GIB if full else float(snap.get("VolumeSize") or 0)
        tier = snap.get("StorageTier") or "standard"
        out.append(
            Resource(
                "snapshot",
                snap["SnapshotId"],
                clients.region,
                snap.get("State", ""),
                snap.get("StartTime"),
                tags.tag_dict(snap.get("Tags")),
                f"{snap.get('VolumeSize', '?')} GiB volume, {tier} tier",
                facts={
                    "size_gb": size_gb,
                    "storage": "snapshot-archive" if tier == "archive" else "snapshot",
                    "upper_bound": True,
                },
            )
        )
    return out


def security_groups(clients: Clients) -> list[Resource]:
    return [
        Resource(
            "security-group",
            sg["GroupId"],
            clients.region,
            "available",
            None,
            tags.tag_dict(sg.get("Tags")),
            sg["GroupName"],
        )
        for sg in _pages(
            clients.ec2, "describe_security_groups", "SecurityGroups", Filters=_MANAGED_FILTER
        )
    ]


def spot_requests(clients: Clients) -> list[Resource]:
    """Open, active or disabled (a kept instance stopped) requests: a closed or cancelled
    one holds nothing."""
    states = ["open", "active", "disabled"]
    spot_filters = [*_MANAGED_FILTER, {"Name": "state", "Values": states}]
    return [
        Resource(
            "spot-request",
            req["SpotInstanceRequestId"],
            clients.region,
            req["State"],
            req.get("CreateTime"),
            tags.tag_dict(req.get("Tags")),
            req.get("InstanceId", ""),
        )
        for req in _pages(
            clients.ec2,
            "describe_spot_instance_requests",
            "SpotInstanceRequests",
            Filters=spot_filters,
        )
    ]


def fleets(clients: Clients) -> list[Resource]:
    """Fleets not deleted (DescribeFleets has no tag filter: filtered here)."""
    try:
        found = list(_pages(clients.ec2, "describe_fleets", "Fleets"))
    except Exception as exc:  # noqa: BLE001 - older accounts/emulators without fleets
        if error_code(exc) not in ("InvalidAction", "UnsupportedOperation", "NotImplemented"):
            raise
        found = []
    out = []
    for fleet in found:
        ftags = tags.tag_dict(fleet.get("Tags"))
        if ftags.get(tags.MANAGED) != "true" or fleet.get("FleetState", "").startswith("deleted"):
            continue
        out.append(
            Resource(
                "fleet",
                fleet["FleetId"],
                clients.region,
                fleet.get("FleetState", ""),
                fleet.get("CreateTime"),
                ftags,
            )
        )
    return out


def launch_templates(clients: Clients) -> list[Resource]:
    return [
        Resource(
            "launch-template",
            lt["LaunchTemplateId"],
            clients.region,
            "available",
            lt.get("CreateTime"),
            tags.tag_dict(lt.get("Tags")),
            lt.get("LaunchTemplateName", ""),
        )
        for lt in _pages(
            clients.ec2, "describe_launch_templates", "LaunchTemplates", Filters=_MANAGED_FILTER
        )
    ]


def placement_groups(clients: Clients) -> list[Resource]:
    out = []
    for pg in clients.ec2.describe_placement_groups().get("PlacementGroups", []):  # few
        if tags.tag_dict(pg.get("Tags")).get(tags.MANAGED) != "true":
            continue
        out.append(
            Resource(
                "placement-group",
                pg["GroupName"],
                clients.region,
                pg.get("State", ""),
                None,
                tags.tag_dict(pg.get("Tags")),
                pg.get("Strategy", ""),
            )
        )
    return out


def run_roles(clients: Clients) -> list[Resource]:
    """Each run's own role (aws/run_role.py; IAM is global: every region lists them)."""
    out = []
    for role in _pages(clients.iam, "list_roles", "Roles", PathPrefix=run_role.PATH):
        if not role["RoleName"].startswith(run_role.PREFIX):
            continue
        found = clients.iam.list_role_tags(RoleName=role["RoleName"]).get("Tags")
        role_tags = tags.tag_dict(found)
        if role_tags.get(tags.MANAGED) != "true":
            continue
        out.append(
            Resource(
                "role",
                role["RoleName"],
                clients.region,
                "available",
                role.get("CreateDate"),
                role_tags,
            )
        )
    return out


LISTERS = (
    ("instance", "ec2", "DescribeInstances", instances),
    ("volume", "ec2", "DescribeVolumes", volumes),
    ("snapshot", "ec2", "DescribeSnapshots", snapshots),
    ("security-group", "ec2", "DescribeSecurityGroups", security_groups),
    ("spot-request", "ec2", "DescribeSpotInstanceRequests", spot_requests),
    ("fleet", "ec2", "DescribeFleets", fleets),
    ("launch-template", "ec2", "DescribeLaunchTemplates", launch_templates),
    ("placement-group", "ec2", "DescribePlacementGroups", placement_groups),
    ("role", "iam", "ListRoles", run_roles),
)


def bucket_storage(clients: Clients, bucket: str, prefix: str) -> list[Resource]:
    """runctl's bucket and the size of what runctl keeps in it (the objects under
    `prefix`, summed from ListObjectsV2: exact and current, with the s3:ListBucket the
    user already has; docs/aws.md says why not CloudWatch's BucketSizeBytes). No bucket:
    nothing to list."""
    total = standard = count = 0
    pages = 0
    truncated = False
    try:
        for page in clients.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix
        ):
            pages += 1
            for obj in page.get("Contents", []):
                count += 1
                total += obj.get("Size", 0)
                if obj.get("StorageClass", "STANDARD") == "STANDARD":
                    standard += obj.get("Size", 0)
            if pages >= MAX_BUCKET_PAGES and page.get("IsTruncated"):
                truncated = True
                break
    except Exception as exc:  # noqa: BLE001 - a missing bucket is no failure: nothing bills
        if error_code(exc) == "NoSuchBucket":
            return []
        raise
    at_least = "at least " if truncated else ""
    detail = f"{at_least}{count} objects, {total / GIB:.2f} GiB under {prefix}"
    facts = {"size_gb": standard / GIB, "storage": "s3-standard", "lower_bound": truncated}
    return [
        Resource(
            "bucket",
            bucket,
            clients.region,
            "available",
            None,
            tags.setup_tags(),
            detail,
            facts=facts,
        )
    ]
