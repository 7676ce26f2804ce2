"""`runctl aws setup`: the account-level resources runs need, created idempotently.

- an S3 bucket: default encryption set explicitly (SSE-S3), all four Block
  Public Access settings on, TLS-only bucket policy, a lifecycle rule that
  expires `runctl/tmp/` and aborts incomplete multipart uploads;
- an instance role + instance profile: AmazonSSMManagedInstanceCore, that
  bucket, and only the tag-scoped EC2 actions the agent needs (policy.py);
- a security group with no inbound rule (SSM needs outbound HTTPS only).

Everything is tagged `runctl:managed=true`, `runctl:role=setup`, so `cleanup`
never treats it as an orphan. Running it again changes nothing that is right
and repairs what is missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from . import policy, run_role, tags
from .clients import AWSError, Clients, error_code

LIFECYCLE_RULE_ID = "runctl-expire-tmp"
TMP_DAYS = 7


@dataclass
class SetupResult:
    bucket: str
    role: str
    instance_profile: str
    security_group: str | None
    region: str
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"runctl aws setup ({self.region}):"]
        lines += [f"  created  {c}" for c in self.created]
        lines += [f"  ok       {e}" for e in self.existing]
        return "\n".join(lines)


def _ok(result: SetupResult, what: str, created: bool) -> None:
    (result.created if created else result.existing).append(what)


def ensure_bucket(clients: Clients, bucket: str, result: SetupResult) -> None:
    s3 = clients.s3
    created = False
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception as exc:  # botocore ClientError: 404 / 403
        code = error_code(exc)
        if code in ("403", "AccessDenied"):
            raise AWSError(
                f"bucket {bucket} exists but this account cannot use it; set c.AWSBackend.bucket to a bucket you own"
            ) from exc
        kwargs: dict = {"Bucket": bucket}
        if clients.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": clients.region}
        s3.create_bucket(**kwargs)
        created = True
    # The settings are (re)applied every time: cheap, and repairs drift.
    s3.put_public_access_block(
        Bucket=bucket,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {
                    "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"},
                    "BucketKeyEnabled": True,
                }
            ]
        },
    )
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": LIFECYCLE_RULE_ID,
                    "Status": "Enabled",
                    "Filter": {"Prefix": policy.TMP_PREFIX},
                    "Expiration": {"Days": TMP_DAYS},
                    "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": TMP_DAYS},
                }
            ]
        },
    )
    if tls_only(clients):
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy.bucket_policy(bucket)))
    s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tags.tag_list(tags.setup_tags())})
    _ok(
        result,
        f"bucket s3://{bucket} (encrypted, public access blocked, tmp/ expires in {TMP_DAYS} days)",
        created,
    )


def tls_only(clients: Clients) -> bool:
    """Whether the bucket gets its TLS-only policy: always on AWS; not behind a plain-http
    endpoint (a local emulator such as moto), which that policy would lock out."""
    return not (clients.endpoint_url or "").startswith("http://")


def ensure_role(
    clients: Clients, bucket: str, result: SetupResult, ecr_repository: str = ""
) -> None:
    iam = clients.iam
    created = False
    try:
        iam.get_role(RoleName=policy.ROLE_NAME)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        iam.create_role(
            RoleName=policy.ROLE_NAME,
            AssumeRolePolicyDocument=json.dumps(policy.assume_role_policy()),
            Description="runctl-jupyter training instances: SSM, the runctl bucket, stop/terminate themselves",
            Tags=tags.tag_list(tags.setup_tags()),
        )
        created = True
    attached = iam.list_attached_role_policies(RoleName=policy.ROLE_NAME)["AttachedPolicies"]
    if not any(p["PolicyArn"] == policy.SSM_CORE_POLICY_ARN for p in attached):
        iam.attach_role_policy(RoleName=policy.ROLE_NAME, PolicyArn=policy.SSM_CORE_POLICY_ARN)
    iam.put_role_policy(
        RoleName=policy.ROLE_NAME,
        PolicyName="runctl-agent",
        PolicyDocument=json.dumps(policy.instance_policy(bucket, ecr_repository)),
    )
    _ok(result, f"role {policy.ROLE_NAME} (SSM core, bucket, tag-scoped EC2 self-stop)", created)

    created = False
    try:
        profile = iam.get_instance_profile(InstanceProfileName=policy.PROFILE_NAME)[
            "InstanceProfile"
        ]
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        profile = iam.create_instance_profile(
            InstanceProfileName=policy.PROFILE_NAME, Tags=tags.tag_list(tags.setup_tags())
        )["InstanceProfile"]
        created = True
    if not any(r["RoleName"] == policy.ROLE_NAME for r in profile.get("Roles", [])):
        iam.add_role_to_instance_profile(
            InstanceProfileName=policy.PROFILE_NAME, RoleName=policy.ROLE_NAME
        )
    _ok(result, f"instance profile {policy.PROFILE_NAME}", created)


def default_vpc(clients: Clients) -> str:
    vpcs = clients.ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise AWSError(
            f"no default VPC in {clients.region}; create one (`aws ec2 create-default-vpc`) or set c.AWSBackend.subnet"
        )
    return vpcs[0]["VpcId"]


def find_security_group(clients: Clients, vpc_id: str) -> str | None:
    groups = clients.ec2.describe_security_groups(
        Filters=[
            {"Name": "group-name", "Values": [policy.SECURITY_GROUP_NAME]},
            {"Name": "vpc-id", "Values": [vpc_id]},
        ]
    )["SecurityGroups"]
    return groups[0]["GroupId"] if groups else None


def ensure_security_group(clients: Clients, result: SetupResult) -> str:
    ec2 = clients.ec2
    vpc_id = default_vpc(clients)
    group_id = find_security_group(clients, vpc_id)
    created = False
    if group_id is None:
        group_id = ec2.create_security_group(
            GroupName=policy.SECURITY_GROUP_NAME,
            Description="runctl-jupyter instances: no inbound, reached through SSM",
            VpcId=vpc_id,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": tags.tag_list(tags.setup_tags())}
            ],
        )["GroupId"]
        created = True
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    if group.get("IpPermissions"):
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=group["IpPermissions"])
    _ok(result, f"security group {group_id} (no inbound)", created)
    return group_id


def setup(clients: Clients, bucket: str | None = None, ecr_repository: str = "") -> SetupResult:
    """Create or repair everything; safe to run any number of times."""
    account = clients.identity()["Account"]
    bucket = bucket or policy.bucket_name(account, clients.region)
    result = SetupResult(
        bucket=bucket,
        role=policy.ROLE_NAME,
        instance_profile=policy.PROFILE_NAME,
        security_group=None,
        region=clients.region,
    )
    ensure_bucket(clients, bucket, result)
    ensure_role(clients, bucket, result, ecr_repository)
    made = run_role.ensure_policy(clients, account, bucket, ecr_repository)
    _ok(
        result, f"policy {run_role.policy_name(bucket)} (each run's own role: its reach only)", made
    )
    result.security_group = ensure_security_group(clients, result)
    if ecr_repository:  # Dockerfile images cached by their digest (docs/containers.md)
        from . import ecr_repo

        made = ecr_repo.ensure(clients, ecr_repository)
        _ok(result, f"ECR repository {ecr_repository} (built images, by their digest)", made)
    from . import scheduler

    made = scheduler.ensure_role(clients)
    _ok(result, f"role {scheduler.ROLE_NAME} (EventBridge Scheduler starts scheduled runs)", made)
    from . import data_rule

    made_roles = data_rule.ensure_roles(clients)
    for role, _, _, what in data_rule.ROLES:
        _ok(result, f"role {role} ({what})", role in made_roles)
    return result
