"""The IAM policy a runctl user needs (`runctl aws policy` prints it for an admin).

Least privilege, by what each group of statements is for: reading, launching only
what carries the `runctl:managed=true` tag, acting only on what does, setting up (and
passing) runctl's own role, and runctl's own bucket. An admin reads it Sid by Sid, so
the statements keep their order.
"""

from __future__ import annotations

from . import data_rule, policy, scheduler, tags
from .policy import PROFILE_NAME, ROLE_NAME, RUN_PREFIX, SSM_CORE_POLICY_ARN
from .run_role import DATA_POLICY
from .run_role import PATH as RUN_ROLE_PATH
from .run_role import PREFIX as RUN_ROLE_PREFIX


def user_policy(
    account: str = "*", region: str = "*", bucket: str | None = None, ecr_repository: str = ""
) -> dict:
    """The least-privilege policy a runctl user needs (setup included)."""
    bucket = (
        bucket or f"runctl-{account if account != '*' else '*'}-{region if region != '*' else '*'}"
    )
    acct = account
    ec2 = f"arn:aws:ec2:{region}:{acct}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_read(region),
            *_launch(region, ec2),
            *_manage(region, ec2),
            *_debugger(region, ec2, acct),
            *_setup_and_roles(ec2, acct),
            *_run_roles(acct),
            *_bucket(bucket),
            *scheduler.user_statements(acct),
            *data_rule.user_statements(acct),
            *policy.ecr_setup_statements(region, acct, ecr_repository),
        ],
    }


def _read(region: str) -> list[dict]:
    """Who the caller is, what exists and costs, and the public AMI parameters."""
    return [
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
                "ec2:DescribeSnapshots",
                "ec2:DescribeRegions",
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
    ]


def _launch(region: str, ec2: str) -> list[dict]:
    """Create only what is tagged at creation: instances, spot requests, fleets, their
    templates, a cluster's placement group; the images, subnets and groups they use."""
    return [
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
            # a `--data-size` volume (aws/data_volume.py): encrypted, created tagged
            "Sid": "DataVolumeTaggedEncryptedOnly",
            "Effect": "Allow",
            "Action": ["ec2:CreateVolume"],
            "Resource": f"{ec2}:volume/*",
            "Condition": {
                "StringEquals": {f"aws:RequestTag/{tags.MANAGED}": "true"},
                "Bool": {"ec2:Encrypted": "true"},
            },
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
                        "CreateVolume",
                        "RequestSpotInstances",
                        "CreateFleet",
                        "CreateLaunchTemplate",
                    ]
                }
            },
        },
    ]


def _manage(region: str, ec2: str) -> list[dict]:
    """Act only on runctl-managed resources: end or delete them, run the bootstrap on their
    instances over SSM; attach a data volume opted in with `runctl:managed=true`."""
    return [
        {
            "Sid": "ManageTaggedOnly",
            "Effect": "Allow",
            "Action": [
                "ec2:TerminateInstances",
                "ec2:StopInstances",
                "ec2:StartInstances",
                "ec2:CreateTags",
                "ec2:DeleteVolume",
                "ec2:DeleteSnapshot",
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
            # a `--volume` the user opted in (tagged runctl:managed=true), on a managed instance
            "Sid": "AttachManagedVolume",
            "Effect": "Allow",
            "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
            "Resource": [f"{ec2}:volume/*", f"{ec2}:instance/*"],
            "Condition": {"StringEquals": {f"aws:ResourceTag/{tags.MANAGED}": "true"}},
        },
    ]


def _debugger(region: str, ec2: str, acct: str) -> list[dict]:
    """`train --debug` on AWS: a port-forwarding session to a runctl-managed instance only,
    with AWS-StartPortForwardingSession only; ending (and the plugin's data channel of)
    the caller's own sessions (Session Manager's sample end-user policies)."""
    return [
        {
            "Sid": "DebuggerPortForwarding",
            "Effect": "Allow",
            "Action": ["ssm:StartSession"],
            "Resource": f"{ec2}:instance/*",
            "Condition": {"StringEquals": {f"ssm:resourceTag/{tags.MANAGED}": "true"}},
        },
        {
            "Sid": "PortForwardingDocument",
            "Effect": "Allow",
            "Action": ["ssm:StartSession"],
            "Resource": f"arn:aws:ssm:{region}::document/AWS-StartPortForwardingSession",
        },
        {
            "Sid": "OwnSessions",
            "Effect": "Allow",
            "Action": ["ssm:TerminateSession", "ssmmessages:OpenDataChannel"],
            "Resource": f"arn:aws:ssm:{region}:{acct}:session/${{aws:userid}}-*",
        },
    ]


def _setup_and_roles(ec2: str, acct: str) -> list[dict]:
    """What `runctl aws setup` creates (the security group, the instance role and profile)
    and the roles a launch uses (it passes the instance role; EC2 Fleet its own)."""
    return [
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
    ]


def _run_roles(acct: str) -> list[dict]:
    """Each run's own role and profile (aws/run_role.py): made at launch, deleted when the
    launch fails or by `cleanup`; holding only runctl's run policy and SSM core."""
    roles = f"arn:aws:iam::{acct}:role{RUN_ROLE_PATH}{RUN_ROLE_PREFIX}*"
    profiles = f"arn:aws:iam::{acct}:instance-profile{RUN_ROLE_PATH}{RUN_ROLE_PREFIX}*"
    run_policies = f"arn:aws:iam::{acct}:policy{RUN_ROLE_PATH}{RUN_ROLE_PREFIX}*"
    data = f"arn:aws:iam::{acct}:policy{RUN_ROLE_PATH}{DATA_POLICY}"
    return [
        {
            "Sid": "RunRoles",
            "Effect": "Allow",
            "Action": [
                "iam:CreateRole",
                "iam:TagRole",
                "iam:GetRole",
                "iam:ListRoleTags",
                "iam:ListAttachedRolePolicies",
                "iam:DetachRolePolicy",
                "iam:DeleteRole",
                "iam:CreateInstanceProfile",
                "iam:TagInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            "Resource": [roles, profiles],
        },
        {
            # a run role gets runctl's run policy and SSM core, nothing else
            "Sid": "RunRolePolicies",
            "Effect": "Allow",
            "Action": ["iam:AttachRolePolicy"],
            "Resource": roles,
            "Condition": {"ArnLike": {"iam:PolicyARN": [run_policies, SSM_CORE_POLICY_ARN, data]}},
        },
        {
            # an admin's data policy, attached to run roles when it exists (not writable here)
            "Sid": "ReadDataPolicy",
            "Effect": "Allow",
            "Action": ["iam:GetPolicy"],
            "Resource": data,
        },
        {
            "Sid": "PassRunRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": roles,
            "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
        },
        {
            # `runctl resources` and `cleanup` list the run roles (ListRoles takes no ARN)
            "Sid": "ListRunRoles",
            "Effect": "Allow",
            "Action": ["iam:ListRoles"],
            "Resource": "*",
        },
        {
            # `runctl aws setup`: the run roles' policy, kept current
            "Sid": "SetupRunPolicy",
            "Effect": "Allow",
            "Action": [
                "iam:CreatePolicy",
                "iam:GetPolicy",
                "iam:GetPolicyVersion",
                "iam:ListPolicyVersions",
                "iam:CreatePolicyVersion",
                "iam:DeletePolicyVersion",
                "iam:TagPolicy",
            ],
            "Resource": run_policies,
        },
    ]


def _bucket(bucket: str) -> list[dict]:
    """runctl's own bucket: set up, then runs' objects under `runctl/`."""
    return [
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
    ]
