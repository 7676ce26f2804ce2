"""A spot run's EC2 Fleet: launching it, following its refills, deleting it.

A spot run's instance comes from an EC2 Fleet of type `maintain` (TargetCapacity 1,
spot, InstanceInterruptionBehavior=terminate) built from a per-run launch template:
UserData is the run's boot script, IMDSv2 is required, the root volume encrypted, and
the instance, its volumes and the template itself carry the run's tags from the
start (no CreateTags after launch). Its Overrides list every candidate subnet (one a
default AZ, only the `--volume`'s AZ when there is one) for the type asked for and
each `--fallback` type, by priority: when AWS takes the instance back, the fleet
launches a replacement wherever there is capacity, and its boot script starts the
next attempt (docs/reliability.md). The run's instance changes on a refill:
`current_instance` asks the fleet.
"""

from __future__ import annotations

import base64
import json
import time
from typing import TYPE_CHECKING, Any

from . import tags
from .clients import Clients, error_code
from .instance_spec import instance_settings

if TYPE_CHECKING:
    from .launch import Launched, LaunchRequest


class Unfulfilled(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def create_launch_template(
    clients: Clients, req: LaunchRequest, image: dict, security_group: str
) -> str:
    """The run's launch template (named after the run): returns its id."""
    run_tags = tags.run_tags(req.run_id, req.owner, req.project, req.team)
    data: dict[str, Any] = {
        "ImageId": image["ImageId"],
        "InstanceType": req.instance_type,
        "SecurityGroupIds": [security_group],
        "UserData": base64.b64encode((req.user_data or "").encode()).decode(),
        **instance_settings(req.instance_profile, req.root_gb, image, run_tags),
    }
    resp = clients.ec2.create_launch_template(
        LaunchTemplateName=f"runctl-{req.run_id}-{int(time.time())}",
        LaunchTemplateData=data,
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags.tag_list(run_tags)}],
    )
    return resp["LaunchTemplate"]["LaunchTemplateId"]


def overrides(
    types: list[str], images: dict[str, dict], subnets: list[dict]
) -> list[dict[str, Any]]:
    """Every (type, subnet) the fleet may launch in, the type asked for first, then each
    fallback type; within a type, the subnets in order (priority 0 is the best)."""
    out: list[dict[str, Any]] = []
    for name in types:
        for subnet in subnets:
            out.append(
                {
                    "InstanceType": name,
                    "SubnetId": subnet["SubnetId"],
                    "ImageId": images[name]["ImageId"],  # an arm64 fallback needs its own AMI
                    "Priority": float(len(out)),
                }
            )
    return out


def create_fleet(
    clients: Clients, req: LaunchRequest, template_id: str, choices: list[dict[str, Any]]
) -> str:
    run_tags = tags.tag_list(tags.run_tags(req.run_id, req.owner, req.project, req.team))
    resp = clients.ec2.create_fleet(
        Type="maintain",
        TargetCapacitySpecification={"TotalTargetCapacity": 1, "DefaultTargetCapacityType": "spot"},
        SpotOptions={
            # the type asked for first; AWS still skips pools without capacity
            "AllocationStrategy": "capacity-optimized-prioritized",
            "InstanceInterruptionBehavior": "terminate",
        },
        ReplaceUnhealthyInstances=False,
        LaunchTemplateConfigs=[
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": template_id,
                    "Version": "$Latest",
                },
                "Overrides": choices,
            }
        ],
        TagSpecifications=[{"ResourceType": "fleet", "Tags": run_tags}],
    )
    return resp["FleetId"]


def fleet_instances(clients: Clients, fleet_id: str) -> list[str]:
    """The fleet's running (or pending) instances; [] when it has none or is gone."""
    try:
        active = clients.ec2.describe_fleet_instances(FleetId=fleet_id).get("ActiveInstances", [])
    except Exception:  # noqa: BLE001 - gone or not visible: nothing more to end
        return []
    return [a["InstanceId"] for a in active if a.get("InstanceId")]


def wait_fulfilled(clients: Clients, fleet_id: str, timeout: float, poll: float) -> str:
    """The fleet's first instance; raises Unfulfilled when AWS placed none in time."""
    deadline = time.monotonic() + timeout
    while True:
        found = fleet_instances(clients, fleet_id)
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise Unfulfilled(f"no spot capacity after {timeout:.0f} s")
        time.sleep(poll)


