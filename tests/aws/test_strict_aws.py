"""The strict AWS layer (strict_aws.py): each rule refuses, with AWS's code and HTTP status,
a request that moto alone accepts; valid requests pass through every rule.

Direct boto3 calls against the real moto server (no instance player): a few seconds."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any

import pytest
import strict_aws
import strict_iam
from botocore.exceptions import ClientError

REGION = "us-east-1"


@pytest.fixture(scope="module")
def account(moto_server: str) -> Any:
    """One clean moto account for the whole file (each case names its own resources):
    a reset per test would cost most of this file's time."""
    import urllib.request

    from runctl_jupyter.aws.clients import Clients

    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(req).read()
    strict_aws.reset()  # and the fixture's placement groups, which moto does not have
    clients = Clients(region=REGION)
    clients.test_amis = {  # type: ignore[attr-defined]
        "al2023-x86": clients.ec2.register_image(
            Name="al2023-x86",
            Architecture="x86_64",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
        )["ImageId"]
    }
    return clients


_serial = count(1)


def _ami(aws: Any) -> str:
    return aws.test_amis["al2023-x86"]


def _subnets(aws: Any) -> dict[str, str]:
    """AZ -> a default subnet there."""
    subnets = aws.ec2.describe_subnets()["Subnets"]
    return {
        s["AvailabilityZone"]: s["SubnetId"]
        for s in sorted(subnets, key=lambda s: s["AvailabilityZone"])
    }


def _run(aws: Any, **kw: Any) -> dict:
    args = {"ImageId": _ami(aws), "MinCount": 1, "MaxCount": 1, "InstanceType": "t3.micro"}
    args.update(kw)
    return aws.ec2.run_instances(**args)


def _spot(kind: str = "one-time", behaviour: str = "terminate") -> dict:
    return {
        "MarketType": "spot",
        "SpotOptions": {"SpotInstanceType": kind, "InstanceInterruptionBehavior": behaviour},
    }


def _volume(aws: Any, az: str = "us-east-1a") -> str:
    return aws.ec2.create_volume(AvailabilityZone=az, Size=1)["VolumeId"]


def _cluster_group(aws: Any, name: str | None = None) -> str:
    name = name or f"runctl-pg-{next(_serial)}"
    aws.ec2.create_placement_group(GroupName=name, Strategy="cluster")
    return name


def _template(aws: Any, name: str | None = None, **data: Any) -> str:
    name = name or f"runctl-lt-{next(_serial)}"
    body = {"ImageId": _ami(aws), "InstanceType": "t3.micro", **data}
    with strict_aws.off():
        return aws.ec2.create_launch_template(LaunchTemplateName=name, LaunchTemplateData=body)[
            "LaunchTemplate"
        ]["LaunchTemplateId"]


def _tags(n: int, key_len: int = 5, value_len: int = 5) -> list[dict]:
    return [{"Key": f"k{i}".ljust(key_len, "k"), "Value": "v" * value_len} for i in range(n)]


def _on_volume(tags: list[dict]) -> dict:
    return {"TagSpecifications": [{"ResourceType": "volume", "Tags": tags}]}


def _trust(service: str) -> str:
    principal = {"Service": service}  # `scheduler`: not a service principal's full name
    statement = {"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _schedule(aws: Any, **kw: Any) -> dict:
    """A valid CreateSchedule (each case changes one field), under a new name."""
    args: dict[str, Any] = {
        "Name": f"runctl-case-{next(_serial)}",
        "ScheduleExpression": "cron(0 3 ? * MON *)",
        "ScheduleExpressionTimezone": "Europe/Paris",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": "arn:aws:scheduler:::aws-sdk:ec2:runInstances",
            "RoleArn": "arn:aws:iam::123456789012:role/runctl/runctl-scheduler",
            "Input": "{}",
        },
    }
    args.update(kw)
    return aws.client("scheduler").create_schedule(**args)


def _iam_user_client(aws: Any, service: str) -> Any:
    """A client signed with the access key of a new IAM user with no policy at all."""
    import boto3

    name = f"nobody-{next(_serial)}"
    aws.iam.create_user(UserName=name)
    key = aws.iam.create_access_key(UserName=name)["AccessKey"]
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )


