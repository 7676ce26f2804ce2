"""Persistent spot requests and --fallback at launch; requests in `resources`/`cleanup`."""

from __future__ import annotations

import pytest

from runctl_jupyter.agent_boot import attach_volume
from runctl_jupyter.aws import resources, tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.launch import (
    InvalidInstanceType,
    LaunchRequest,
    NoCapacity,
    provision,
    terminate_launched,
)
from runctl_jupyter.aws.setup import setup


def _req(**kw) -> LaunchRequest:
    base = dict(
        run_id="r1",
        owner="ann",
        project="proj",
        instance_type="t3.micro",
        poll=0.05,
        ssm_timeout=5,
        user_data="#!/bin/bash\necho boot\n",
    )
    base.update(kw)
    return LaunchRequest(**base)


@pytest.fixture
def ready(aws: Clients) -> Clients:
    setup(aws)
    return aws


def _zones(aws: Clients) -> int:
    return len(
        aws.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
            "Subnets"
        ]
    )


def _requests(aws: Clients) -> list[dict]:
    return aws.ec2.describe_spot_instance_requests()["SpotInstanceRequests"]


def test_a_spot_run_gets_a_tagged_persistent_request_and_a_tagged_imdsv2_instance(ready):
    launched = provision(ready, _req())
    assert launched.persistent and launched.spot_request_id.startswith("sir-")
    (req,) = _requests(ready)
    assert req["Type"] == "persistent" and req["InstanceInterruptionBehavior"] == "terminate"
    assert tags.tag_dict(req["Tags"])[tags.RUN_ID] == "r1"
    inst = ready.ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert tags.tag_dict(inst["Tags"])[tags.MANAGED] == "true"
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert launched.facts()["persistent"] is True


def test_capacity_errors_for_the_type_in_every_zone_fall_back_to_the_next_type(ready, fail):
    injected = fail(
        ready, "ec2.RequestSpotInstances", code="InsufficientInstanceCapacity", times=_zones(ready)
    )
    said: list[str] = []
    launched = provision(
        ready, _req(fallback=["t3.small", "on-demand"]), progress=lambda s, d: said.append(d)
    )
    assert injected.count == _zones(ready)
    assert launched.instance_type == "t3.small" and launched.spot and launched.persistent
    assert all(
        "t3.micro (spot)" in t and "InsufficientInstanceCapacity" in t for t in launched.tried
    )
    assert any(d.startswith("fell back to t3.small") for d in said)


def test_fallback_on_demand_when_no_spot_capacity_anywhere(ready, fail):
    fail(ready, "ec2.RequestSpotInstances", code="InsufficientInstanceCapacity")
    launched = provision(ready, _req(fallback=["on-demand"]))
    assert launched.spot is False and launched.persistent is False
    assert launched.spot_request_id is None
    inst = ready.ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert inst.get("InstanceLifecycle") != "spot"
    assert [r for r in _requests(ready) if r["State"] in ("open", "active")] == []


def test_no_capacity_anywhere_says_what_to_try_and_leaves_nothing(ready, fail):
    fail(ready, "ec2.RequestSpotInstances", code="InsufficientInstanceCapacity")
    with pytest.raises(NoCapacity, match="--fallback"):
        provision(ready, _req(fallback=["t3.small"]))
    assert [r for r in _requests(ready) if r["State"] in ("open", "active")] == []


def test_an_unknown_fallback_type_is_refused_before_anything_is_created(ready):
    with pytest.raises(InvalidInstanceType, match="t3.smal"):
        provision(ready, _req(fallback=["t3.smal"]))
    assert ready.calls.get("ec2.RequestSpotInstances", 0) == 0


def test_a_run_with_a_volume_requests_its_replacements_in_the_volume_zone(ready):
    vol = ready.ec2.create_volume(AvailabilityZone="us-east-1c", Size=1)["VolumeId"]
    launched = provision(ready, _req(volume=vol))
    (req,) = _requests(ready)
    subnet = ready.ec2.describe_subnets(SubnetIds=[req["LaunchSpecification"]["SubnetId"]])[
        "Subnets"
    ][0]
    assert subnet["AvailabilityZone"] == "us-east-1c" == launched.availability_zone


def test_a_replacement_attaches_the_volume_once_the_old_instance_let_it_go(ready):
    vol = ready.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1)["VolumeId"]
    new = ready.ec2.run_instances(
        ImageId=ready.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": "us-east-1a"},
    )["Instances"][0]["InstanceId"]
    attach_volume(ready.ec2, vol, new, timeout=5)
    vol_now = ready.ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]
    assert [a["InstanceId"] for a in vol_now["Attachments"]] == [new]
    attach_volume(ready.ec2, vol, new, timeout=5)  # again (a rerun boot): nothing to do


