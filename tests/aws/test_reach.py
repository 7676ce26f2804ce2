"""Who can reach what (docs/aws.md): each principal's requests, sent for real to moto and
judged by the strict layer's IAM evaluation (strict_iam.py) against the policies stored
in moto and the resources' real tags, never by reading our own JSON.

- the user (`runctl aws policy`) attaches and detaches only volumes opted in with
  `runctl:managed=true`;
- an instance of run A (its own role `runctl-run-A`) reads and writes `runs/A/` only,
  stops or terminates only run A's instances (node 0 ends its peers), attaches only run
  A's opted-in volume; nothing of run B;
- a kept instance (the shared role) ends and attaches nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import strict_aws
import strict_iam
from botocore.exceptions import ClientError

from runctl_jupyter.aws import policy, run_role, tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.launch import LaunchError, LaunchRequest, provision
from runctl_jupyter.aws.resources import cleanup, list_resources, orphans
from runctl_jupyter.aws.setup import setup

AZ = "us-east-1a"


@pytest.fixture
def ready(aws: Clients) -> Clients:
    setup(aws)
    return aws


def _subnet(aws: Clients) -> str:
    subnets = aws.ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [AZ]}])
    return subnets["Subnets"][0]["SubnetId"]


def _instance(aws: Clients, run_id: str | None, profile: str | None = None, **extra: str) -> str:
    """An instance as runctl launches one: the run's tags (none: an unmanaged one)."""
    kwargs: dict[str, Any] = {
        "ImageId": aws.test_amis["al2023-x86"],
        "InstanceType": "t3.micro",
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": _subnet(aws),
    }
    if profile:
        kwargs["IamInstanceProfile"] = {"Name": profile}
    if run_id:
        run_tags = tags.tag_list(tags.run_tags(run_id, "ann", "p", **extra))
        kwargs["TagSpecifications"] = [{"ResourceType": "instance", "Tags": run_tags}]
    return aws.ec2.run_instances(**kwargs)["Instances"][0]["InstanceId"]


def _run_instance(aws: Clients, bucket: str, run_id: str) -> str:
    """An instance of `run_id` under the run's own role, as the backend launches one."""
    profile = run_role.create(aws, tags.run_tags(run_id, "ann", "p"), bucket)
    return _instance(aws, run_id, profile)


def _volume(aws: Clients, **volume_tags: str) -> str:
    spec = [{"ResourceType": "volume", "Tags": tags.tag_list(volume_tags)}] if volume_tags else []
    return aws.ec2.create_volume(AvailabilityZone=AZ, Size=1, TagSpecifications=spec)["VolumeId"]


def _opted_in(aws: Clients, run_id: str) -> str:
    return _volume(aws, **{tags.MANAGED: "true", tags.PERSISTENT: "true", tags.VOLUME_RUN: run_id})


def _as_instance(aws: Clients, instance_id: str, service: str) -> Any:
    """A client signed as `instance_id` (its role's session), as the instance player's."""
    key = strict_iam.instance_key(instance_id)
    strict_aws.INSTANCE_KEYS[key] = instance_id
    return boto3.client(
        service,
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key="testing",
    )