_AUTOMATION = "arn:aws:ssm:us-east-1:123456789012:automation-definition/runctl-x-data:$DEFAULT"
_EVENTS_ROLE = "arn:aws:iam::123456789012:role/runctl/runctl-events"


def _targets(aws: Any, **kw: Any) -> dict:
    """A valid PutTargets (each case changes one field) on a rule made here."""
    events = aws.client("events")
    events.put_rule(Name="runctl-case-data", EventPattern=json.dumps({"source": ["aws.s3"]}))
    target: dict[str, Any] = {"Id": "settle", "Arn": _AUTOMATION, "RoleArn": _EVENTS_ROLE}
    target.update(kw)
    return events.put_targets(Rule="runctl-case-data", Targets=[target])


def _document(aws: Any, **kw: Any) -> dict:
    """A valid CreateDocument of an Automation runbook, under a new name."""
    content = {
        "schemaVersion": "0.3",
        "mainSteps": [{"name": "s", "action": "aws:sleep", "inputs": {"Duration": "PT1S"}}],
    }
    args: dict[str, Any] = {
        "Name": f"runctl-case-{next(_serial)}-data",
        "Content": json.dumps(content),
        "DocumentType": "Automation",
        "DocumentFormat": "JSON",
    }
    args.update(kw)
    return aws.ssm.create_document(**args)


def _queue(aws: Any) -> str:
    url = aws.client("sqs").create_queue(QueueName="runctl-case-queue")["QueueUrl"]
    return aws.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]


def _notify(aws: Any, ctx: Any, *filters: tuple[str, str]) -> Any:
    """PutBucketNotificationConfiguration: one queue destination per (prefix, suffix)."""
    aws.s3.create_bucket(Bucket="runctl-case-notify")
    configs = [
        {
            "Id": f"q{i}",
            "QueueArn": ctx,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {
                "Key": {
                    "FilterRules": [
                        {"Name": n, "Value": v}
                        for n, v in (("prefix", prefix), ("suffix", suffix))
                        if v
                    ]
                }
            },
        }
        for i, (prefix, suffix) in enumerate(filters)
    ]
    config = {"EventBridgeConfiguration": {}, "QueueConfigurations": configs}
    return aws.s3.put_bucket_notification_configuration(
        Bucket="runctl-case-notify", NotificationConfiguration=config
    )


@dataclass
class Case:
    rule: str
    code: str
    call: Callable[[Any, Any], Any]  # (clients, setup) -> the request
    setup: Callable[[Any], Any] = lambda aws: None
    status: int = 400


def _second_az_launch(aws: Any, ctx: dict) -> Any:
    return _run(
        aws,
        InstanceType="c5n.18xlarge",
        Placement={"GroupName": ctx["group"]},
        SubnetId=ctx["subnets"][1],
    )


def _cluster_first_member(aws: Any) -> dict:
    group = _cluster_group(aws)
    subnets = list(_subnets(aws).values())
    _run(aws, InstanceType="c5n.18xlarge", Placement={"GroupName": group}, SubnetId=subnets[0])
    return {"group": group, "subnets": subnets}


def _other_profile(aws: Any) -> str:
    aws.iam.create_role(RoleName="someone-elses-role", AssumeRolePolicyDocument="{}")
    aws.iam.create_instance_profile(InstanceProfileName="someone-elses-profile")
    aws.iam.add_role_to_instance_profile(
        InstanceProfileName="someone-elses-profile", RoleName="someone-elses-role"
    )
    return "someone-elses-profile"


def _run_profile(aws: Any) -> str:
    """A run role's profile (a role runctl's user may pass), just made."""
    name = f"runctl-run-strict{next(_serial)}"
    aws.iam.create_role(RoleName=name, Path="/runctl/", AssumeRolePolicyDocument="{}")
    aws.iam.create_instance_profile(InstanceProfileName=name, Path="/runctl/")
    aws.iam.add_role_to_instance_profile(InstanceProfileName=name, RoleName=name)
    return name


