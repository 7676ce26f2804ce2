"""The names of runctl's own AWS resources and the policies instances run under: the
shared instance role's, a run's own role's (and who may assume them), and the bucket's.

Least privilege, like the user's (aws/user_policy.py): a run's role acts only on its own
run's resources and S3 prefix (docs/aws.md, "Who can reach what").
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


# the run a session of a per-run role belongs to (the role's `runctl:run-id` tag)
OWN_RUN = f"${{aws:PrincipalTag/{tags.RUN_ID}}}"


def _own_run(tag: str = tags.RUN_ID) -> dict:
    """The resource is runctl's and carries this session's run id in `tag`."""
    return {
        "StringEquals": {
            f"aws:ResourceTag/{tags.MANAGED}": "true",
            f"aws:ResourceTag/{tag}": OWN_RUN,
        }
    }


def _describe() -> dict:
    # describe calls have no resource-level permissions in EC2
    return {
        "Sid": "ReadSpotPricesAndSelf",
        "Effect": "Allow",
        "Action": [
            "ec2:DescribeSpotPriceHistory",
            "ec2:DescribeSpotInstanceRequests",
            "ec2:DescribeInstances",
            "ec2:DescribeVolumes",
        ],
        "Resource": "*",
    }


def _bucket_reach(bucket: str, runs: str) -> list[dict]:
    """List, read and write the objects under `runs` (a key prefix ending in `/`)."""
    return [
        {
            "Sid": "RunctlBucketList",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": [f"{runs}*"]}},
        },
        {
            "Sid": "RunctlBucketObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            "Resource": f"arn:aws:s3:::{bucket}/{runs}*",
        },
    ]


def _team_publish(bucket: str) -> dict:
    """A run published to its team (docs/teams.md) writes its spec, summary, chunks and
    index entries under its owner's team prefix, the role's `runctl:team-prefix` tag:
    its own run's keys only (no tag: the variable is unresolved and matches nothing)."""
    team = f"${{aws:PrincipalTag/{tags.TEAM_PREFIX}}}"
    return {
        "Sid": "PublishOwnRunToTeam",
        "Effect": "Allow",
        "Action": ["s3:PutObject"],
        "Resource": [
            f"arn:aws:s3:::{bucket}/{team}runs/{OWN_RUN}/*",
            f"arn:aws:s3:::{bucket}/{team}index/*-{OWN_RUN}.json",
        ],
    }


LEASE_PREFIX = f"{RUN_PREFIX}leases/"


def _leases(bucket: str, run: str) -> dict:
    """Read, renew and give back the lease holders of run `run` (agent/lease.py): its own
    `leases/<resource>/{rw,ro}/<run>.json` only, never a guard or another run's holder
    (a conditional delete by ETag needs s3:GetObject too:
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html)."""
    return {
        "Sid": "OwnLeaseHolders",
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        "Resource": [
            f"arn:aws:s3:::{bucket}/{LEASE_PREFIX}*/{mode}/{run}.json" for mode in ("rw", "ro")
        ],
    }


def models_prefix(owner: str, project: str) -> str:
    """Where the registry publishes the models of an owner's project (runs/model_publish.py)."""
    return f"{RUN_PREFIX}models/{owner}/{project}/"


def _models_reach(bucket: str) -> list[dict]:
    """Read only the published models of the role's own owner and project (its tags)."""
    own = models_prefix(
        f"${{aws:PrincipalTag/{tags.OWNER}}}", f"${{aws:PrincipalTag/{tags.PROJECT}}}"
    )
    return [
        {
            "Sid": "ListOwnProjectModels",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": [f"{own}*"]}},
        },
        {
            "Sid": "ReadOwnProjectModels",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": f"arn:aws:s3:::{bucket}/{own}*",
        },
    ]


ECR_PULL_PUSH = [
    "ecr:DescribeImages",
    "ecr:BatchGetImage",
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
]


def ecr_statements(repository: str) -> list[dict]:
    """`c.AWSBackend.ecr_repository`: pull and push that one repository (a Dockerfile's
    image cached by its digest, agent/ecr.py). GetAuthorizationToken names no resource:
    "you must specify `*`" (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html,
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html)."""
    if not repository:
        return []
    return [
        {
            "Sid": "EcrLogin",
            "Effect": "Allow",
            "Action": ["ecr:GetAuthorizationToken"],
            "Resource": "*",
        },
        {
            "Sid": "EcrImageCache",
            "Effect": "Allow",
            "Action": ECR_PULL_PUSH,
            "Resource": f"arn:aws:ecr:*:*:repository/{repository}",
        },
    ]