def delete_fleet(
    clients: Clients, fleet_id: str | None, template_id: str | None, terminate: bool
) -> list[str]:
    """Delete the fleet (first: it would refill), then its template; returns what was ended."""
    ended = []
    if fleet_id:
        try:
            clients.ec2.delete_fleets(FleetIds=[fleet_id], TerminateInstances=terminate)
            ended.append(fleet_id)
        except Exception:  # noqa: BLE001 - gone already; `cleanup` lists any left
            pass
    if template_id:
        try:
            clients.ec2.delete_launch_template(LaunchTemplateId=template_id)
            ended.append(template_id)
        except Exception:  # noqa: BLE001 - gone already; `cleanup` lists any left
            pass
    return ended


def launch_fleet(
    clients: Clients,
    req: LaunchRequest,
    launched: Launched,
    tries: list[tuple[str, bool]],
    images: dict[str, dict],
    subnets: list[dict],
    security_group: str,
    errors: list[str],
) -> None:
    """The spot fleet with every spot candidate; on no capacity in time it is deleted
    (with anything it launched late) and `errors` says so."""
    types = [name for name, spot in tries if spot]
    template_id = create_launch_template(clients, req, images[req.instance_type], security_group)
    launched.launch_template_id = template_id
    try:
        fleet_id = create_fleet(clients, req, template_id, overrides(types, images, subnets))
    except BaseException:
        delete_fleet(clients, None, template_id, terminate=True)
        launched.launch_template_id = None
        raise
    launched.fleet_id = fleet_id
    try:
        instance_id = wait_fulfilled(clients, fleet_id, req.fulfil_timeout, req.poll)
    except Unfulfilled as exc:
        zones = ", ".join(s["AvailabilityZone"] for s in subnets)
        errors.append(f"{', '.join(types)} (spot fleet) in {zones}: {exc.code}")
        late = fleet_instances(clients, fleet_id)
        delete_fleet(clients, fleet_id, template_id, terminate=True)
        if late:
            clients.ec2.terminate_instances(InstanceIds=late)
        launched.fleet_id = launched.launch_template_id = None
        return
    launched.instance_id = instance_id
    launched.created.append(instance_id)
    launched.instance_type = req.instance_type  # the instance's own type once it runs
    launched.ami = images[req.instance_type]["ImageId"]
    launched.spot = True
    launched.persistent = True


def fleet_of(clients: Clients, fleet_id: str) -> dict | None:
    try:
        found = clients.ec2.describe_fleets(FleetIds=[fleet_id])["Fleets"]
    except Exception as exc:
        if error_code(exc).startswith("InvalidFleetId") or error_code(exc) == "NotFound":
            return None
        raise
    return found[0] if found else None


def fleet_alive(clients: Clients, fleet_id: str) -> bool | None:
    """A fleet that is active can still (re)fill the run's instance: heartbeats decide
    (None); gone or deleted: False."""
    fleet = fleet_of(clients, fleet_id)
    if fleet is None or fleet.get("FleetState") not in ("submitted", "active", "modifying"):
        return False
    return None


def current_instance(clients: Clients, target: dict) -> str | None:
    """The run's instance now: the fleet's latest one, else the one launched."""
    if target.get("persistent") and target.get("fleet_id"):
        try:
            found = fleet_instances(clients, target["fleet_id"])
        except Exception:  # noqa: BLE001 - fall back to the instance we know
            found = []
        if found:
            return found[-1]
    return target.get("instance_id")


def delete_old_fleet(clients: Clients, target: dict) -> None:
    """Before a new attempt's launch: the run's earlier fleet must not refill."""
    if target.get("persistent") and target.get("fleet_id"):
        delete_fleet(clients, target["fleet_id"], target.get("launch_template_id"), terminate=False)


def claim_attempt(clients: Clients, bucket: str, prefix: str, run_id: str, attempt: int) -> None:
    """Mark the attempt as this launch's (no instance yet) so no boot script starts it."""
    from ..agent.boot import MARKERS
    from ..agent.s3 import run_prefix

    key = f"{run_prefix({'prefix': prefix}, run_id)}{MARKERS}{int(attempt):06d}.json"
    body = json.dumps({"instance_id": None, "by": "launch", "t": time.time()}).encode()
    clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
