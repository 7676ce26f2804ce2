"""A team's identity and permissions (issue 18, item 2), with two (three) IAM users made in
moto, each signing with their own access key against one moto server; what they may do is
judged by the strict layer's IAM evaluation (strict_iam.py) of the policies stored in moto
(`runctl aws policy --team vision [--admin]`), with the resources' real tags:

- a member writes under `teams/vision/<own name>/` and not under a teammate's; reads the
  whole team prefix and no other team's;
- a member stops, terminates and sends SSM commands to their own instances only; an admin
  to every instance of the team;
- the notebook side says it first: `stop` of a teammate's run is refused in one line naming
  the owner, before any stop reaches AWS; an admin's (c.Runctl.team_admins) goes through.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import strict_aws
from botocore.exceptions import ClientError
from test_cluster_launch import SSMAnswers

from runctl_jupyter.aws import policy, tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.aws.team_policy import team_policy
from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.session import Session
from runctl_jupyter.store.folders import create_run, write_spec

ACCOUNT = "123456789012"
REGION = "us-east-1"
AZ = "us-east-1a"


class Member:
    """An IAM user of the team: its name, its own access key, clients signed with it."""

    def __init__(self, aws: Clients, name: str, policy_doc: dict):
        self.name = name
        aws.iam.create_user(UserName=name)
        for part, doc in enumerate(_parts(policy_doc)):  # one managed policy holds 6,144
            arn = aws.iam.create_policy(
                PolicyName=f"runctl-team-{name}-{part}", PolicyDocument=json.dumps(doc)
            )["Policy"]["Arn"]
            aws.iam.attach_user_policy(UserName=name, PolicyArn=arn)
        key = aws.iam.create_access_key(UserName=name)["AccessKey"]
        self.clients = Clients(region=REGION)
        self.clients.session = boto3.session.Session(
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
            region_name=REGION,
        )


def _parts(policy_doc: dict) -> list[dict]:
    """The policy as the admin attaches it: managed policies of at most 6,144 characters
    (whitespace not counted), its statements in order (docs/aws.md, "A team")."""
    parts: list[list[dict]] = [[]]
    for statement in policy_doc["Statement"]:
        trial = {"Version": "2012-10-17", "Statement": [*parts[-1], statement]}
        if len(json.dumps(trial, separators=(",", ":"))) > 6144:
            parts.append([])
        parts[-1].append(statement)
    return [{"Version": "2012-10-17", "Statement": p} for p in parts]


@pytest.fixture
def team(aws: Clients) -> dict[str, Any]:
    setup(aws)
    bucket = policy.bucket_name(ACCOUNT, REGION)
    member = team_policy("vision", ACCOUNT, REGION, bucket)
    admin = team_policy("vision", ACCOUNT, REGION, bucket, admin=True)
    return {
        "aws": aws,
        "bucket": bucket,
        "alice": Member(aws, "alice", member),
        "bob": Member(aws, "bob", member),
        "carol": Member(aws, "carol", admin),
    }


def _instance(aws: Clients, run_id: str, owner: str, team: str = "vision") -> str:
    """A run's instance as runctl launches one: the run's tags, the owner's and team's."""
    run_tags = tags.tag_list(tags.run_tags(run_id, owner, "detr", team))
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        Placement={"AvailabilityZone": AZ},
        TagSpecifications=[{"ResourceType": "instance", "Tags": run_tags}],
    )["Instances"][0]["InstanceId"]


def _refused(call: Any, code: str) -> None:
    with pytest.raises(ClientError) as caught:
        call()
    assert caught.value.response["Error"]["Code"] == code


def _state(aws: Clients, instance_id: str) -> str:
    found = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]
    return found["Instances"][0]["State"]["Name"]


def test_the_team_policy_attaches_as_managed_policies_aws_takes(team):
    aws = team["aws"]
    whole = team_policy("vision", ACCOUNT, REGION, team["bucket"])
    with pytest.raises(ClientError) as caught:  # one document is over IAM's 6,144
        aws.iam.create_policy(PolicyName="whole", PolicyDocument=json.dumps(whole))
    assert caught.value.response["Error"]["Code"] == "LimitExceeded"
    attached = aws.iam.list_attached_user_policies(UserName="alice")["AttachedPolicies"]
    assert len(attached) == len(_parts(whole)) == 2


def test_each_member_is_who_sts_says_and_owner_is_that_name(team):
    from runctl_jupyter.runs.identity import Caller

    ident = team["alice"].clients.identity()
    assert ident["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/alice"
    assert Caller(ident["Arn"]).name == "alice"
    role = Caller(f"arn:aws:sts::{ACCOUNT}:assumed-role/TeamAdmin/carol@example.com")
    assert role.name == "carol@example.com" and "TeamAdmin" in role.names()


def test_a_member_writes_under_their_own_key_and_not_under_a_teammates(team):
    bucket = team["bucket"]
    alice, bob = team["alice"].clients.s3, team["bob"].clients.s3
    alice.put_object(Bucket=bucket, Key="teams/vision/alice/runs/a1/spec.json", Body=b"{}")
    bob.put_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/spec.json", Body=b"{}")
    _refused(
        lambda: alice.put_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/spec.json", Body=b"x"),
        "AccessDenied",
    )
    _refused(
        lambda: alice.delete_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/spec.json"),
        "AccessDenied",
    )
    _refused(  # nor beside the owner keys, nor in another team
        lambda: alice.put_object(Bucket=bucket, Key="teams/vision/index.json", Body=b"x"),
        "AccessDenied",
    )
    _refused(
        lambda: alice.put_object(Bucket=bucket, Key="teams/audio/alice/x", Body=b"x"),
        "AccessDenied",
    )
    # every member reads the whole team prefix, and lists it
    got = alice.get_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/spec.json")
    assert got["Body"].read() == b"{}"
    listed = alice.list_objects_v2(Bucket=bucket, Prefix="teams/vision/")
    assert sorted(o["Key"] for o in listed["Contents"]) == [
        "teams/vision/alice/runs/a1/spec.json",
        "teams/vision/bob/runs/b1/spec.json",
    ]
    team["aws"].s3.put_object(Bucket=bucket, Key="teams/audio/dan/x", Body=b"x")
    _refused(lambda: alice.get_object(Bucket=bucket, Key="teams/audio/dan/x"), "AccessDenied")
    # bob's object is still bob's
    body = team["aws"].s3.get_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/spec.json")
    assert body["Body"].read() == b"{}"
    # the admin writes anywhere in the team's prefix, not another team's
    carol = team["carol"].clients.s3
    carol.put_object(Bucket=bucket, Key="teams/vision/bob/runs/b1/stop.json", Body=b"{}")
    _refused(
        lambda: carol.put_object(Bucket=bucket, Key="teams/audio/dan/y", Body=b"x"),
        "AccessDenied",
    )


def test_a_member_stops_their_own_instance_not_a_teammates_and_an_admin_the_teams(team):
    aws = team["aws"]
    alices = _instance(aws, "a1", "alice")
    bobs = _instance(aws, "b1", "bob")
    other_team = _instance(aws, "d1", "dan", team="audio")
    bob = team["bob"].clients
    for call in (
        lambda: bob.ec2.stop_instances(InstanceIds=[alices]),
        lambda: bob.ec2.terminate_instances(InstanceIds=[alices]),
        # nor by retagging it as his first
        lambda: bob.ec2.create_tags(
            Resources=[alices], Tags=[{"Key": tags.OWNER, "Value": "bob"}]
        ),
    ):
        _refused(call, "UnauthorizedOperation")
    _refused(
        lambda: bob.ssm.send_command(
            InstanceIds=[alices],
            DocumentName="AWS-RunShellScript",
            Parameters={"commands": ["echo stop"]},
        ),
        "AccessDeniedException",
    )
    assert _state(aws, alices) == "running"
    assert tags.tag_dict(
        aws.ec2.describe_instances(InstanceIds=[alices])["Reservations"][0]["Instances"][0]["Tags"]
    )[tags.OWNER] == "alice"
    # his own: yes (SSM first, then the instance)
    bob.ssm.send_command(
        InstanceIds=[bobs], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}
    )
    bob.ec2.stop_instances(InstanceIds=[bobs])
    # the admin: every instance of the team, none of another team
    carol = team["carol"].clients
    carol.ssm.send_command(
        InstanceIds=[alices], DocumentName="AWS-RunShellScript", Parameters={"commands": ["true"]}
    )
    carol.ec2.terminate_instances(InstanceIds=[alices])
    assert _state(aws, alices) in ("shutting-down", "terminated")
    _refused(
        lambda: carol.ec2.terminate_instances(InstanceIds=[other_team]), "UnauthorizedOperation"
    )
    refused = [r for r in strict_aws.REFUSED if r[0].startswith("iam_policy_allows")]
    assert {r[1] for r in refused} >= {"StopInstances", "TerminateInstances", "SendCommand"}


def test_a_shared_volume_attaches_to_a_members_own_instance_and_only_gets_its_run_mark(
    team, data_volume
):
    aws, bob = team["aws"], team["bob"].clients
    shared = data_volume(aws, AZ)  # opted in by an admin: runctl:managed, no owner
    bobs, alices = _instance(aws, "b1", "bob"), _instance(aws, "a1", "alice")
    bob.ec2.create_tags(Resources=[shared], Tags=[{"Key": tags.VOLUME_RUN, "Value": "b1"}])
    _refused(
        lambda: bob.ec2.create_tags(Resources=[shared], Tags=[{"Key": tags.OWNER, "Value": "bob"}]),
        "UnauthorizedOperation",
    )
    _refused(
        lambda: bob.ec2.attach_volume(VolumeId=shared, InstanceId=alices, Device="/dev/sdf"),
        "UnauthorizedOperation",
    )
    bob.ec2.attach_volume(VolumeId=shared, InstanceId=bobs, Device="/dev/sdf")
    _refused(lambda: bob.ec2.delete_volume(VolumeId=shared), "UnauthorizedOperation")
    found = aws.ec2.describe_volumes(VolumeIds=[shared])["Volumes"][0]
    assert tags.tag_dict(found["Tags"]).get(tags.VOLUME_RUN) == "b1"
    assert tags.OWNER not in tags.tag_dict(found["Tags"])
    assert found["Attachments"][0]["InstanceId"] == bobs


def test_a_member_may_launch_only_what_carries_their_name_and_the_team(team):
    """The team policy's creating statements, evaluated by iam_eval: the request tags of a
    member's launch must name the member and the team (Cost Explorer's tags, by IAM)."""
    import iam_eval

    doc = team_policy("vision", ACCOUNT, REGION, team["bucket"])
    arn = f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/*"

    def launch(**request_tags: str) -> str:
        keys: dict[str, Any] = {"aws:username": "alice"}
        keys.update({f"aws:requesttag/{k}".lower(): v for k, v in request_tags.items()})
        return iam_eval.decide([doc], iam_eval.Context("ec2:RunInstances", arn, keys))

    mine = {tags.MANAGED: "true", tags.OWNER: "alice", tags.TEAM: "vision"}
    assert launch(**mine) == "Allow"
    assert launch(**{**mine, tags.OWNER: "bob"}) == "ImplicitDeny"
    assert launch(**{**mine, tags.TEAM: "audio"}) == "ImplicitDeny"
    assert launch(**{tags.MANAGED: "true", tags.OWNER: "alice"}) == "ImplicitDeny"


def test_a_member_deletes_only_their_own_runs_roles_an_admin_the_teams(team):
    """`cleanup` and a failed launch delete run roles: the team policy's conditions on the
    role's tags, evaluated by iam_eval with the tags the run role really carries."""
    import iam_eval

    from runctl_jupyter.aws import run_role

    aws = team["aws"]
    run_role.create(aws, tags.run_tags("b1", "bob", "detr", "vision"), team["bucket"])
    role = aws.iam.get_role(RoleName=run_role.name("b1"))["Role"]
    keys: dict[str, Any] = {
        f"aws:resourcetag/{t['Key']}".lower(): t["Value"] for t in role.get("Tags", [])
    }
    member = team_policy("vision", ACCOUNT, REGION, team["bucket"])
    admin = team_policy("vision", ACCOUNT, REGION, team["bucket"], admin=True)

    def delete(doc: dict, username: str) -> str:
        ctx = iam_eval.Context("iam:DeleteRole", role["Arn"], {**keys, "aws:username": username})
        return iam_eval.decide([doc], ctx)

    assert delete(member, "bob") == "Allow"
    assert delete(member, "alice") == "ImplicitDeny"
    assert delete(admin, "carol") == "Allow"
    other = {**keys, "aws:resourcetag/runctl:team": "audio"}
    ctx = iam_eval.Context("iam:DeleteRole", role["Arn"], {**other, "aws:username": "carol"})
    assert iam_eval.decide([admin], ctx) == "ImplicitDeny"