def _launch_young_profile(aws: Any, profile: str) -> Any:
    """RunInstances while IAM has not propagated the profile (played for an hour here)."""
    strict_aws.PROFILE_PROPAGATION["seconds"] = 3600.0
    try:
        return _run(aws, IamInstanceProfile={"Name": profile})
    finally:
        strict_aws.PROFILE_PROPAGATION["seconds"] = 0.0


def _attach(aws: Any, ctx: dict) -> Any:
    return aws.ec2.attach_volume(
        VolumeId=ctx["volume"], InstanceId=ctx["instance"], Device="/dev/sdf"
    )


def _attached_setup(aws: Any) -> dict:
    """A gp3 volume attached to one instance, and a second instance in its AZ."""
    subnets = _subnets(aws)
    managed = [{"Key": "runctl:managed", "Value": "true"}]  # the user may attach it
    first, second = (
        _run(
            aws,
            SubnetId=subnets["us-east-1a"],
            TagSpecifications=[{"ResourceType": "instance", "Tags": managed}],
        )["Instances"][0]["InstanceId"]
        for _ in range(2)
    )
    volume = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=1,
        VolumeType="gp3",
        TagSpecifications=[{"ResourceType": "volume", "Tags": managed}],
    )
    with strict_aws.off():
        aws.ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=first, Device="/dev/sdf")
    return {"instance": second, "volume": volume["VolumeId"]}


def _unmanaged_attach_setup(aws: Any) -> dict:
    """An untagged volume and an instance in its AZ: the user's policy attaches neither."""
    subnets = _subnets(aws)
    instance = _run(aws, SubnetId=subnets["us-east-1a"])["Instances"][0]["InstanceId"]
    return {"instance": instance, "volume": _volume(aws, "us-east-1a")}


def _attach_setup(aws: Any) -> dict:
    subnets = _subnets(aws)
    instance = _run(aws, SubnetId=subnets["us-east-1a"])["Instances"][0]["InstanceId"]
    return {"instance": instance, "volume": _volume(aws, "us-east-1b")}


def _managed_attach_setup(aws: Any) -> dict:
    """A managed volume and a managed instance in one AZ (attached by the user's policy)."""
    subnets = _subnets(aws)
    managed = [{"Key": "runctl:managed", "Value": "true"}]
    instance = _run(
        aws,
        SubnetId=subnets["us-east-1a"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": managed}],
    )["Instances"][0]["InstanceId"]
    volume = aws.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, **_on_volume(managed))
    return {"instance": instance, "volume": volume["VolumeId"]}


def _fleet(aws: Any, kind: str, behaviour: str, template: str | None = None) -> Any:
    template = template or _template(aws)
    return aws.ec2.create_fleet(
        Type=kind,
        LaunchTemplateConfigs=[
            {"LaunchTemplateSpecification": {"LaunchTemplateId": template, "Version": "$Latest"}}
        ],
        TargetCapacitySpecification={
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": "spot",
        },
        SpotOptions={
            "InstanceInterruptionBehavior": behaviour,
            "AllocationStrategy": "capacity-optimized-prioritized",
        },
    )


def _list_bucket(aws: Any) -> str:
    """A bucket to list (the team pull's ListObjectsV2 rules)."""
    with strict_aws.off():
        aws.s3.create_bucket(Bucket="runctl-strict-list")
    return "runctl-strict-list"


ECR_MANIFEST = json.dumps(
    {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
     "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1,
                "digest": "sha256:" + "0" * 64}, "layers": []}
)


def _ecr_repo(aws: Any) -> str:
    """A repository holding one image tagged `t` (DescribeImages' and the IAM rule's)."""
    name = f"strict-ecr-{next(_serial)}"
    with strict_aws.off():
        aws.client("ecr").create_repository(repositoryName=name)
        aws.client("ecr").put_image(repositoryName=name, imageManifest=ECR_MANIFEST, imageTag="t")
    return name


