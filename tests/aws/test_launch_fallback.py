"""Spot fleets and --fallback at launch; fleets and templates in `resources`/`cleanup`."""

from __future__ import annotations

import base64

import pytest

from runctl_jupyter.agent.boot import attach_volume
from runctl_jupyter.aws import resources, tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.launch import LaunchRequest, provision, terminate_launched
from runctl_jupyter.aws.launch_errors import InvalidInstanceType, NoCapacity
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


def _fleets(aws: Clients) -> list[dict]:
    return [
        f for f in aws.ec2.describe_fleets()["Fleets"] if not f["FleetState"].startswith("deleted")
    ]


def _templates(aws: Clients) -> list[dict]:
    return aws.ec2.describe_launch_templates()["LaunchTemplates"]


def _live_instances(aws: Clients) -> list[str]:
    res = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )
    return [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]]


def _template_data(aws: Clients, template_id: str) -> dict:
    return aws.ec2.describe_launch_template_versions(LaunchTemplateId=template_id)[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]


def _no_spot_capacity(aws: Clients) -> None:
    """AWS placing nothing for the fleet (moto fills it at once): its instances hidden."""

    def rewrite(parsed: dict, **_: object) -> None:
        parsed["ActiveInstances"] = []

    aws.ec2.meta.events.register("after-call.ec2.DescribeFleetInstances", rewrite)


def test_a_spot_run_gets_a_tagged_fleet_from_a_tagged_imdsv2_template(ready):
    launched = provision(ready, _req())
    assert launched.persistent and launched.fleet_id and launched.spot_request_id is None
    (fleet,) = _fleets(ready)
    assert fleet["FleetId"] == launched.fleet_id and fleet["Type"] == "maintain"
    assert fleet["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 1,
        "DefaultTargetCapacityType": "spot",
    }
    assert fleet["SpotOptions"]["InstanceInterruptionBehavior"] == "terminate"
    assert tags.tag_dict(fleet["Tags"])[tags.RUN_ID] == "r1"
    (template,) = _templates(ready)
    assert template["LaunchTemplateId"] == launched.launch_template_id
    assert tags.tag_dict(template["Tags"]) == tags.run_tags("r1", "ann", "proj")
    data = _template_data(ready, launched.launch_template_id)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    (root,) = data["BlockDeviceMappings"]
    assert root["Ebs"]["Encrypted"] is True and root["Ebs"]["DeleteOnTermination"] is True
    assert data["IamInstanceProfile"] == {"Name": "runctl-instance"}
    assert data["SecurityGroupIds"] and data["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert base64.b64decode(data["UserData"]).decode() == "#!/bin/bash\necho boot\n"
    spec_tags = {t["ResourceType"]: tags.tag_dict(t["Tags"]) for t in data["TagSpecifications"]}
    assert spec_tags["instance"] == spec_tags["volume"] == tags.run_tags("r1", "ann", "proj")
    inst = ready.ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert tags.tag_dict(inst["Tags"])[tags.MANAGED] == "true"  # from the template, at launch
    assert ready.calls.get("ec2.CreateTags", 0) == 0  # nothing tagged after launch
    assert launched.facts()["persistent"] is True and launched.facts()["fleet_id"]


def test_the_fleet_may_refill_in_every_zone_then_with_each_fallback_type(ready):
    launched = provision(ready, _req(fallback=["t3.small", "on-demand"]))
    (fleet,) = _fleets(ready)
    (config,) = fleet["LaunchTemplateConfigs"]
    pairs = [(o["InstanceType"], o["SubnetId"]) for o in config["Overrides"]]
    subnets = ready.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"
    ]
    by_zone = [s["SubnetId"] for s in sorted(subnets, key=lambda s: s["AvailabilityZone"])]
    assert pairs == [("t3.micro", s) for s in by_zone] + [("t3.small", s) for s in by_zone]
    priorities = [o["Priority"] for o in config["Overrides"]]
    assert priorities == sorted(priorities)  # the type asked for first, then each fallback
    assert launched.instance_type == "t3.micro" and launched.availability_zone == "us-east-1a"


