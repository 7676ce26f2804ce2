"""IAM policies: what the user needs (`runctl aws policy`) and what the instance gets.

Both are least privilege: mutating EC2 actions are limited to resources tagged
`runctl:managed=true`, S3 to runctl's own bucket, IAM to runctl's own role.
"""

from __future__ import annotations

import json

from . import tags

ROLE_NAME = "runctl-instance"
PROFILE_NAME = "runctl-instance"
SECURITY_GROUP_NAME = "runctl-agent"
SSM_CORE_POLICY_ARN = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
RUN_PREFIX = "runctl/"
TMP_PREFIX = "runctl/tmp/"


def bucket_name(account: str, region: str) -> str:
    return f"runctl-{account}-{region}"


def _managed(key: str = "aws:ResourceTag") -> dict:
    return {"StringEquals": {f"{key}/{tags.MANAGED}": "true"}}


def instance_policy(bucket: str) -> dict:
    """The inline policy of the instance role (besides AmazonSSMManagedInstanceCore).

    The agent reads its bundle and writes events, logs and checkpoints under
    `runctl/` of the bucket, stops or terminates only runctl-managed instances
    (node 0 of a multi-node run terminates every node when the run ends),
    cancels only runctl-managed spot requests, deletes only runctl-managed fleets
    and launch templates (its run's, when the run ended for good), and reads spot
    prices (describe calls have no resource-level permissions in EC2). It tags
    nothing: the launch template tags a spot fleet's instances at launch.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "RunctlBucketList",
                "Effect": "Allow",
                "Action": ["s3:ListBucket"],
                "Resource": f"arn:aws:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{RUN_PREFIX}*"]}},
            },
            {
                "Sid": "RunctlBucketObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": f"arn:aws:s3:::{bucket}/{RUN_PREFIX}*",
            },
            {
                "Sid": "StopOrTerminateOwnInstance",
                "Effect": "Allow",
                "Action": ["ec2:StopInstances", "ec2:TerminateInstances"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": _managed(),
            },
            {
                "Sid": "CancelOwnSpotRequestOrFleet",
                "Effect": "Allow",
                "Action": [
                    "ec2:CancelSpotInstanceRequests",
                    "ec2:DeleteFleets",
                    "ec2:DeleteLaunchTemplate",
                ],
                "Resource": [
                    "arn:aws:ec2:*:*:spot-instances-request/*",
                    "arn:aws:ec2:*:*:fleet/*",
                    "arn:aws:ec2:*:*:launch-template/*",
                ],
                "Condition": _managed(),
            },
            {
                "Sid": "ReadSpotPricesAndSelf",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSpotInstanceRequests",
                    "ec2:DescribeInstances",
                    "ec2:DescribeVolumes",
                ],
                "Resource": "*",
            },
            {
                "Sid": "AttachToOwnInstance",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": _managed(),
            },
            {
                # the run's --volume follows it to the replacement (the volume is the user's, untagged)
                "Sid": "AttachRunVolume",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume"],
                "Resource": "arn:aws:ec2:*:*:volume/*",
            },
        ],
    }


def assume_role_policy() -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "ec2.amazonaws.com"},
                "Action": "sts:AssumeRole",
            }
        ],
    }


def user_policy(account: str = "*", region: str = "*", bucket: str | None = None) -> dict:
    """The least-privilege policy a runctl user needs (setup included)."""
    bucket = (
        bucket or f"runctl-{account if account != '*' else '*'}-{region if region != '*' else '*'}"
    )
    acct = account
    ec2 = f"arn:aws:ec2:{region}:{acct}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Identity",
                "Effect": "Allow",
                "Action": ["sts:GetCallerIdentity"],
                "Resource": "*",
            },
            {
                "Sid": "Describe",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeInstances",
                    "ec2:DescribeInstanceTypes",
                    "ec2:DescribeImages",
                    "ec2:DescribeVolumes",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeVpcs",
                    "ec2:DescribeAvailabilityZones",
                    "ec2:DescribeSpotPriceHistory",
                    "ec2:DescribeSpotInstanceRequests",
                    "ec2:DescribeFleets",
                    "ec2:DescribeFleetInstances",
                    "ec2:DescribeLaunchTemplates",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:DescribePlacementGroups",
                    "ec2:DescribeTags",
                    "ssm:DescribeInstanceInformation",
                    "ssm:GetCommandInvocation",
                    "ssm:ListCommands",
                    "pricing:GetProducts",
                ],
                "Resource": "*",
            },
            {
                "Sid": "PublicAmiParameters",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                "Resource": f"arn:aws:ssm:{region}::parameter/aws/service/*",
            },
            {
                "Sid": "LaunchTaggedOnly",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:RequestSpotInstances", "ec2:CreateFleet"],
                "Resource": [
                    f"{ec2}:instance/*",
                    f"{ec2}:volume/*",
                    f"{ec2}:spot-instances-request/*",
                    f"{ec2}:fleet/*",
                ],
                "Condition": {"StringEquals": {f"aws:RequestTag/{tags.MANAGED}": "true"}},
            },
            {
                # a spot fleet's per-run launch template (aws/spot_fleet.py), created tagged
                "Sid": "LaunchTemplateTaggedOnly",
                "Effect": "Allow",
                "Action": ["ec2:CreateLaunchTemplate"],
                "Resource": f"{ec2}:launch-template/*",
                "Condition": {"StringEquals": {f"aws:RequestTag/{tags.MANAGED}": "true"}},
            },
            {
                # a fleet launches from the run's template, which is runctl's (tag-scoped)
                "Sid": "FleetFromOwnTemplate",
                "Effect": "Allow",
                "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
                "Resource": f"{ec2}:launch-template/*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{tags.MANAGED}": "true"}},
            },
            {
                # a multi-node run's cluster placement group (aws/cluster.py), created tagged
                "Sid": "ClusterPlacementGroupTaggedOnly",
                "Effect": "Allow",
                "Action": ["ec2:CreatePlacementGroup"],
                "Resource": f"{ec2}:placement-group/*",
                "Condition": {"StringEquals": {f"aws:RequestTag/{tags.MANAGED}": "true"}},
            },
            {
                "Sid": "LaunchFrom",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:RequestSpotInstances", "ec2:CreateFleet"],
                "Resource": [
                    f"arn:aws:ec2:{region}::image/*",
                    f"{ec2}:subnet/*",
                    f"{ec2}:network-interface/*",
                    f"{ec2}:security-group/*",
                    f"{ec2}:placement-group/*",  # only runctl's can be created (above)
                ],
            },
            {
                "Sid": "TagOnCreate",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "ec2:CreateAction": [
                            "RunInstances",
                            "CreateSecurityGroup",
                            "CreatePlacementGroup",
                            "RequestSpotInstances",
                            "CreateFleet",
                            "CreateLaunchTemplate",
                        ]
                    }
                },
            },
            {
                "Sid": "ManageTaggedOnly",
                "Effect": "Allow",
                "Action": [
                    "ec2:TerminateInstances",
                    "ec2:StopInstances",
                    "ec2:StartInstances",
                    "ec2:CreateTags",
                    "ec2:DeleteVolume",
                    "ec2:CancelSpotInstanceRequests",
                    "ec2:DeleteFleets",
                    "ec2:DeleteLaunchTemplate",
                    "ec2:DeletePlacementGroup",
                    "ec2:DeleteSecurityGroup",
                    # the self-referencing rule of a multi-node run's own group
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ssm:SendCommand",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": {f"aws:ResourceTag/{tags.MANAGED}": "true"}},
            },
            {
                "Sid": "RunShellScript",
                "Effect": "Allow",
                "Action": ["ssm:SendCommand"],
                "Resource": f"arn:aws:ssm:{region}::document/AWS-RunShellScript",
            },
            {
                "Sid": "AttachDataVolume",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
                "Resource": [f"{ec2}:volume/*", f"{ec2}:instance/*"],
            },
            {
                "Sid": "SetupSecurityGroup",
                "Effect": "Allow",
                "Action": ["ec2:CreateSecurityGroup"],
                "Resource": [f"{ec2}:security-group/*", f"{ec2}:vpc/*"],
            },
            {
                "Sid": "PassInstanceRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": f"arn:aws:iam::{acct}:role/{ROLE_NAME}",
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            {
                # EC2 Fleet launches through its service-linked role, made once per account
                "Sid": "FleetServiceLinkedRole",
                "Effect": "Allow",
                "Action": ["iam:CreateServiceLinkedRole"],
                "Resource": f"arn:aws:iam::{acct}:role/aws-service-role/ec2fleet.amazonaws.com/*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "ec2fleet.amazonaws.com"}},
            },
            {
                "Sid": "SetupInstanceRole",
                "Effect": "Allow",
                "Action": [
                    "iam:GetRole",
                    "iam:CreateRole",
                    "iam:TagRole",
                    "iam:PutRolePolicy",
                    "iam:GetRolePolicy",
                    "iam:AttachRolePolicy",
                    "iam:ListAttachedRolePolicies",
                    "iam:GetInstanceProfile",
                    "iam:CreateInstanceProfile",
                    "iam:TagInstanceProfile",
                    "iam:AddRoleToInstanceProfile",
                ],
                "Resource": [
                    f"arn:aws:iam::{acct}:role/{ROLE_NAME}",
                    f"arn:aws:iam::{acct}:instance-profile/{PROFILE_NAME}",
                ],
            },
            {
                "Sid": "RunctlBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:CreateBucket",
                    "s3:ListBucket",
                    "s3:GetBucketLocation",
                    "s3:GetEncryptionConfiguration",
                    "s3:PutEncryptionConfiguration",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:PutBucketPublicAccessBlock",
                    "s3:GetLifecycleConfiguration",
                    "s3:PutLifecycleConfiguration",
                    "s3:GetBucketTagging",
                    "s3:PutBucketTagging",
                    "s3:GetBucketPolicy",
                    "s3:PutBucketPolicy",
                ],
                "Resource": f"arn:aws:s3:::{bucket}",
            },
            {
                "Sid": "RunctlObjects",
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                "Resource": f"arn:aws:s3:::{bucket}/{RUN_PREFIX}*",
            },
        ],
    }


def bucket_policy(bucket: str) -> dict:
    """Deny any request to the bucket that does not use TLS."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def render(policy: dict) -> str:
    return json.dumps(policy, indent=2)