def _ecr_as_roleless_instance(aws: Any) -> Any:
    """An ECR client signed as an instance without a profile: no permission at all."""
    import boto3

    with strict_aws.off():
        instance_id = _run(aws)["Instances"][0]["InstanceId"]
    key = strict_iam.instance_key(instance_id)
    strict_aws.INSTANCE_KEYS[key] = instance_id
    return boto3.client(
        "ecr", region_name=aws.region, endpoint_url=aws.endpoint_url,
        aws_access_key_id=key, aws_secret_access_key="testing",
    )


CASES = [
    Case(
        "describe_volumes_filter_names",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.describe_volumes(Filters=[{"Name": "volume_id", "Values": ["x"]}]),
    ),
    Case(
        "create_volume_size_for_type",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a", Size=70000, VolumeType="gp3", Encrypted=True
        ),
    ),
    Case(
        "create_volume_placement",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a",
            Size=1,
            TagSpecifications=[{"ResourceType": "instance", "Tags": _tags(1)}],
        ),
    ),
    Case(
        "attach_volume_device_name",
        "InvalidParameterValue",
        lambda aws, ctx: aws.ec2.attach_volume(
            VolumeId=ctx["volume"], InstanceId=ctx["instance"], Device="/dev/data"
        ),
        setup=_managed_attach_setup,
    ),
    Case(
        "one_time_spot_shutdown_stop",
        "InvalidParameterCombination",
        lambda aws, _: _run(
            aws, InstanceMarketOptions=_spot(), InstanceInitiatedShutdownBehavior="stop"
        ),
    ),
    Case(
        "one_time_spot_interruption_stop",
        "InvalidParameterCombination",
        lambda aws, _: _run(aws, InstanceMarketOptions=_spot("one-time", "stop")),
    ),
    Case(
        "fleet_stop_needs_maintain",
        "InvalidParameterCombination",
        lambda aws, template: _fleet(aws, "instant", "stop", template),
        setup=_template,
    ),
    Case(
        "spot_stop_in_placement_group",
        "InvalidParameterCombination",
        lambda aws, group: _run(
            aws,
            InstanceType="c5n.18xlarge",
            InstanceMarketOptions=_spot("persistent", "stop"),
            Placement={"GroupName": group},
        ),
        setup=_cluster_group,
    ),
    Case(
        "instance_type_in_region",
        "InvalidParameterValue",
        lambda aws, _: _run(aws, InstanceType="g5.xlargee"),
    ),
    Case(
        "cluster_group_instance_type",
        "Unsupported",
        lambda aws, group: _run(aws, InstanceType="t3.micro", Placement={"GroupName": group}),
        setup=_cluster_group,
    ),
    Case(
        "cluster_group_one_az",
        "InvalidParameterCombination",
        _second_az_launch,
        setup=_cluster_first_member,
    ),
    Case(
        "efa_needs_supported_type",
        "Unsupported",
        lambda aws, subnet: _run(
            aws,
            NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet, "InterfaceType": "efa"}],
        ),
        setup=lambda aws: next(iter(_subnets(aws).values())),
    ),
    Case(
        "user_data_16kb",
        "InvalidParameterValue",
        lambda aws, _: _run(aws, UserData="#!/bin/sh\n" + "x" * (16 * 1024)),
    ),
    Case(
        "metadata_hop_limit",
        "InvalidParameterValue",
        lambda aws, _: _run(
            aws, MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 65}
        ),
    ),
    Case(
        "metadata_tokens_value",
        "InvalidParameterValue",
        lambda aws, _: _run(aws, MetadataOptions={"HttpTokens": "always"}),
    ),
    Case(
        "tag_key_aws_prefix",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a",
            Size=1,
            **_on_volume([{"Key": "aws:owner", "Value": "me"}]),
        ),
    ),
    Case(
        "tag_key_128",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a", Size=1, **_on_volume(_tags(1, key_len=129))
        ),
    ),
    Case(
        "tag_value_256",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a", Size=1, **_on_volume(_tags(1, value_len=257))
        ),
    ),
    Case(
        "tags_50_per_resource",
        "TagLimitExceeded",
        # moto counts a resource's own tags; a template's instance tags it does not
        lambda aws, _: aws.ec2.create_launch_template(
            LaunchTemplateName="runctl-tags",
            LaunchTemplateData={
                "ImageId": _ami(aws),
                "TagSpecifications": [{"ResourceType": "instance", "Tags": _tags(51)}],
            },
        ),
    ),
    Case(
        "launch_template_name",
        "InvalidLaunchTemplateName.MalformedException",
        lambda aws, _: aws.ec2.create_launch_template(
            LaunchTemplateName="runctl run:1", LaunchTemplateData={"ImageId": _ami(aws)}
        ),
    ),
    Case(
        "security_group_name",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_security_group(GroupName="sg-runctl", Description="ok"),
    ),
    Case(
        "security_group_description",
        "InvalidParameterValue",
        lambda aws, _: aws.ec2.create_security_group(
            GroupName="runctl-desc", Description="runctl's agents <no inbound>"
        ),
    ),
    Case(
        "attach_volume_same_az",
        "InvalidVolume.ZoneMismatch",
        _attach,
        setup=_attach_setup,
    ),
    Case(
        "attach_volume_in_use",
        "VolumeInUse",
        _attach,
        setup=_attached_setup,
    ),
    Case(
        "multi_attach_io_only",
        "InvalidParameterCombination",
        lambda aws, vol: aws.ec2.modify_volume(VolumeId=vol, MultiAttachEnabled=True),
        setup=lambda aws: aws.ec2.create_volume(
            AvailabilityZone="us-east-1a", Size=1, VolumeType="gp3"
        )["VolumeId"],
    ),
    Case(
        "pass_role_allowed",
        "UnauthorizedOperation",
        lambda aws, profile: _run(aws, IamInstanceProfile={"Name": profile}),
        setup=_other_profile,
        status=403,
    ),
    Case(
        "instance_profile_propagated",
        "InvalidParameterValue",
        _launch_young_profile,
        setup=_run_profile,
    ),
    Case(
        "iam_policy_name",
        "ValidationError",
        lambda aws, _: aws.iam.create_policy(
            PolicyName="p" * 129,
            PolicyDocument='{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", '
            '"Action": "s3:GetObject", "Resource": "*"}]}',
        ),
    ),
    Case(
        "iam_policy_allows",
        "UnauthorizedOperation",
        _attach,
        setup=_unmanaged_attach_setup,
        status=403,
    ),
    Case(
        "ecr_repository_name",
        "InvalidParameterException",
        lambda aws, _: aws.client("ecr").create_repository(repositoryName="x" * 257),
    ),
    Case(
        "ecr_repository_names",
        "InvalidParameterException",
        lambda aws, name: aws.client("ecr").describe_repositories(repositoryNames=[name] * 101),
        setup=_ecr_repo,
    ),
    Case(
        "ecr_image_ids",
        "InvalidParameterException",
        lambda aws, name: aws.client("ecr").describe_images(
            repositoryName=name, imageIds=[{"imageTag": "t"}] * 101
        ),
        setup=_ecr_repo,
    ),
    Case(
        "ecr_create_encryption",
        "InvalidParameterException",
        lambda aws, name: aws.client("ecr").create_repository(
            repositoryName=name,
            encryptionConfiguration={"encryptionType": "AES256", "kmsKey": "k"},
        ),
        setup=lambda aws: f"strict-enc-{next(_serial)}",
    ),
    Case(
        "ecr_create_tags",
        "InvalidParameterException",
        lambda aws, name: aws.client("ecr").create_repository(
            repositoryName=name, tags=[{"Key": "k" * 129, "Value": "v"}]
        ),
        setup=lambda aws: f"strict-tags-{next(_serial)}",
    ),
    Case(
        "iam_policy_allows_ecr",
        "AccessDeniedException",
        lambda aws, ecr: ecr.get_authorization_token(),
        setup=_ecr_as_roleless_instance,
    ),
    Case(
        "iam_policy_allows_ssm",
        "AccessDeniedException",
        lambda aws, user: user.send_command(
            InstanceIds=["i-00000000000000001"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        ),
        setup=lambda aws: _iam_user_client(aws, "ssm"),
    ),
    Case(
        "iam_tag_characters",
        "ValidationError",
        lambda aws, name: aws.iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument="{}",
            Tags=[{"Key": "runctl:owner", "Value": "ann,bob"}],  # IAM takes no comma
        ),
        setup=lambda aws: f"runctl-tags-{next(_serial)}",
    ),
    Case(
        "iam_managed_policy_size",
        "LimitExceeded",
        lambda aws, name: aws.iam.create_policy(
            PolicyName=name,
            PolicyDocument='{"Version": "2012-10-17", "Statement": ['
            + ", ".join(
                f'{{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b{n:03}/*"}}'
                for n in range(120)
            )
            + "]}",
        ),
        setup=lambda aws: f"runctl-big-{next(_serial)}",
        status=409,
    ),
    Case(
        "iam_role_name",
        "ValidationError",
        lambda aws, _: aws.iam.create_role(RoleName="r" * 65, AssumeRolePolicyDocument="{}"),
    ),
    Case(
        "iam_instance_profile_name",
        "ValidationError",
        lambda aws, _: aws.iam.create_instance_profile(InstanceProfileName="p" * 129),
    ),
    Case(
        "iam_path",
        "ValidationError",
        lambda aws, _: aws.iam.create_role(
            RoleName="runctl-path", Path="runctl", AssumeRolePolicyDocument="{}"
        ),
    ),
    Case(
        "send_command_instance_ids",
        "ValidationException",
        lambda aws, _: aws.ssm.send_command(
            InstanceIds=[f"i-{n:017x}" for n in range(51)],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["true"]},
        ),
    ),
    Case(
        "send_command_comment",
        "ValidationException",
        lambda aws, _: aws.ssm.send_command(
            InstanceIds=["i-00000000000000001"],
            DocumentName="AWS-RunShellScript",
            Comment="c" * 101,
            Parameters={"commands": ["true"]},
        ),
    ),
    Case(
        "send_command_timeout",
        "ValidationException",
        lambda aws, _: aws.ssm.send_command(
            InstanceIds=["i-00000000000000001"],
            DocumentName="AWS-RunShellScript",
            TimeoutSeconds=2592001,
            Parameters={"commands": ["true"]},
        ),
    ),
    Case(
        "send_command_document_size",
        "MaxDocumentSizeExceeded",
        lambda aws, _: aws.ssm.send_command(
            InstanceIds=["i-00000000000000001"],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["echo " + "x" * (64 * 1024)]},
        ),
    ),
    Case(
        "bucket_name_characters",
        "InvalidBucketName",
        lambda aws, _: aws.s3.create_bucket(Bucket="Runctl_Bucket"),
    ),
    Case(
        "bucket_name_edges",
        "InvalidBucketName",
        lambda aws, _: aws.s3.create_bucket(Bucket="runctl..bucket"),
    ),
    Case(
        "bucket_name_ip",
        "InvalidBucketName",
        lambda aws, _: aws.s3.create_bucket(Bucket="192.168.5.4"),
    ),
    Case(
        "list_start_after_is_a_key",
        "KeyTooLongError",
        lambda aws, _: aws.s3.list_objects_v2(Bucket=_list_bucket(aws), StartAfter="k" * 1025),
    ),
    Case(
        "bucket_name_reserved",
        "InvalidBucketName",
        lambda aws, _: aws.s3.create_bucket(Bucket="runctl-data-s3alias"),
    ),
    Case(
        "start_session_fields",
        "ValidationException",
        lambda aws, _: aws.ssm.start_session(
            Target="i-00000000000000001", DocumentName="AWS StartPortForwardingSession"
        ),
    ),
    Case(
        "start_session_parameters",
        "ValidationException",
        lambda aws, _: aws.ssm.start_session(
            Target="i-00000000000000001",
            DocumentName="AWS-StartPortForwardingSession",
            Parameters={"portNumber": ["5" * 65536]},
        ),
    ),
    Case(
        "start_session_document",
        "InvalidDocument",
        lambda aws, _: aws.ssm.start_session(
            Target="i-00000000000000001", DocumentName="AWS-StartPortForwarding"
        ),
    ),
    Case(
        "iam_trust_service_principal",
        "MalformedPolicyDocument",
        lambda aws, _: aws.iam.create_role(
            RoleName=f"runctl-trust-{next(_serial)}",
            AssumeRolePolicyDocument=_trust("scheduler"),
        ),
    ),
    Case(
        "schedule_name_pattern",
        "ValidationException",
        lambda aws, _: _schedule(aws, Name="runctl nightly"),
    ),
    Case(
        "schedule_expression_form",
        "ValidationException",
        lambda aws, _: _schedule(aws, ScheduleExpression="cron(0 3 * * 1)"),
    ),
    Case(
        "schedule_flexible_window",
        "ValidationException",
        lambda aws, _: _schedule(aws, FlexibleTimeWindow={"Mode": "FLEXIBLE"}),
    ),
    Case(
        "schedule_target_arns",
        "ValidationException",
        lambda aws, _: _schedule(
            aws, Target={"Arn": "arn:aws:scheduler:::aws-sdk:ec2:runInstances", "RoleArn": "r"}
        ),
    ),
    Case(
        "schedule_timezone",
        "ValidationException",
        lambda aws, _: _schedule(aws, ScheduleExpressionTimezone="Europe/Parris"),
    ),
    Case(
        "events_rule_name",
        "ValidationException",
        lambda aws, _: aws.client("events").put_rule(
            Name="runctl nightly data", EventPattern=json.dumps({"source": ["aws.s3"]})
        ),
    ),
    Case(
        "events_target_fields",
        "ValidationException",
        lambda aws, _: _targets(aws, RoleArn="runctl-events"),
    ),
    Case(
        "events_target_one_input",
        "ValidationException",
        lambda aws, _: _targets(aws, Input="{}", InputPath="$.time"),
    ),
    Case(
        "document_name_reserved_prefix",
        "ValidationException",
        lambda aws, _: _document(aws, Name=f"AWS-runctl-{next(_serial)}"),
    ),
    Case(
        "automation_schema_version",
        "InvalidDocumentSchemaVersion",
        lambda aws, _: _document(
            aws, Content=json.dumps({"schemaVersion": "2.2", "mainSteps": []})
        ),
    ),
    Case(
        "notification_not_ambiguous",
        "InvalidArgument",
        lambda aws, ctx: _notify(aws, ctx, ("incoming/", ".csv"), ("incoming/a", "")),
        setup=_queue,
    ),
    Case(
        "start_session_target_connected",
        "TargetNotConnected",
        lambda aws, _: aws.ssm.start_session(
            Target="i-00000000000000001", DocumentName="AWS-StartPortForwardingSession"
        ),
    ),
]