def _refused(call: Any, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def _state(aws: Clients, instance_id: str) -> str:
    found = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return found["Instances"][0]["State"]["Name"]


# -- the user: volumes --------------------------------------------------------------------


def test_the_user_attaches_an_opted_in_volume_and_never_an_unmanaged_one(ready: Clients):
    instance = _instance(ready, "r1")
    unmanaged = _volume(ready)
    _refused(
        lambda: ready.ec2.attach_volume(VolumeId=unmanaged, InstanceId=instance, Device="/dev/sdf"),
        "UnauthorizedOperation",
    )
    assert ready.ec2.describe_volumes(VolumeIds=[unmanaged])["Volumes"][0]["State"] == "available"
    managed = _volume(ready, **{tags.MANAGED: "true", tags.PERSISTENT: "true"})
    ready.ec2.attach_volume(VolumeId=managed, InstanceId=instance, Device="/dev/sdf")
    ready.ec2.detach_volume(VolumeId=managed, InstanceId=instance)
    # nor to an instance runctl does not manage
    other = _instance(ready, None)
    _refused(
        lambda: ready.ec2.attach_volume(VolumeId=managed, InstanceId=other, Device="/dev/sdg"),
        "UnauthorizedOperation",
    )


def test_a_launch_with_an_unmanaged_volume_is_refused_in_one_line_before_anything(
    ready: Clients,
):
    unmanaged = _volume(ready)
    req = LaunchRequest(run_id="r1", owner="ann", project="p", volume=unmanaged, poll=0.05)
    with pytest.raises(LaunchError) as caught:
        provision(ready, req)
    message = str(caught.value)
    assert "\n" not in message and f"--resources {unmanaged}" in message
    assert "runctl:managed,Value=true" in message and "runctl:persistent,Value=true" in message
    assert ready.calls.get("ec2.RunInstances", 0) == 0
    assert ready.calls.get("ec2.CreateFleet", 0) == 0


def test_a_launch_marks_its_volume_as_the_runs(ready: Clients, data_volume):
    volume = data_volume(ready, AZ)
    provision(ready, LaunchRequest(run_id="r7", owner="ann", project="p", volume=volume, poll=0.05))
    found = ready.ec2.describe_volumes(VolumeIds=[volume])["Volumes"][0]
    assert tags.tag_dict(found["Tags"])[tags.VOLUME_RUN] == "r7"


# -- an instance of run A -------------------------------------------------------------------


def test_a_runs_instance_reaches_its_own_prefix_and_not_another_runs(ready: Clients):
    bucket = policy.bucket_name("123456789012", ready.region)
    instance_a = _run_instance(ready, bucket, "runa")
    ready.s3.put_object(Bucket=bucket, Key="runctl/runs/runb/events/000001.jsonl", Body=b"b\n")
    s3 = _as_instance(ready, instance_a, "s3")
    s3.put_object(Bucket=bucket, Key="runctl/runs/runa/events/000001.jsonl", Body=b"a\n")
    assert s3.get_object(Bucket=bucket, Key="runctl/runs/runa/events/000001.jsonl")["Body"].read()
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="runctl/runs/runa/events/")
    assert [o["Key"] for o in listed["Contents"]] == ["runctl/runs/runa/events/000001.jsonl"]
    for call in (
        lambda: s3.get_object(Bucket=bucket, Key="runctl/runs/runb/events/000001.jsonl"),
        lambda: s3.put_object(Bucket=bucket, Key="runctl/runs/runb/events/000002.jsonl", Body=b"x"),
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix="runctl/runs/runb/"),
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix="runctl/runs/"),  # every run's
        lambda: s3.put_object(Bucket=bucket, Key="runctl/runs/runa-other/x", Body=b"x"),
    ):
        _refused(call, "AccessDenied")
    # what run B has is untouched
    body = ready.s3.get_object(Bucket=bucket, Key="runctl/runs/runb/events/000001.jsonl")["Body"]
    assert body.read() == b"b\n"
    assert ready.s3.list_objects_v2(Bucket=bucket, Prefix="runctl/runs/runb/")["KeyCount"] == 1


def test_a_runs_instance_ends_its_own_runs_instances_and_no_other(ready: Clients):
    bucket = policy.bucket_name("123456789012", ready.region)
    node0 = _run_instance(ready, bucket, "runa")
    node1 = _instance(ready, "runa", run_role.name("runa"))  # a multi-node run's peer
    other_run = _run_instance(ready, bucket, "runb")
    unmanaged = _instance(ready, None)
    ec2 = _as_instance(ready, node0, "ec2")
    _refused(lambda: ec2.terminate_instances(InstanceIds=[other_run]), "UnauthorizedOperation")
    _refused(lambda: ec2.stop_instances(InstanceIds=[other_run]), "UnauthorizedOperation")
    _refused(lambda: ec2.terminate_instances(InstanceIds=[unmanaged]), "UnauthorizedOperation")
    # one forbidden id in the request: nothing of it is done
    _refused(
        lambda: ec2.terminate_instances(InstanceIds=[node1, other_run]), "UnauthorizedOperation"
    )
    assert _state(ready, other_run) == _state(ready, unmanaged) == _state(ready, node1) == "running"
    ec2.terminate_instances(InstanceIds=[node1, node0])  # node 0 ends every node of its run
    assert {_state(ready, node0), _state(ready, node1)} <= {"shutting-down", "terminated"}