def _session(tmp_path: Path, member: Member, **settings: Any) -> Session:
    """A notebook of `member` in team vision (as ipython_config.py sets it): its own home,
    its own keys."""
    from traitlets.config import Config

    config = Config({"Runctl": {"home": str(tmp_path / member.name), "team": "vision", **settings}})
    session = Session(config=Runctl(config=config))
    session.backend("aws")._clients = member.clients
    return session


def _teammates_run(session: Session, run_id: str, owner: str, instance_id: str) -> None:
    """A teammate's running AWS run as the team store brings it into this home."""
    spec = create_run(
        session.store.runs_dir, kind="cell", code="pass", params={}, experiment="detr",
        name=run_id, project="detr", owner=owner, backend="aws", workdir=".", run_id=run_id,
        options={"team": "vision"},
    )  # fmt: skip
    spec["target"] = {"instance_id": instance_id, "region": REGION}
    run_dir = session.store.run_dir(run_id)
    write_spec(run_dir, spec)
    session.store.add_run(spec)
    session.store.set_status(run_id, "running")


def test_stopping_a_teammates_run_is_refused_in_one_line_unless_owner_or_admin(team, tmp_path):
    aws = team["aws"]
    alices = _instance(aws, "a1", "alice")
    bob = _session(tmp_path, team["bob"])
    _teammates_run(bob, "a1", "alice", alices)
    before = dict(team["bob"].clients.calls)
    with pytest.raises(RunctlError) as caught:
        bob.stop("a1")
    message = str(caught.value)
    assert "\n" not in message
    assert message == (
        "run a1 is alice's: only alice or a team admin (c.Runctl.team_admins) may stop it; "
        "ask alice, or an admin, to stop it"
    )
    asked = {k: n - before.get(k, 0) for k, n in team["bob"].clients.calls.items()}
    assert {k for k, n in asked.items() if n} == {"sts.GetCallerIdentity"}  # nothing else
    with pytest.raises(RunctlError, match="is alice's"):
        bob.backend_stop("a1", force=True)  # the panel's Stop button, the Lab's API
    assert _state(aws, alices) == "running"

    answers = SSMAnswers()
    try:
        carol = _session(tmp_path, team["carol"], team_admins=["carol"])
        _teammates_run(carol, "a1", "alice", alices)
        carol.stop("a1", wait=0.2)
        alice = _session(tmp_path, team["alice"])
        _teammates_run(alice, "a1", "alice", alices)
        alice.stop("a1", wait=0.2)
    finally:
        answers.close()
    stops = [s for s in answers.scripts.get(alices, []) if "a1" in s]
    assert len(stops) == 2  # the admin's and the owner's stop reached the agent over SSM


