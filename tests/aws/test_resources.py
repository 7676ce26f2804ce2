"""resources / orphans / cleanup: only managed, unkept resources of finished or unknown runs."""

from __future__ import annotations

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.resources import cleanup, list_resources, orphans, table
from runctl_jupyter.aws.setup import setup

STATUS = {"active": "running", "done": "succeeded", "failed": "failed"}


def _instance(aws: Clients, **t: str) -> str:
    spec = [{"ResourceType": "instance", "Tags": tags.tag_list(t)}] if t else []
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=spec,
    )["Instances"][0]["InstanceId"]


def _managed(run: str, owner: str = "ann", **extra: str) -> dict:
    return tags.run_tags(run, owner, "proj", **extra)


def _state(aws: Clients, instance_id: str) -> str:
    return aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
        "State"
    ]["Name"]


def test_orphans_are_managed_unkept_resources_of_ended_or_unknown_runs(aws: Clients):
    setup(aws)  # its security group is managed but role=setup: never an orphan
    active = _instance(aws, **_managed("active"))
    done = _instance(aws, **_managed("done"))
    unknown = _instance(aws, **_managed("gone-run"))
    kept = _instance(aws, **_managed("done", **{tags.KEEP: "true"}))
    other = _instance(aws, **_managed("done", owner="bob"))
    untagged = _instance(aws)
    vol = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=5,
        TagSpecifications=[{"ResourceType": "volume", "Tags": tags.tag_list(_managed("failed"))}],
    )["VolumeId"]
    data_vol = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=5,
        TagSpecifications=[
            {
                "ResourceType": "volume",
                "Tags": tags.tag_list(_managed("failed", **{tags.PERSISTENT: "true"})),
            }
        ],
    )["VolumeId"]

    found = list_resources(aws)
    ids = {r.id for r in found}
    assert {active, done, unknown, kept, other, vol, data_vol} <= ids
    assert untagged not in ids
    assert any(r.kind == "security-group" and r.tags.get(tags.ROLE) == "setup" for r in found)

    mine = {r.id for r in orphans(found, STATUS.get, owner="ann")}
    assert mine == {done, unknown, vol}
    everyone = {r.id for r in orphans(found, STATUS.get, owner="ann", all_owners=True)}
    assert everyone == {done, unknown, vol, other}
    assert "run_status" in table(found)


def test_cleanup_deletes_exactly_the_orphans(aws: Clients):
    active = _instance(aws, **_managed("active"))
    done = _instance(aws, **_managed("done"))
    untagged = _instance(aws)
    results = cleanup(aws, orphans(list_resources(aws), STATUS.get, owner="ann"))
    assert [(r.id, ok) for r, ok, _ in results] == [(done, True)]
    assert _state(aws, done) in ("shutting-down", "terminated")
    assert _state(aws, active) == "running" and _state(aws, untagged) == "running"
    assert all(r.id != done for r in orphans(list_resources(aws), STATUS.get, owner="ann"))


def test_cleanup_refuses_a_kept_resource_even_if_asked(aws: Clients):
    kept = _instance(aws, **_managed("done", **{tags.PROTECTED: "true"}))
    resource = next(r for r in list_resources(aws) if r.id == kept)
    [(_, ok, message)] = cleanup(aws, [resource])
    assert not ok and "left alone" in message
    assert _state(aws, kept) == "running"
