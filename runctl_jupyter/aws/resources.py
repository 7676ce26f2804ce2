"""Every runctl-managed resource, which of them are orphans, and cleaning those up.

Only resources tagged `runctl:managed=true` are ever listed or touched. An orphan
is one of this owner's (or anyone's with `all_owners`) whose run is over or
unknown and that is not kept on purpose (`runctl:keep`, `runctl:persistent`,
`runctl:protected`, `runctl:role=setup`). A kept instance's persistent spot request
is kept with it, but not once that instance is gone: it would launch another, so it is
an orphan then (`stranded`). A listing never fails whole: a describe
call that answers an error is named in `Listing.failures` and the others go on
(one lister a kind: listers.py; what a listing holds: inventory.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from . import run_role, tags
from .clients import Clients, error_code
from .inventory import Failure, Listing, Resource, partial_note
from .listers import LISTERS, bucket_storage
from .policy import RUN_PREFIX

__all__ = [
    "KINDS",
    "Failure",
    "Listing",
    "Resource",
    "annotate",
    "cleanup",
    "delete",
    "list_resources",
    "orphans",
    "partial_note",
    "table",
]

ACTIVE_RUN = frozenset({"queued", "provisioning", "starting", "running", "interrupted", "resuming"})
KINDS = (*(kind for kind, *_ in LISTERS), "bucket")


def list_resources(
    clients: Clients, bucket: str | None = None, prefix: str = RUN_PREFIX
) -> Listing:
    """Managed resources in the clients' region (instances that are not terminated, ...)
    and, given `bucket`, the bucket's storage under `prefix`. A call that fails is named
    in `.failures` (service, operation, region, error code) and the others go on; once a
    service's endpoint cannot be reached, its remaining calls are named, not tried."""
    from botocore.exceptions import BotoCoreError, ClientError

    listing = Listing(regions=[clients.region])
    jobs: list[tuple[str, str, str, Callable[[Clients], list[Resource]]]] = list(LISTERS)
    if bucket:
        jobs.append(("bucket", "s3", "ListObjectsV2", lambda c: bucket_storage(c, bucket, prefix)))
    down: dict[str, str] = {}  # service -> why it cannot be reached
    for kind, service, operation, lister in jobs:
        if service in down:
            listing.failures.append(
                Failure(service, operation, clients.region, f"not tried ({down[service]})", kind)
            )
            continue
        try:
            listing.extend(lister(clients))
        except (ClientError, BotoCoreError) as exc:
            code = error_code(exc) or type(exc).__name__
            op = getattr(exc, "operation_name", None) or operation
            answered = isinstance(exc, ClientError)
            message = "" if answered else str(exc).splitlines()[0] if str(exc) else ""
            listing.failures.append(Failure(service, op, clients.region, code, kind, message))
            if not answered:
                down[service] = code
    _mark_stranded(listing)
    return listing


def _mark_stranded(listing: Listing) -> None:
    """A persistent request outlives a terminated instance, and replaces it: a kept
    request whose instance is not listed is an orphan. Not decided when the instances
    could not be read."""
    if any(f.kind == "instance" for f in listing.failures):
        return
    live = {r.id for r in listing if r.kind == "instance"}
    for r in listing:
        r.stranded = r.kind == "spot-request" and r.detail not in live


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
        if resource.kind == "snapshot":
            ec2.delete_snapshot(SnapshotId=resource.id)
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
        if resource.kind == "role":
            failed = run_role.delete(clients, resource.id)
            return (False, f"failed: {'; '.join(failed)}") if failed else (True, "deleted")
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
    "snapshot": 5,
    "placement-group": 6,
    "security-group": 7,
    "role": 8,  # last: an instance still ending may need its role's credentials
}


def cleanup(clients: Clients, targets: Iterable[Resource]) -> list[tuple[Resource, bool, str]]:
    done: list[tuple[Resource, bool, str]] = []
    for r in sorted(targets, key=lambda r: _ORDER.get(r.kind, 9)):
        why = leased(clients, r)
        done.append((r, False, why) if why else (r, *delete(clients, r)))
    return done


def leased(clients: Clients, resource: Resource) -> str | None:
    """Why a volume or instance some run holds a lease on must stay (aws/leases.py), or None."""
    if resource.kind not in ("volume", "instance"):
        return None
    from .leases import cleanup_refusal
    from .policy import bucket_name

    try:
        bucket = bucket_name(clients.identity()["Account"], clients.region)
        return cleanup_refusal(clients.s3, bucket, RUN_PREFIX, resource.id)
    except Exception as exc:  # noqa: BLE001 - unsure: keep it
        return f"its lease could not be read ({error_code(exc) or exc}): left alone; run cleanup again"


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