def test_resources_list_the_run_request_and_cleanup_cancels_it_before_the_instance(ready):
    launched = provision(ready, _req())
    found = resources.list_resources(ready)
    (req,) = [r for r in found if r.kind == "spot-request"]
    assert req.id == launched.spot_request_id and req.run_id == "r1"
    orphans = resources.orphans(found, lambda run_id: "failed", owner="ann")
    done = resources.cleanup(ready, orphans)
    kinds = [r.kind for r, ok, _ in done if ok]
    assert kinds.index("spot-request") < kinds.index("instance")  # no refill in between
    assert [r for r in _requests(ready) if r["State"] in ("open", "active")] == []


def test_ending_a_launch_also_ends_an_instance_the_request_refilled(ready):
    from moto.ec2.models import ec2_backends

    launched = provision(ready, _req())
    backend = ec2_backends["123456789012"]["us-east-1"]
    request = backend.spot_instance_requests[launched.spot_request_id]
    backend.terminate_instances([launched.instance_id])
    request.instance = request.launch_instance()  # AWS refilled it meanwhile
    refill = request.instance.id
    ended = terminate_launched(ready, launched)
    assert refill in ended and launched.spot_request_id in ended
    state = ready.ec2.describe_instances(InstanceIds=[refill])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] in ("shutting-down", "terminated")


def _actions(doc: dict) -> set[str]:
    out: set[str] = set()
    for statement in doc["Statement"]:
        action = statement["Action"]
        out.update(action if isinstance(action, list) else [action])
    return out


def test_the_user_policy_allows_every_ec2_call_a_spot_launch_and_its_end_make(ready, fail):
    from runctl_jupyter.aws import policy

    ready.calls.clear()
    fail(ready, "ec2.RequestSpotInstances", code="InsufficientInstanceCapacity", times=1)
    launched = provision(ready, _req(fallback=["on-demand"]))
    terminate_launched(ready, launched)
    used = {"ec2:" + op.split(".", 1)[1] for op in ready.calls if op.startswith("ec2.")}
    assert {
        "ec2:RequestSpotInstances",
        "ec2:CreateTags",
        "ec2:ModifyInstanceMetadataOptions",
    } <= used
    assert used <= _actions(policy.user_policy("123456789012", "us-east-1"))


def test_the_instance_policy_allows_every_ec2_call_of_the_instance_side():
    import re
    from pathlib import Path

    import runctl_jupyter
    from runctl_jupyter.aws import policy

    pkg = Path(runctl_jupyter.__file__).resolve().parent
    calls = set()
    for module in ("agent_boot.py", "agent_s3_service.py"):
        calls |= set(re.findall(r"\bec2\.(\w+)\(", (pkg / module).read_text()))
    assert {"create_tags", "attach_volume", "terminate_instances"} <= calls
    allowed = _actions(policy.instance_policy("b"))
    for call in calls:
        action = "ec2:" + "".join(part.title() for part in call.split("_"))
        assert action in allowed, action
    tag = next(
        s for s in policy.instance_policy("b")["Statement"] if s["Sid"] == "TagReplacementInstance"
    )
    assert tag["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"] == [
        tags.MANAGED,
        tags.RUN_ID,
        tags.OWNER,
        tags.PROJECT,
    ]


def _unfulfilled(aws: Clients, code: str, times: int):
    """AWS leaving the first `times` requests unfulfilled with status `code` (moto fulfils
    at once): their describe answers are rewritten as AWS would give them."""
    hidden: set[str] = set()

    def rewrite(parsed: dict, **_: object) -> None:
        for sir in parsed.get("SpotInstanceRequests", []):
            rid = sir["SpotInstanceRequestId"]
            if rid in hidden or len(hidden) < times:
                hidden.add(rid)
                sir.pop("InstanceId", None)
                sir["State"] = "open"
                sir["Status"] = {"Code": code, "Message": "injected"}

    aws.ec2.meta.events.register("after-call.ec2.DescribeSpotInstanceRequests", rewrite)
    return hidden


def test_a_request_left_unfulfilled_is_cancelled_and_the_next_candidate_tried(ready):
    hidden = _unfulfilled(ready, "capacity-not-available", times=_zones(ready))
    launched = provision(ready, _req(fallback=["t3.small"]))
    assert launched.instance_type == "t3.small" and launched.persistent
    assert all("capacity-not-available" in t for t in launched.tried)
    open_requests = [r for r in _requests(ready) if r["State"] in ("open", "active")]
    assert [r["SpotInstanceRequestId"] for r in open_requests] == [launched.spot_request_id]
    assert launched.spot_request_id not in hidden


def test_a_request_still_pending_past_the_fulfil_timeout_moves_on(ready):
    _unfulfilled(ready, "pending-evaluation", times=1)
    launched = provision(ready, _req(fulfil_timeout=0.3))
    assert len(launched.tried) == 1 and "still pending-evaluation after" in launched.tried[0]
    assert launched.availability_zone == "us-east-1b"  # the next zone
