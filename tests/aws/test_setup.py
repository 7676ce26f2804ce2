"""`runctl aws setup`, `policy` and `doctor` against moto."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest

from runctl_jupyter.aws import policy, run_role, tags
from runctl_jupyter.aws.clients import AWSCredentialsMissing, Clients, owner_from_arn
from runctl_jupyter.aws.doctor import doctor, report
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.aws.user_policy import user_policy


def test_clients_honour_aws_endpoint_url_for_every_service(aws: Clients, moto_server: str):
    for service in ("ec2", "s3", "ssm", "iam", "sts"):
        assert aws.client(service).meta.endpoint_url == moto_server


def test_clients_use_adaptive_retries(aws: Clients):
    assert aws.ec2.meta.config.retries["mode"] == "adaptive"


def test_clients_count_calls(aws: Clients):
    aws.sts.get_caller_identity()
    aws.ec2.describe_vpcs()
    assert aws.calls["sts.GetCallerIdentity"] == 1
    assert aws.total_calls("ec2.") == 1


def test_owner_is_the_user_name_in_the_arn():
    assert owner_from_arn("arn:aws:iam::123456789012:user/ann") == "ann"
    assert (
        owner_from_arn("arn:aws:sts::123456789012:assumed-role/Dev/bob@example.com")
        == "bob@example.com"
    )


def test_setup_creates_a_private_encrypted_bucket_with_tmp_lifecycle(aws: Clients):
    result = setup(aws)
    assert result.bucket == "runctl-123456789012-us-east-1"
    s3 = aws.s3
    pab = s3.get_public_access_block(Bucket=result.bucket)["PublicAccessBlockConfiguration"]
    assert pab == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }
    enc = s3.get_bucket_encryption(Bucket=result.bucket)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    rules = s3.get_bucket_lifecycle_configuration(Bucket=result.bucket)["Rules"]
    assert rules[0]["Filter"]["Prefix"] == "runctl/tmp/"
    assert rules[0]["Expiration"]["Days"] == 7
    bucket_tags = tags.tag_dict(s3.get_bucket_tagging(Bucket=result.bucket)["TagSet"])
    assert bucket_tags[tags.ROLE] == "setup"


def test_bucket_policy_denies_plain_http_except_behind_a_local_http_endpoint(aws: Clients):
    deny = policy.bucket_policy("b")["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"
    from runctl_jupyter.aws.setup import tls_only

    assert tls_only(aws) is False  # moto over http: the policy would lock everyone out
    assert tls_only(Clients(region="us-east-1", endpoint_url="https://s3.example")) is True


def _document(doc: Any) -> dict:
    return json.loads(unquote(doc)) if isinstance(doc, str) else doc


def test_setup_keeps_the_run_policy_current_in_new_versions(aws: Clients):
    result = setup(aws)
    arn = run_role.policy_arn(aws.identity()["Account"], result.bucket)

    def current() -> dict:
        found = aws.iam.get_policy(PolicyArn=arn)["Policy"]
        version = aws.iam.get_policy_version(PolicyArn=arn, VersionId=found["DefaultVersionId"])
        return _document(version["PolicyVersion"]["Document"])

    wide = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    for _ in range(2):  # drift, repaired each time: v1 .. v5
        aws.iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(wide), SetAsDefault=True
        )
        assert current() == wide
        setup(aws)
        assert current() == policy.run_policy(result.bucket)
    # IAM's five versions used: the next repair deletes the oldest other version first
    aws.iam.set_default_policy_version(PolicyArn=arn, VersionId="v4")
    setup(aws)
    assert current() == policy.run_policy(result.bucket)
    assert len(aws.iam.list_policy_versions(PolicyArn=arn)["Versions"]) == 5


def test_setup_creates_role_and_profile_with_ssm_core_and_scoped_policy(aws: Clients):
    result = setup(aws)
    iam = aws.iam
    attached = iam.list_attached_role_policies(RoleName=result.role)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == [policy.SSM_CORE_POLICY_ARN]
    inline = iam.get_role_policy(RoleName=result.role, PolicyName="runctl-agent")["PolicyDocument"]
    if isinstance(inline, str):
        inline = json.loads(inline)
    statements = {s["Sid"]: s for s in inline["Statement"]}
    assert (
        statements["RunctlBucketObjects"]["Resource"]
        == f"arn:aws:s3:::{result.bucket}/runctl/runs/*"
    )
    # the shared role (kept and reused instances) ends, attaches and tags nothing
    actions = {a for s in inline["Statement"] for a in s["Action"]}
    assert {a for a in actions if a.startswith("ec2:")} == {
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeSpotInstanceRequests",
        "ec2:DescribeInstances",
        "ec2:DescribeVolumes",
    }
    # each run's own role: the managed policy keyed on the role's runctl:run-id tag
    arn = run_role.policy_arn(aws.identity()["Account"], result.bucket)
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]
    run_statements = {s["Sid"]: s for s in _document(document["Document"])["Statement"]}
    stop = run_statements["StopOrTerminateOwnRunInstances"]
    assert stop["Condition"]["StringEquals"] == {
        "aws:ResourceTag/runctl:managed": "true",
        "aws:ResourceTag/runctl:run-id": "${aws:PrincipalTag/runctl:run-id}",
    }
    assert run_statements["RunctlBucketObjects"]["Resource"] == (
        f"arn:aws:s3:::{result.bucket}/runctl/runs/${{aws:PrincipalTag/runctl:run-id}}/*"
    )
    profile = iam.get_instance_profile(InstanceProfileName=result.instance_profile)[
        "InstanceProfile"
    ]
    assert [r["RoleName"] for r in profile["Roles"]] == [result.role]
    role_tags = tags.tag_dict(iam.get_role(RoleName=result.role)["Role"].get("Tags"))
    assert role_tags[tags.ROLE] == "setup"


def test_setup_security_group_has_no_inbound_rule(aws: Clients):
    result = setup(aws)
    group = aws.ec2.describe_security_groups(GroupIds=[result.security_group])["SecurityGroups"][0]
    assert group["IpPermissions"] == []
    assert tags.tag_dict(group["Tags"])[tags.ROLE] == "setup"


def test_setup_removes_an_inbound_rule_added_later(aws: Clients):
    group_id = setup(aws).security_group
    aws.ec2.authorize_security_group_ingress(
        GroupId=group_id,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 22,
                "ToPort": 22,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
        ],
    )
    setup(aws)
    group = aws.ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    assert group["IpPermissions"] == []


def test_setup_is_idempotent(aws: Clients):
    first = setup(aws)
    second = setup(aws)
    # bucket, role, instance profile, the run roles' policy, security group, scheduler role,
    # the data-trigger roles (events, automation)
    assert len(first.created) == 8 and first.existing == []
    assert second.created == [] and len(second.existing) == 8
    assert second.security_group == first.security_group
    groups = aws.ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [policy.SECURITY_GROUP_NAME]}]
    )
    assert len(groups["SecurityGroups"]) == 1
    assert "created" in first.summary() and "ok" in second.summary()


def test_user_policy_scopes_mutations_to_managed_tags():
    doc = json.loads(policy.render(user_policy("123456789012", "us-east-1")))
    statements = {s["Sid"]: s for s in doc["Statement"]}
    launch = statements["LaunchTaggedOnly"]
    assert launch["Condition"]["StringEquals"] == {"aws:RequestTag/runctl:managed": "true"}
    manage = statements["ManageTaggedOnly"]
    assert "ec2:TerminateInstances" in manage["Action"]
    assert manage["Condition"]["StringEquals"] == {"aws:ResourceTag/runctl:managed": "true"}
    pass_role = statements["PassInstanceRole"]
    assert pass_role["Resource"] == "arn:aws:iam::123456789012:role/runctl-instance"
    # nothing grants a wildcard action
    for s in doc["Statement"]:
        actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
        assert all("*" not in a for a in actions), s["Sid"]


def test_doctor_says_what_to_fix_before_setup(aws: Clients):
    checks = {c.name: c for c in doctor(aws)}
    assert checks["credentials"].ok and checks["region"].ok and checks["ssm"].ok
    for name in ("bucket", "instance profile", "security group"):
        assert not checks[name].ok
        assert "runctl aws setup" in checks[name].fix
    assert "problem" in report(list(checks.values()))


def test_doctor_is_all_good_after_setup(aws: Clients):
    setup(aws)
    checks = doctor(aws)
    assert all(c.ok for c in checks), report(checks)
    assert report(checks).endswith("all good")


def test_doctor_without_credentials_says_how_to_configure(
    aws: Clients, monkeypatch: pytest.MonkeyPatch, tmp_path
):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    bare = Clients(region="us-east-1")
    with pytest.raises(AWSCredentialsMissing, match="aws configure"):
        bare.identity()
    checks = doctor(bare)
    assert len(checks) == 1 and not checks[0].ok
