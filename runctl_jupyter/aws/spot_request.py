"""Persistent spot requests: launching one, adopting its instance, following its refills.

A spot run's instance comes from a persistent request (RequestSpotInstances,
InstanceInterruptionBehavior=terminate) whose UserData is the run's boot script:
when AWS takes the instance back, the request opens again and AWS launches a
replacement that runs the next attempt (docs/reliability.md). Its
LaunchSpecification carries neither tags nor metadata options, so the instance is
tagged and IMDSv2 required right after fulfilment. The run's instance changes on a
refill: `current_instance` asks the request.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from . import tags
from .clients import Clients, error_code

if TYPE_CHECKING:
    from .launch import LaunchRequest


# Spot request status codes that mean "not here, not now": try the next candidate.
UNFULFILLABLE = {
    "capacity-not-available",
    "capacity-oversubscribed",
    "price-too-low",
    "constraint-not-fulfillable",
    "az-group-constraint",
    "placement-group-constraint",
    "launch-group-constraint",
    "bad-parameters",
}


class Unfulfilled(Exception):
    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


def request_spot(
    clients: Clients, req: LaunchRequest, image: dict, subnet: dict, security_group: str
) -> dict:
    """A persistent spot request (terminate on interruption) carrying the boot script;
    waits for its instance. Returns {"InstanceId", "SpotInstanceRequestId"}; raises
    Unfulfilled (the request cancelled) when AWS cannot place it in time."""
    import base64

    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
    root = image.get("RootDeviceName") or "/dev/xvda"
    spec: dict[str, Any] = {
        "ImageId": image["ImageId"],
        "InstanceType": req.instance_type,
        "SubnetId": subnet["SubnetId"],
        "SecurityGroupIds": [security_group],
        "IamInstanceProfile": {"Name": req.instance_profile},
        "UserData": base64.b64encode((req.user_data or "").encode()).decode(),
        "BlockDeviceMappings": [
            {
                "DeviceName": root,
                "Ebs": {
                    "VolumeSize": req.root_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
    }
    resp = clients.ec2.request_spot_instances(
        InstanceCount=1,
        Type="persistent",
        InstanceInterruptionBehavior="terminate",
        LaunchSpecification=spec,
        TagSpecifications=[
            {"ResourceType": "spot-instances-request", "Tags": tags.tag_list(run_tags)}
        ],
    )
    request_id = resp["SpotInstanceRequests"][0]["SpotInstanceRequestId"]
    deadline = time.monotonic() + req.fulfil_timeout
    while True:
        try:
            found = clients.ec2.describe_spot_instance_requests(
                SpotInstanceRequestIds=[request_id]
            )["SpotInstanceRequests"]
        except Exception as exc:  # eventually consistent: a new id may not be visible yet
            if not error_code(exc).startswith("InvalidSpotInstanceRequestID"):
                raise
            found = []
        sir = found[0] if found else {}
        code = (sir.get("Status") or {}).get("Code", "")
        if sir.get("InstanceId"):
            return {"InstanceId": sir["InstanceId"], "SpotInstanceRequestId": request_id}
        if code in UNFULFILLABLE or sir.get("State") in ("failed", "cancelled", "closed"):
            _cancel_request(clients, request_id)
            raise Unfulfilled(code or sir.get("State", "failed"))
        if time.monotonic() > deadline:
            _cancel_request(clients, request_id)
            raise Unfulfilled(f"still {code or 'open'} after {req.fulfil_timeout:.0f} s")
        time.sleep(req.poll)


def _cancel_request(clients: Clients, request_id: str) -> None:
    """Give up on a request; an instance it got at the last moment is terminated too."""
    try:
        clients.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[request_id])
    except Exception:  # noqa: BLE001 - `resources`/`cleanup` still list it
        pass
    late = request_instance(clients, request_id)
    if late:
        try:
            clients.ec2.terminate_instances(InstanceIds=late)
        except Exception:  # noqa: BLE001 - tagged by nobody yet: `resources` shows the request
            pass


def adopt_spot_instance(clients: Clients, req: LaunchRequest, instance_id: str) -> dict:
    """Tag the request's instance (and its volumes) as the run's, and require IMDSv2."""
    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
    resources = [instance_id]
    inst = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
        "Instances"
    ][0]
    resources += [m["Ebs"]["VolumeId"] for m in inst.get("BlockDeviceMappings", []) if m.get("Ebs")]
    clients.ec2.create_tags(Resources=resources, Tags=tags.tag_list(run_tags))
    clients.ec2.modify_instance_metadata_options(
        InstanceId=instance_id,
        HttpTokens="required",
        HttpEndpoint="enabled",
        HttpPutResponseHopLimit=2,
    )
    return inst


def request_instance(clients: Clients, request_id: str) -> list[str]:
    try:
        found = clients.ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])[
            "SpotInstanceRequests"
        ]
    except Exception:  # noqa: BLE001 - gone or not visible: nothing more to end
        return []
    return [found[0]["InstanceId"]] if found and found[0].get("InstanceId") else []


def request_of(clients: Clients, request_id: str) -> dict | None:
    try:
        found = clients.ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request_id])[
            "SpotInstanceRequests"
        ]
    except Exception as exc:
        if error_code(exc).startswith("InvalidSpotInstanceRequestID"):
            return None
        raise
    return found[0] if found else None


def request_alive(clients: Clients, request_id: str) -> bool | None:
    """A persistent request that is open or active can still (re)fill the run's instance:
    heartbeats decide (None); gone, cancelled or closed: False."""
    req = request_of(clients, request_id)
    if req is None or req.get("State") not in ("open", "active"):
        return False
    return None


def current_instance(clients: Clients, target: dict) -> str | None:
    """The run's instance now: a persistent request's latest one, else the one launched."""
    if target.get("persistent") and target.get("spot_request_id"):
        try:
            req = request_of(clients, target["spot_request_id"])
        except Exception:  # noqa: BLE001 - fall back to the instance we know
            req = None
        if req and req.get("InstanceId"):
            return req["InstanceId"]
    return target.get("instance_id")


def cancel_old_request(clients: Clients, target: dict) -> None:
    """Before a new attempt's launch: the run's earlier persistent request must not refill."""
    old = target
    if old.get("persistent") and old.get("spot_request_id"):
        try:
            clients.ec2.cancel_spot_instance_requests(
                SpotInstanceRequestIds=[old["spot_request_id"]]
            )
        except Exception:  # noqa: BLE001 - gone already; `cleanup` lists any left
            pass


def claim_attempt(clients: Clients, bucket: str, prefix: str, run_id: str, attempt: int) -> None:
    """Mark the attempt as this launch's (no instance yet) so no boot script starts it."""
    from ..agent_boot import MARKERS
    from ..agent_s3 import run_prefix

    key = f"{run_prefix({'prefix': prefix}, run_id)}{MARKERS}{int(attempt):06d}.json"
    body = json.dumps({"instance_id": None, "by": "launch", "t": time.time()}).encode()
    clients.s3.put_object(Bucket=bucket, Key=key, Body=body, ServerSideEncryption="AES256")