def test_a_runs_instance_attaches_only_its_runs_opted_in_volume(ready: Clients):
    bucket = policy.bucket_name("123456789012", ready.region)
    replacement = _run_instance(ready, bucket, "runa")
    other_run = _run_instance(ready, bucket, "runb")
    own, others, unmanaged = _opted_in(ready, "runa"), _opted_in(ready, "runb"), _volume(ready)
    ec2 = _as_instance(ready, replacement, "ec2")
    for volume in (unmanaged, others):
        _refused(
            lambda v=volume: ec2.attach_volume(
                VolumeId=v, InstanceId=replacement, Device="/dev/sdf"
            ),
            "UnauthorizedOperation",
        )
    # its own run's volume, but onto another run's instance: no
    _refused(
        lambda: ec2.attach_volume(VolumeId=own, InstanceId=other_run, Device="/dev/sdf"),
        "UnauthorizedOperation",
    )
    ec2.attach_volume(VolumeId=own, InstanceId=replacement, Device="/dev/sdf")
    attached = ready.ec2.describe_volumes(VolumeIds=[own])["Volumes"][0]["Attachments"]
    assert [a["InstanceId"] for a in attached] == [replacement]


def test_a_kept_instance_under_the_shared_role_ends_and_attaches_nothing(ready: Clients):
    kept = _instance(ready, "runk", policy.PROFILE_NAME, **{tags.KEEP: "true"})
    peer = _instance(ready, "runk")
    ec2 = _as_instance(ready, kept, "ec2")
    _refused(lambda: ec2.terminate_instances(InstanceIds=[peer]), "UnauthorizedOperation")
    _refused(lambda: ec2.terminate_instances(InstanceIds=[kept]), "UnauthorizedOperation")
    volume = _opted_in(ready, "runk")
    _refused(
        lambda: ec2.attach_volume(VolumeId=volume, InstanceId=kept, Device="/dev/sdf"),
        "UnauthorizedOperation",
    )
    assert ec2.describe_instances(InstanceIds=[peer])["Reservations"]  # reading: yes


# -- run roles: made, waited for, deleted ------------------------------------------------------


def _run_roles(aws: Clients) -> list[str]:
    names = [r["RoleName"] for r in aws.iam.list_roles()["Roles"]]
    return sorted(n for n in names if n.startswith(run_role.PREFIX))


def _run_profiles(aws: Clients) -> list[str]:
    names = [p["InstanceProfileName"] for p in aws.iam.list_instance_profiles()["InstanceProfiles"]]
    return sorted(n for n in names if n.startswith(run_role.PREFIX))


def test_a_just_made_run_profile_is_retried_until_ec2_knows_it(ready: Clients):
    bucket = policy.bucket_name("123456789012", ready.region)
    profile = run_role.create(ready, tags.run_tags("runp", "ann", "p"), bucket)
    strict_aws.PROFILE_PROPAGATION["seconds"] = 1.5
    req = LaunchRequest(
        run_id="runp",
        owner="ann",
        project="p",
        spot=False,
        instance_profile=profile,
        poll=0.05,
        ssm_timeout=5,
    )
    launched = provision(ready, req)
    assert ready.calls["ec2.RunInstances"] >= 2  # refused while IAM propagates, then launched
    assert ("instance_profile_propagated", "RunInstances") in [r[:2] for r in strict_aws.REFUSED]
    assert _state(ready, launched.instance_id) in ("pending", "running")