def test_in_a_team_the_owner_is_the_iam_identity_and_another_one_is_refused(team, tmp_path):
    alice = _session(tmp_path, team["alice"])
    run = alice.train(code="print(1)", backend="local", detach=True)
    spec = json.loads((alice.store.run_dir(run.id) / "spec.json").read_text())
    assert spec["owner"] == "alice" and spec["options"]["team"] == "vision"
    assert tags.spec_team(spec) == "vision"
    alice.wait(run)
    assert _session(tmp_path, team["bob"]).run_owner() == "bob"
    bob = _session(tmp_path, team["bob"], owner="robert")  # on purpose, not bob's IAM name
    with pytest.raises(RunctlError) as caught:
        bob.run_owner()
    assert str(caught.value) == (
        "c.Runctl.owner is 'robert' but your IAM identity is 'bob': in team 'vision' a run's "
        "owner is the IAM identity; unset c.Runctl.owner"
    )
    with pytest.raises(RunctlError, match="your IAM identity is 'bob'"):
        bob.train(code="print(1)", backend="local", detach=True)
    assert bob.store.list_runs() == []


def test_aws_policy_team_prints_the_members_or_the_admins_and_refuses_bad_words(
    aws: Clients, capsys
):
    from runctl_jupyter import cli

    assert cli.main(["aws", "policy", "--team", "vision"]) == 0
    printed = json.loads(capsys.readouterr().out)
    sids = {s["Sid"]: s for s in printed["Statement"]}
    bucket = policy.bucket_name(ACCOUNT, REGION)
    assert sids["TeamWriteOwn"]["Resource"] == (
        f"arn:aws:s3:::{bucket}/teams/vision/${{aws:username}}/*"
    )
    assert sids["ManageTaggedOnly"]["Condition"]["StringEquals"][
        f"aws:ResourceTag/{tags.OWNER}"
    ] == "${aws:username}"
    assert cli.main(["aws", "policy", "--team", "vision", "--admin"]) == 0
    admin = {s["Sid"]: s for s in json.loads(capsys.readouterr().out)["Statement"]}
    assert admin["ManageTaggedOnly"]["Condition"]["StringEquals"][
        f"aws:ResourceTag/{tags.TEAM}"
    ] == "vision"
    assert "TeamWriteAll" in admin and "TeamWriteOwn" not in admin
    for words, said in [
        (["aws", "policy", "--team", "vi/sion"], "is not usable in S3 keys and tags"),
        (["aws", "policy", "--admin"], "--admin needs --team"),
        (["aws", "setup", "--team", "vision"], "go with `aws policy`, not `aws setup`"),
    ]:
        assert cli.main(words) != 0
        captured = capsys.readouterr()
        assert said in captured.err and len(captured.err.strip().splitlines()) == 1
        assert captured.out == ""