def test_fallback_on_demand_when_the_fleet_places_nothing(ready):
    _no_spot_capacity(ready)
    said: list[str] = []
    launched = provision(
        ready,
        _req(fallback=["on-demand"], fulfil_timeout=0.3),
        progress=lambda s, d: said.append(d),
    )
    assert launched.spot is False and launched.persistent is False
    assert launched.fleet_id is None and launched.spot_request_id is None
    inst = ready.ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0][
        "Instances"
    ][0]
    assert inst.get("InstanceLifecycle") != "spot"
    assert _fleets(ready) == [] and _templates(ready) == []
    assert _live_instances(ready) == [launched.instance_id]  # the fleet's late one ended too
    assert "no spot capacity after" in launched.tried[0]
    assert any(d.startswith("fell back to t3.micro") for d in said)


def test_no_capacity_anywhere_says_what_to_try_and_leaves_nothing(ready):
    _no_spot_capacity(ready)
    with pytest.raises(NoCapacity, match="--fallback"):
        provision(ready, _req(fallback=["t3.small"], fulfil_timeout=0.3))
    assert _fleets(ready) == [] and _templates(ready) == [] and _live_instances(ready) == []


def test_an_unknown_fallback_type_is_refused_before_anything_is_created(ready):
    with pytest.raises(InvalidInstanceType, match="t3.smal"):
        provision(ready, _req(fallback=["t3.smal"]))
    assert ready.calls.get("ec2.CreateFleet", 0) == 0
    assert ready.calls.get("ec2.CreateLaunchTemplate", 0) == 0


def test_a_run_with_a_volume_gets_its_replacements_only_in_the_volume_zone(ready, data_volume):
    vol = data_volume(ready, "us-east-1c", 1)
    launched = provision(ready, _req(volume=vol, fallback=["t3.small"]))
    (fleet,) = _fleets(ready)
    overrides = fleet["LaunchTemplateConfigs"][0]["Overrides"]
    zones = {
        s["AvailabilityZone"]
        for s in ready.ec2.describe_subnets(SubnetIds=sorted({o["SubnetId"] for o in overrides}))[
            "Subnets"
        ]
    }
    assert zones == {"us-east-1c"} == {launched.availability_zone}
    assert [o["InstanceType"] for o in overrides] == ["t3.micro", "t3.small"]


def test_a_replacement_attaches_the_volume_once_the_old_instance_let_it_go(ready, data_volume):
    vol = data_volume(ready, "us-east-1a", 1)
    new = ready.ec2.run_instances(
        ImageId=ready.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": "us-east-1a"},
        TagSpecifications=[  # a replacement is managed (its template tags it)
            {"ResourceType": "instance", "Tags": [{"Key": "runctl:managed", "Value": "true"}]}
        ],
    )["Instances"][0]["InstanceId"]
    attach_volume(ready.ec2, vol, new, timeout=5)
    vol_now = ready.ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]
    assert [a["InstanceId"] for a in vol_now["Attachments"]] == [new]
    attach_volume(ready.ec2, vol, new, timeout=5)  # again (a rerun boot): nothing to do


def test_resources_list_the_fleet_and_template_and_cleanup_deletes_them_before_the_instance(
    ready,
):
    launched = provision(ready, _req())
    found = resources.list_resources(ready)
    (fleet,) = [r for r in found if r.kind == "fleet"]
    (template,) = [r for r in found if r.kind == "launch-template"]
    assert fleet.id == launched.fleet_id and fleet.run_id == "r1"
    assert template.id == launched.launch_template_id and template.run_id == "r1"
    orphans = resources.orphans(found, lambda run_id: "failed", owner="ann")
    done = resources.cleanup(ready, orphans)
    kinds = [r.kind for r, ok, _ in done if ok]
    assert kinds.index("fleet") < kinds.index("instance")  # no refill in between
    assert "launch-template" in kinds
    assert _fleets(ready) == [] and _templates(ready) == [] and _live_instances(ready) == []


def test_ending_a_launch_also_ends_an_instance_the_fleet_refilled(ready):
    from moto.ec2.models import ec2_backends

    launched = provision(ready, _req())
    backend = ec2_backends["123456789012"]["us-east-1"]
    backend.terminate_instances([launched.instance_id])
    backend.fleets[launched.fleet_id].create_spot_requests(1)  # AWS refilled it meanwhile
    (refill,) = _live_instances(ready)
    ended = terminate_launched(ready, launched)
    assert refill in ended and launched.fleet_id in ended
    assert launched.launch_template_id in ended
    assert _live_instances(ready) == [] and _fleets(ready) == [] and _templates(ready) == []