def test_a_failed_launch_deletes_the_runs_role(ready: Clients, tmp_path: Path, fail):
    from test_backend import _launchable

    from runctl_jupyter.backends.aws import AWSBackend

    run_dir, spec = _launchable(tmp_path)
    made_before = ready.calls.get("iam.CreateRole", 0)
    fail(ready, "ssm.SendCommand", code="InjectedFailure")
    with pytest.raises(Exception, match="InjectedFailure"):
        AWSBackend(clients=ready, aws_poll=0.05).start(run_dir, spec, attempt=1)
    assert ready.calls["iam.CreateRole"] == made_before + 1  # the run had its own role
    assert ready.calls.get("iam.DeleteRole") == 1  # and it is gone
    assert _run_roles(ready) == []
    assert _run_profiles(ready) == []


def test_a_failed_later_attempt_keeps_the_role_an_earlier_attempt_made(
    ready: Clients, tmp_path: Path, fail
):
    from test_backend import _launchable

    from runctl_jupyter.backends.aws import AWSBackend

    run_dir, spec = _launchable(tmp_path)
    bucket = policy.bucket_name("123456789012", ready.region)
    run_role.create(ready, tags.run_tags(spec["run_id"], "ann", "p"), bucket)  # attempt 1's
    fail(ready, "ssm.SendCommand", code="InjectedFailure")
    with pytest.raises(Exception, match="InjectedFailure"):
        AWSBackend(clients=ready, aws_poll=0.05).start(run_dir, spec, attempt=2)
    assert _run_roles(ready) == [run_role.name(spec["run_id"])]
    assert _run_profiles(ready) == [run_role.name(spec["run_id"])]


def test_cleanup_deletes_the_role_of_a_run_that_is_over_and_keeps_an_active_runs(
    ready: Clients,
):
    bucket = policy.bucket_name("123456789012", ready.region)
    for run_id in ("over", "active"):
        run_role.create(ready, tags.run_tags(run_id, "ann", "p"), bucket)
    listing = list_resources(ready)
    roles = sorted(r.id for r in listing if r.kind == "role")
    assert roles == [run_role.name("active"), run_role.name("over")]
    status = {"over": "succeeded", "active": "running"}.get
    found = [r for r in orphans(listing, status, owner="ann") if r.kind == "role"]
    assert [r.id for r in found] == [run_role.name("over")]
    assert [ok for _, ok, _ in cleanup(ready, found)] == [True]
    assert _run_roles(ready) == [run_role.name("active")]
    assert _run_profiles(ready) == [run_role.name("active")]


def test_an_admins_data_policy_reaches_every_run_role_made_after_it(ready: Clients):
    import json

    bucket = policy.bucket_name("123456789012", ready.region)
    ready.s3.create_bucket(Bucket="team-data")
    ready.s3.put_object(Bucket="team-data", Key="digits/train.npy", Body=b"x")
    before = _run_instance(ready, bucket, "runx")  # no data policy yet
    read = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::team-data/*"}
        ],
    }
    ready.iam.create_policy(
        PolicyName=run_role.DATA_POLICY, Path=run_role.PATH, PolicyDocument=json.dumps(read)
    )
    after = _run_instance(ready, bucket, "runy")
    body = _as_instance(ready, after, "s3").get_object(Bucket="team-data", Key="digits/train.npy")
    assert body["Body"].read() == b"x"
    _refused(
        lambda: _as_instance(ready, before, "s3").get_object(
            Bucket="team-data", Key="digits/train.npy"
        ),
        "AccessDenied",
    )


def test_a_run_role_without_the_run_policy_says_to_run_setup_and_leaves_nothing(ready: Clients):
    from runctl_jupyter.aws.clients import AWSError

    bucket = policy.bucket_name("123456789012", ready.region)
    ready.iam.delete_policy(PolicyArn=run_role.policy_arn("123456789012", bucket))  # set up before
    with pytest.raises(AWSError) as caught:
        run_role.create(ready, tags.run_tags("runz", "ann", "p"), bucket)
    assert "\n" not in str(caught.value) and "run `runctl aws setup`" in str(caught.value)
    assert _run_roles(ready) == [] and _run_profiles(ready) == []
