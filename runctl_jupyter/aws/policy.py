"""The names of runctl's own AWS resources and the policies `runctl aws setup` applies:
the instance role's (and who may assume it) and the bucket's.

Least privilege, like the user's (aws/user_policy.py): mutating EC2 actions are limited
to resources tagged `runctl:managed=true`, S3 to runctl's own bucket.
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