def ecr_setup_statements(region: str, account: str, repository: str) -> list[dict]:
    """`runctl aws setup` with `c.AWSBackend.ecr_repository`: find or create (with its
    tags: ecr:TagResource, "tag on create") that one repository."""
    if not repository:
        return []
    return [
        {
            "Sid": "EcrCacheRepository",
            "Effect": "Allow",
            "Action": ["ecr:DescribeRepositories", "ecr:CreateRepository", "ecr:TagResource"],
            "Resource": f"arn:aws:ecr:{region}:{account}:repository/{repository}",
        }
    ]


def instance_policy(bucket: str, ecr_repository: str = "") -> dict:
    """The inline policy of the shared instance role `runctl-instance` (besides
    AmazonSSMManagedInstanceCore), for the instances that serve many runs (kept ones,
    `--instance`): the runs' S3 objects of the bucket, and reading. It ends nothing and
    attaches nothing (a kept instance stops itself with `shutdown`; a run on it never
    terminates it), and tags nothing.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_bucket_reach(bucket, f"{RUN_PREFIX}runs/"),
            _leases(bucket, "*"),  # a shared role has no run of its own: any run's holder
            _describe(),
            *ecr_statements(ecr_repository),
        ],
    }


def run_policy(bucket: str, ecr_repository: str = "") -> dict:
    """The policy of a run's own role (aws/run_role.py): one run's reach, by the role's
    `runctl:run-id` tag (`aws:PrincipalTag`, which a role session carries).

    The agent reads its bundle and writes events, logs and checkpoints under
    `runctl/runs/<its run id>/`; it stops or terminates only instances of its run (node 0
    of a multi-node run ends every node), cancels only its run's spot requests, deletes
    only its run's fleet and launch template, attaches only a `--volume` the user opted
    in (`runctl:managed=true`) that serves its run (`runctl:volume-run`) to an instance
    of its run (a spot replacement), detaches it at the run's end and deletes it only
    when its run created it and it is not kept (`--data-size` without `--persistent`),
    and reads spot prices.
    """
    return {
        "Version": "2012-10-17",
        "Statement": [
            *_bucket_reach(bucket, f"{RUN_PREFIX}runs/{OWN_RUN}/"),
            _team_publish(bucket),
            _leases(bucket, OWN_RUN),
            *_models_reach(bucket),
            {
                "Sid": "StopOrTerminateOwnRunInstances",
                "Effect": "Allow",
                "Action": ["ec2:StopInstances", "ec2:TerminateInstances"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": _own_run(),
            },
            {
                "Sid": "EndOwnRunSpotRequestFleetTemplate",
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
                "Condition": _own_run(),
            },
            _describe(),
            {
                "Sid": "AttachToOwnRunInstance",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": _own_run(),
            },
            {
                "Sid": "AttachOwnRunVolume",
                "Effect": "Allow",
                "Action": ["ec2:AttachVolume"],
                "Resource": "arn:aws:ec2:*:*:volume/*",
                "Condition": _own_run(tags.VOLUME_RUN),
            },
            {
                # the run's end: its data volume (not kept) detached from its instance
                "Sid": "DetachOwnRunVolume",
                "Effect": "Allow",
                "Action": ["ec2:DetachVolume"],
                "Resource": "arn:aws:ec2:*:*:volume/*",
                "Condition": _own_run(tags.VOLUME_RUN),
            },
            {
                "Sid": "DetachFromOwnRunInstance",
                "Effect": "Allow",
                "Action": ["ec2:DetachVolume"],
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": _own_run(),
            },
            {
                # then deleted: only a volume this run created (`runctl:run-id`) and
                # serves, never a kept one (`--persistent`, a user's `--volume`)
                "Sid": "DeleteOwnRunScratchVolume",
                "Effect": "Allow",
                "Action": ["ec2:DeleteVolume"],
                "Resource": "arn:aws:ec2:*:*:volume/*",
                "Condition": {
                    "StringEquals": {
                        f"aws:ResourceTag/{tags.MANAGED}": "true",
                        f"aws:ResourceTag/{tags.RUN_ID}": OWN_RUN,
                        f"aws:ResourceTag/{tags.VOLUME_RUN}": OWN_RUN,
                    },
                    "StringNotEquals": {
                        f"aws:ResourceTag/{tags.PERSISTENT}": "true",
                        f"aws:ResourceTag/{tags.KEEP}": "true",
                        f"aws:ResourceTag/{tags.PROTECTED}": "true",
                    },
                },
            },
            *ecr_statements(ecr_repository),
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