def test_every_rule_has_a_refusing_case_and_a_doc_page():
    names = [r.name for r in strict_aws.RULES]
    assert len(names) >= 20
    assert sorted(names) == sorted(c.rule for c in CASES)
    for r in strict_aws.RULES:
        assert r.doc.startswith("https://docs.aws.amazon.com/"), r.name
        assert r.summary, r.name


@pytest.mark.parametrize("case", CASES, ids=[c.rule for c in CASES])
def test_rule_refuses_what_moto_accepts(account, case: Case):
    aws = account
    ctx = case.setup(aws)
    with strict_aws.off():
        case.call(aws, ctx)  # moto alone: accepted
    before = len(strict_aws.REFUSED)
    with pytest.raises(ClientError) as caught:
        case.call(aws, ctx)
    error = caught.value.response
    assert error["Error"]["Code"] == case.code
    assert error["Error"]["Message"]
    assert error["ResponseMetadata"]["HTTPStatusCode"] == case.status
    assert strict_aws.REFUSED[before][0] == case.rule


def test_valid_requests_pass_every_rule(account):
    aws = account
    before = len(strict_aws.REFUSED)
    aws.iam.create_role(
        RoleName="runctl-scheduler-ok",
        Path="/runctl/",
        AssumeRolePolicyDocument=_trust("scheduler.amazonaws.com"),
    )
    for expression in ("cron(0 3 ? * MON *)", "cron(30 6 1 * ? *)", "rate(1 day)", "rate(6 hours)"):
        _schedule(aws, ScheduleExpression=expression)
    _schedule(aws, ScheduleExpression="at(2027-01-01T03:00:00)", ScheduleExpressionTimezone="UTC")
    _schedule(aws, FlexibleTimeWindow={"Mode": "FLEXIBLE", "MaximumWindowInMinutes": 15})
    _targets(aws, Id="a" * 64, InputTransformer={"InputTemplate": '{"t": "<t>"}'})
    _document(aws, Name=f"runctl-{next(_serial)}-" + "d" * 100)
    _notify(aws, _queue(aws), ("incoming/", ".csv"), ("incoming/", ".json"), ("other/", ""))
    subnets = _subnets(aws)
    # 50 tags, one of them the opt-in the user's policy needs to attach it
    tags = [*_tags(49, key_len=128, value_len=256), {"Key": "runctl:managed", "Value": "true"}]
    volume = aws.ec2.create_volume(AvailabilityZone="us-east-1a", Size=1, **_on_volume(tags))
    aws.iam.create_role(RoleName="runctl-instance", Path="/runctl/", AssumeRolePolicyDocument="{}")
    aws.iam.create_instance_profile(InstanceProfileName="runctl-instance", Path="/")
    aws.iam.add_role_to_instance_profile(
        InstanceProfileName="runctl-instance", RoleName="runctl-instance"
    )
    inst = _run(
        aws,
        InstanceType="g5.xlarge",
        SubnetId=subnets["us-east-1a"],
        UserData="x" * (16 * 1024),
        MetadataOptions={"HttpTokens": "required", "HttpPutResponseHopLimit": 64},
        IamInstanceProfile={"Name": "runctl-instance"},
        InstanceMarketOptions=_spot("persistent", "stop"),
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "runctl:managed", "Value": "true"}]}
        ],
    )["Instances"][0]["InstanceId"]
    aws.ec2.attach_volume(VolumeId=volume["VolumeId"], InstanceId=inst, Device="/dev/sdf")
    group = _cluster_group(aws)
    for _ in range(2):  # the same AZ twice
        _run(
            aws,
            InstanceType="p4d.24xlarge",
            Placement={"GroupName": group},
            NetworkInterfaces=[
                {"DeviceIndex": 0, "SubnetId": subnets["us-east-1a"], "InterfaceType": "efa"}
            ],
        )
    _fleet(aws, "maintain", "stop")  # stop is allowed on a maintain fleet
    aws.ec2.create_launch_template(
        LaunchTemplateName="runctl-(run)_1.2/3-" + "x" * 100,
        LaunchTemplateData={"ImageId": _ami(aws), "MetadataOptions": {"HttpTokens": "optional"}},
    )
    aws.ec2.create_security_group(
        GroupName="runctl-agent",
        Description="runctl-jupyter instances: no inbound, reached through SSM",
    )
    aws.iam.create_role(RoleName="r" * 64, AssumeRolePolicyDocument="{}")
    aws.iam.create_instance_profile(InstanceProfileName="p" * 128)
    aws.ssm.send_command(
        InstanceIds=[inst],
        DocumentName="AWS-RunShellScript",
        Comment="c" * 100,
        TimeoutSeconds=2592000,
        Parameters={"commands": ["true"]},
    )
    aws.ssm.start_session(
        Target=inst,
        DocumentName="AWS-StartPortForwardingSession",
        Parameters={"portNumber": ["65535"], "localPortNumber": ["1"]},
        Reason="r" * 256,
    )
    for bucket in ("runctl-123456789012-us-east-1", "a.b-c", "xn-runctl", "runctl-s3aliasx"):
        aws.s3.create_bucket(Bucket=bucket)
    assert strict_aws.REFUSED[before:] == []