def _actions(doc: dict) -> set[str]:
    out: set[str] = set()
    for statement in doc["Statement"]:
        action = statement["Action"]
        out.update(action if isinstance(action, list) else [action])
    return out


def test_the_user_policy_allows_every_ec2_call_a_spot_launch_and_its_end_make(ready):
    from runctl_jupyter.aws.user_policy import user_policy

    ready.calls.clear()
    spot = provision(ready, _req(run_id="r2"))
    terminate_launched(ready, spot)
    _no_spot_capacity(ready)
    launched = provision(ready, _req(fallback=["on-demand"], fulfil_timeout=0.3))
    terminate_launched(ready, launched)
    used = {"ec2:" + op.split(".", 1)[1] for op in ready.calls if op.startswith("ec2.")}
    assert {
        "ec2:CreateLaunchTemplate",
        "ec2:CreateFleet",
        "ec2:DescribeFleetInstances",
        "ec2:DeleteFleets",
        "ec2:DeleteLaunchTemplate",
        "ec2:RunInstances",
    } <= used
    assert used <= _actions(user_policy("123456789012", "us-east-1"))


def _grants(doc: dict, action: str) -> list[dict]:
    return [
        s
        for s in doc["Statement"]
        if action in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])
    ]


def test_no_policy_lets_anyone_tag_an_untagged_resource():
    """CreateTags only on runctl-managed resources or as part of a tagged create: never a
    RequestTag-only grant that could mark any untagged instance as managed."""
    from runctl_jupyter.aws import policy
    from runctl_jupyter.aws.user_policy import user_policy

    assert _grants(policy.instance_policy("b"), "ec2:CreateTags") == []
    for statement in _grants(user_policy("1", "us-east-1"), "ec2:CreateTags"):
        condition = statement["Condition"]["StringEquals"]
        assert set(condition) in (
            {"ec2:CreateAction"},
            {f"aws:ResourceTag/{tags.MANAGED}"},
        ), statement["Sid"]


def test_the_fleet_and_template_actions_are_scoped_by_the_managed_tag():
    from runctl_jupyter.aws import policy
    from runctl_jupyter.aws.user_policy import user_policy

    user = user_policy("1", "us-east-1")
    for action in ("ec2:CreateLaunchTemplate", "ec2:DeleteFleets", "ec2:DeleteLaunchTemplate"):
        for statement in _grants(user, action):
            keys = set(statement["Condition"]["StringEquals"])
            assert keys & {
                f"aws:RequestTag/{tags.MANAGED}",
                f"aws:ResourceTag/{tags.MANAGED}",
            }, (action, statement["Sid"])
    create = _grants(user, "ec2:CreateFleet")
    tagged = [s for s in create if "Condition" in s]
    assert any(
        s["Condition"]["StringEquals"] == {f"aws:RequestTag/{tags.MANAGED}": "true"}
        and "arn:aws:ec2:us-east-1:1:fleet/*" in s["Resource"]
        for s in tagged
    )
    run_grants = _grants(policy.run_policy("b"), "ec2:DeleteFleets")
    assert run_grants and not _grants(policy.instance_policy("b"), "ec2:DeleteFleets")
    for statement in run_grants:  # a run's role: its own run's fleet only
        assert statement["Condition"]["StringEquals"] == {
            f"aws:ResourceTag/{tags.MANAGED}": "true",
            f"aws:ResourceTag/{tags.RUN_ID}": policy.OWN_RUN,
        }


def test_the_instance_policy_allows_every_ec2_call_of_the_instance_side():
    import re
    from pathlib import Path

    import runctl_jupyter
    from runctl_jupyter.aws import policy

    pkg = Path(runctl_jupyter.__file__).resolve().parent
    calls = set()
    for module in ("agent/boot.py", "agent/service.py"):
        calls |= set(re.findall(r"\bec2\.(\w+)\(", (pkg / module).read_text()))
    assert {"delete_fleets", "delete_launch_template", "attach_volume"} <= calls
    assert "terminate_instances" in calls and "create_tags" not in calls
    allowed = _actions(policy.run_policy("b"))  # the role of a run's own instances
    for call in calls:
        action = "ec2:" + "".join(part.title() for part in call.split("_"))
        assert action in allowed, action
