"""Leases on shared resources (docs/teams.md, "Leases"), against the moto server: S3's
conditional writes as moto answers them, racing acquires, expiry, read-only sharing,
`cleanup`, `--share read-only` where EBS allows it, the strict layer's rules for them,
two users with their own IAM access keys, and who may write which lease key."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
import strict_aws
import strict_iam
from botocore.exceptions import ClientError

from runctl_jupyter.agent.lease import Keeper, guard_key, holder_key
from runctl_jupyter.aws import leases, policy, run_role, share, tags
from runctl_jupyter.aws.clients import AWSError, Clients
from runctl_jupyter.aws.inventory import Resource
from runctl_jupyter.aws.resources import cleanup
from runctl_jupyter.aws.setup import setup

AZ = "us-east-1a"
PREFIX = "runctl/"


@pytest.fixture
def ready(aws: Clients) -> Clients:
    setup(aws)
    return aws


def _bucket(aws: Clients) -> str:
    return policy.bucket_name("123456789012", aws.region)


def _code(exc: BaseException) -> str:
    assert isinstance(exc, ClientError), exc
    return exc.response["Error"]["Code"]


# -- S3 conditional writes, as the moto server answers them ----------------------------


def test_moto_honours_if_none_match_and_if_match_on_put_and_delete(ready: Clients):
    s3, bucket, key = ready.s3, _bucket(ready), "runctl/leases/probe.json"
    etag = s3.put_object(Bucket=bucket, Key=key, Body=b"1", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError) as again:
        s3.put_object(Bucket=bucket, Key=key, Body=b"2", IfNoneMatch="*")
    assert _code(again.value) == "PreconditionFailed"
    with pytest.raises(ClientError) as stale:
        s3.put_object(Bucket=bucket, Key=key, Body=b"2", IfMatch='"0123"')
    assert _code(stale.value) == "PreconditionFailed"
    etag2 = s3.put_object(Bucket=bucket, Key=key, Body=b"2", IfMatch=etag)["ETag"]
    with pytest.raises(ClientError) as old:
        s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag)
    assert _code(old.value) == "PreconditionFailed"
    s3.delete_object(Bucket=bucket, Key=key, IfMatch=etag2)
    assert s3.list_objects_v2(Bucket=bucket, Prefix=key)["KeyCount"] == 0


def test_the_strict_layer_refuses_if_none_match_with_an_etag(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key="runctl/leases/x.json", Body=b"1", IfNoneMatch='"abc"')
    assert _code(caught.value) == "NotImplemented"
    assert s3.list_objects_v2(Bucket=bucket, Prefix="runctl/leases/")["KeyCount"] == 0


# -- acquire, refuse, expire, release ----------------------------------------------------


def test_racing_read_write_acquires_exactly_one_wins(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    racers = 6
    barrier = threading.Barrier(racers)
    won: list[str] = []
    refused: list[str] = []

    def race(n: int) -> None:
        run_id = f"run{n}"
        barrier.wait()
        try:
            leases.acquire(s3, bucket, PREFIX, "vol-race", "rw", f"user{n}", run_id)
            won.append(run_id)
        except leases.LeaseHeld as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=race, args=(n,)) for n in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(won) == 1, (won, refused)
    assert len(refused) == racers - 1
    winner = won[0]
    assert all(f"'s run {winner}" in line and "\n" not in line for line in refused), refused
    guard = json.loads(
        s3.get_object(Bucket=bucket, Key=guard_key(PREFIX, "vol-race"))["Body"].read()
    )
    assert guard["run_id"] == winner
    # the losers left no holder behind
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="runctl/leases/vol-race/")
    assert [o["Key"] for o in listed["Contents"]] == [holder_key(PREFIX, "vol-race", "rw", winner)]


def test_a_lease_refuses_another_run_names_the_holder_and_is_free_once_expired(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    leases.acquire(s3, bucket, PREFIX, "vol-a", "rw", "alice", "runA", seconds=1.0)
    with pytest.raises(leases.LeaseHeld) as caught:
        leases.acquire(s3, bucket, PREFIX, "vol-a", "rw", "bob", "runB")
    line = str(caught.value)
    assert "vol-a" in line and "alice's run runA" in line and "runctl stop runA" in line
    time.sleep(1.2)  # no renewal: it expires, and a reader treats it as free
    assert leases.holders(s3, bucket, PREFIX, "vol-a") == []
    leases.acquire(s3, bucket, PREFIX, "vol-a", "rw", "bob", "runB")  # taken over (IfMatch)
    assert [h["run_id"] for h in leases.holders(s3, bucket, PREFIX, "vol-a")] == ["runB"]


def test_the_same_run_takes_its_own_lease_again_on_a_next_attempt(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    leases.acquire(s3, bucket, PREFIX, "i-0abc", "rw", "alice", "runA")
    leases.acquire(s3, bucket, PREFIX, "i-0abc", "rw", "alice", "runA")
    assert [h["run_id"] for h in leases.holders(s3, bucket, PREFIX, "i-0abc")] == ["runA"]
    with pytest.raises(leases.LeaseHeld, match="instance i-0abc is in use by alice's run runA"):
        leases.acquire(s3, bucket, PREFIX, "i-0abc", "rw", "bob", "runB")


def test_read_only_leases_are_shared_and_block_a_read_write_acquire(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    leases.acquire(s3, bucket, PREFIX, "vol-ro", "ro", "alice", "runA")
    leases.acquire(s3, bucket, PREFIX, "vol-ro", "ro", "bob", "runB")
    assert sorted(h["run_id"] for h in leases.holders(s3, bucket, PREFIX, "vol-ro")) == [
        "runA",
        "runB",
    ]
    with pytest.raises(leases.LeaseHeld, match="shared read-only by .*--share read-only"):
        leases.acquire(s3, bucket, PREFIX, "vol-ro", "rw", "carol", "runC")
    # the refused read-write acquire left nothing: no guard, no holder of its own
    assert leases.rw_holder(s3, bucket, PREFIX, "vol-ro")[0] is None
    leases.release(s3, bucket, PREFIX, "runA", [{"resource": "vol-ro", "mode": "ro"}])
    leases.release(s3, bucket, PREFIX, "runB", [{"resource": "vol-ro", "mode": "ro"}])
    leases.acquire(s3, bucket, PREFIX, "vol-ro", "rw", "carol", "runC")
    with pytest.raises(leases.LeaseHeld, match="leased read-write by carol's run runC"):
        leases.acquire(s3, bucket, PREFIX, "vol-ro", "ro", "dave", "runD")


def test_the_keeper_renews_with_if_match_and_its_release_frees_the_lease(ready: Clients):
    s3, bucket = ready.s3, _bucket(ready)
    held = leases.acquire_all(s3, bucket, PREFIX, "runA", "alice", {"volume": "vol-k"}, 3600)
    cfg = {"bucket": bucket, "prefix": PREFIX, **leases.sync_settings(held, 0.2)}
    keeper = Keeper(cfg, "runA", client=s3).start()
    try:
        key = holder_key(PREFIX, "vol-k", "rw", "runA")
        first = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert first["expires_at"] - time.time() < 5  # the agent's short expiry, not the launch's
        time.sleep(0.8)
        later = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert later["renewed_at"] > first["renewed_at"]
    finally:
        keeper.release()
    assert leases.holders(s3, bucket, PREFIX, "vol-k") == []


# -- cleanup ------------------------------------------------------------------------------


def _managed_volume(aws: Clients, run_id: str) -> str:
    vol_tags = tags.tag_list({tags.MANAGED: "true", tags.RUN_ID: run_id, tags.OWNER: "ann"})
    spec = [{"ResourceType": "volume", "Tags": vol_tags}]
    return aws.ec2.create_volume(AvailabilityZone=AZ, Size=1, TagSpecifications=spec)["VolumeId"]


def test_cleanup_refuses_a_leased_volume_and_deletes_it_once_the_lease_is_gone(ready: Clients):
    vol = _managed_volume(ready, "gone")
    bucket = _bucket(ready)
    leases.acquire(ready.s3, bucket, PREFIX, vol, "rw", "bob", "runB")
    resource = Resource("volume", vol, ready.region, "available", None, {tags.MANAGED: "true"})
    [(_, ok, what)] = cleanup(ready, [resource])
    assert not ok and what.startswith("leased by bob's run runB: left alone")
    assert ready.ec2.describe_volumes(VolumeIds=[vol])["Volumes"]
    leases.release(ready.s3, bucket, PREFIX, "runB", [{"resource": vol, "mode": "rw"}])
    [(_, ok, what)] = cleanup(ready, [resource])
    assert ok and what == "deleted"


# -- --share read-only: where EBS allows it ----------------------------------------------


MANAGED = tags.tag_list({tags.MANAGED: "true", tags.PERSISTENT: "true"})


def _volume(aws: Clients, kind: str, **extra: Any) -> str:
    """A volume opted in to runctl (the user's policy attaches only those)."""
    spec = [{"ResourceType": "volume", "Tags": MANAGED}]
    return aws.ec2.create_volume(
        AvailabilityZone=AZ, Size=4, VolumeType=kind, TagSpecifications=spec, **extra
    )["VolumeId"]


def _io2(aws: Clients, multi: bool = True) -> str:
    return _volume(aws, "io2", Iops=100, MultiAttachEnabled=multi)


def test_share_read_only_is_refused_for_gp3_with_the_reason_and_what_to_do(ready: Clients):
    gp3 = ready.ec2.create_volume(AvailabilityZone=AZ, Size=1, VolumeType="gp3")["VolumeId"]
    with pytest.raises(AWSError) as caught:
        share.check(ready, gp3, "t3.micro")
    line = str(caught.value)
    assert "\n" not in line
    assert "gp3" in line and "io1/io2" in line and "drop --share" in line
    assert share.DOC in line
    with pytest.raises(AWSError, match="Multi-Attach off"):
        share.check(ready, _io2(ready, multi=False), "t3.micro")
    with pytest.raises(AWSError, match="not built on the Nitro System"):
        share.check(ready, _io2(ready), "t2.micro")
    share.check(ready, _io2(ready), "t3.micro")  # io2, Multi-Attach, Nitro: allowed


def _instance(aws: Clients, instance_type: str = "t3.micro") -> str:
    subnet = aws.ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [AZ]}])
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType=instance_type,
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet["Subnets"][0]["SubnetId"],
        TagSpecifications=[{"ResourceType": "instance", "Tags": MANAGED}],
    )["Instances"][0]["InstanceId"]


def test_the_strict_layer_holds_ebs_multi_attach_rules(ready: Clients):
    ec2 = ready.ec2
    with pytest.raises(ClientError) as caught:
        ec2.create_volume(AvailabilityZone=AZ, Size=1, VolumeType="gp3", MultiAttachEnabled=True)
    assert _code(caught.value) == "InvalidParameterCombination"
    first, second, xen = _instance(ready), _instance(ready), _instance(ready, "t2.micro")
    gp3 = _volume(ready, "gp3")
    ec2.attach_volume(VolumeId=gp3, InstanceId=first, Device="/dev/sdf")
    with pytest.raises(ClientError) as in_use:
        ec2.attach_volume(VolumeId=gp3, InstanceId=second, Device="/dev/sdf")
    assert _code(in_use.value) == "VolumeInUse"
    io2 = _io2(ready)
    ec2.attach_volume(VolumeId=io2, InstanceId=first, Device="/dev/sdg")
    ec2.attach_volume(VolumeId=io2, InstanceId=second, Device="/dev/sdg")  # Multi-Attach
    with pytest.raises(ClientError) as not_nitro:
        ec2.attach_volume(VolumeId=io2, InstanceId=xen, Device="/dev/sdg")
    assert _code(not_nitro.value) == "InvalidParameterCombination"
    assert ("attach_volume_in_use", "AttachVolume", "VolumeInUse") in [
        r[:3] for r in strict_aws.REFUSED
    ]


# -- two users, their own access keys ------------------------------------------------------


def _user_clients(aws: Clients, name: str) -> Clients:
    """Clients signed with IAM user `name`'s own access key."""
    aws.iam.create_user(UserName=name)
    key = aws.iam.create_access_key(UserName=name)["AccessKey"]
    clients = Clients(region=aws.region)
    clients.session = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"]
    )
    return clients


def test_two_users_with_their_own_keys_see_each_others_lease(ready: Clients, tmp_path: Path):
    from runctl_jupyter.aws.clients import owner_from_arn

    alice, bob = _user_clients(ready, "alice"), _user_clients(ready, "bob")
    assert owner_from_arn(alice.identity()["Arn"]) == "alice"
    bucket = _bucket(ready)
    vol = "vol-shared01"
    leases.acquire(
        alice.s3, bucket, PREFIX, vol, "rw", owner_from_arn(alice.identity()["Arn"]), "run-a1"
    )
    with pytest.raises(leases.LeaseHeld) as caught:
        leases.acquire(
            bob.s3, bucket, PREFIX, vol, "rw", owner_from_arn(bob.identity()["Arn"]), "run-b1"
        )
    assert "alice's run run-a1" in str(caught.value)


# -- IAM: who may write which lease key ----------------------------------------------------


def _as_instance(aws: Clients, instance_id: str) -> Any:
    key = strict_iam.instance_key(instance_id)
    strict_aws.INSTANCE_KEYS[key] = instance_id
    return boto3.client(
        "s3",
        region_name=aws.region,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id=key,
        aws_secret_access_key="testing",
    )


def test_a_runs_instance_renews_only_its_own_lease_holders(ready: Clients):
    bucket = _bucket(ready)
    profile = run_role.create(ready, tags.run_tags("runa", "ann", "p"), bucket)
    subnet = ready.ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [AZ]}])
    instance_id = ready.ec2.run_instances(
        ImageId=ready.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet["Subnets"][0]["SubnetId"],
        IamInstanceProfile={"Name": profile},
    )["Instances"][0]["InstanceId"]
    held = leases.acquire_all(ready.s3, bucket, PREFIX, "runa", "ann", {"volume": "vol-1"}, 3600)
    leases.acquire(ready.s3, bucket, PREFIX, "vol-2", "rw", "bob", "runb")
    s3 = _as_instance(ready, instance_id)
    keeper = Keeper({"bucket": bucket, "prefix": PREFIX, "leases": held}, "runa", client=s3)
    keeper.renew()  # HEAD, then PutObject IfMatch on its own holder
    keeper.release()  # DeleteObject IfMatch (needs GetObject too)
    assert leases.holders(ready.s3, bucket, PREFIX, "vol-1") == []
    for call in (
        lambda: s3.put_object(
            Bucket=bucket, Key=holder_key(PREFIX, "vol-2", "rw", "runb"), Body=b"x"
        ),
        lambda: s3.put_object(Bucket=bucket, Key=guard_key(PREFIX, "vol-2"), Body=b"x"),
        lambda: s3.delete_object(Bucket=bucket, Key=holder_key(PREFIX, "vol-2", "rw", "runb")),
        lambda: s3.put_object(
            Bucket=bucket, Key=holder_key(PREFIX, "vol-2", "rw", "xruna"), Body=b"x"
        ),
    ):
        with pytest.raises(ClientError) as caught:
            call()
        assert _code(caught.value) == "AccessDenied"
    assert [h["run_id"] for h in leases.holders(ready.s3, bucket, PREFIX, "vol-2")] == ["runb"]


def test_the_user_policy_covers_the_lease_prefix():
    import iam_eval

    from runctl_jupyter.aws.user_policy import user_policy

    doc = user_policy("123456789012", "us-east-1", "b")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        ctx = iam_eval.Context(action, "arn:aws:s3:::b/runctl/leases/vol-1.json")
        assert iam_eval.allowed([doc], [ctx]) is None
    listing = iam_eval.Context(
        "s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "runctl/leases/vol-1/ro/"}
    )
    assert iam_eval.allowed([doc], [listing]) is None


# -- the surfaces: one line, nothing launched ----------------------------------------------


def test_a_leased_instance_refuses_a_shell_train_in_one_line_before_any_launch(
    ready: Clients, tmp_path: Path, monkeypatch, capsys
):
    import aws_errors_inject as fx

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.chdir(tmp_path)
    kept = _instance(ready)
    leases.acquire(ready.s3, _bucket(ready), PREFIX, kept, "rw", "ann", "run-ann1")
    (tmp_path / "train.py").write_text("print('hi')\n")
    before = ready.calls.get("ec2.RunInstances", 0)
    line = fx.one_line(
        capsys,
        ["train", "--backend", "aws", "--instance", kept, "--yes", "train.py"],
        f"instance {kept} is in use by ann's run run-ann1 (leased)",
    )
    assert "runctl stop run-ann1" in line
    assert ready.calls.get("ec2.RunInstances", 0) == before
    assert leases.rw_holder(ready.s3, _bucket(ready), PREFIX, kept)[0]["run_id"] == "run-ann1"


def test_share_needs_a_volume_and_an_aws_run():
    from runctl_jupyter.commands import parse, split_line
    from runctl_jupyter.commands.argparser import UsageProblem
    from runctl_jupyter.errors import RunctlError
    from runctl_jupyter.runs.start import check_options

    with pytest.raises(RunctlError, match="--share read-only shares a --volume"):
        parse(split_line("train --backend aws --share read-only"))
    with pytest.raises(UsageProblem):
        parse(split_line("train --backend aws --volume vol-1 --share read-write"))
    ns = parse(split_line("train --backend aws --volume vol-1 --share read-only"))
    assert ns.share == "read-only"
    with pytest.raises(RunctlError, match="--share is for cloud runs"):
        check_options({"share": "read-only"}, "local")


def test_a_gp3_share_is_refused_by_the_backend_before_anything_is_made(
    ready: Clients, tmp_path: Path
):
    from runctl_jupyter.backends.aws import AWSBackend
    from runctl_jupyter.store.folders import create_run

    gp3 = _volume(ready, "gp3")
    runs = tmp_path / "runs"
    runs.mkdir()
    options = {"instance_type": "t3.micro", "volume": gp3, "share": "read-only"}
    spec = create_run(
        runs,
        kind="cell",
        code="print(1)\n",
        params={},
        experiment="e",
        name=None,
        project="p",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options=options,
        environment={"packages": {}},
    )
    before = dict(ready.calls)
    with pytest.raises(AWSError, match=f"volume {gp3} is gp3"):
        AWSBackend(clients=ready).start(runs / spec["run_id"], spec, attempt=1)
    made = ("ec2.RunInstances", "ec2.CreateFleet", "ec2.CreateLaunchTemplate", "iam.CreateRole")
    assert all(ready.calls.get(c, 0) == before.get(c, 0) for c in made)
    assert ready.s3.list_objects_v2(Bucket=_bucket(ready), Prefix="runctl/leases/")["KeyCount"] == 0


def test_an_io2_multi_attach_volume_in_use_is_attached_to_a_second_run_read_only(
    ready: Clients,
):
    from runctl_jupyter.aws.launch import LaunchRequest, provision, terminate_launched

    io2 = _io2(ready)
    first = _instance(ready)
    ready.ec2.attach_volume(VolumeId=io2, InstanceId=first, Device="/dev/sdf")
    share.check(ready, io2, "t3.micro")
    bucket = _bucket(ready)
    leases.acquire(ready.s3, bucket, PREFIX, io2, "ro", "ann", "run-1")
    leases.acquire(ready.s3, bucket, PREFIX, io2, "ro", "bob", "run-2")
    req = LaunchRequest(
        run_id="run-2",
        owner="bob",
        project="p",
        instance_type="t3.micro",
        spot=False,
        volume=io2,
        share=True,
        poll=0.05,
        ssm_timeout=5,
    )
    launched = provision(ready, req)
    try:
        volume = ready.ec2.describe_volumes(VolumeIds=[io2])["Volumes"][0]
        assert volume["State"] == "in-use"
        assert launched.instance_id in [a["InstanceId"] for a in volume["Attachments"]]
        with pytest.raises(Exception, match="not available"):  # without --share: refused
            provision(ready, LaunchRequest(**{**req.__dict__, "share": False, "run_id": "run-3"}))
    finally:
        terminate_launched(ready, launched)


def test_a_kept_instance_under_the_shared_role_writes_holders_but_never_a_guard(ready: Clients):
    bucket = _bucket(ready)
    subnet = ready.ec2.describe_subnets(Filters=[{"Name": "availability-zone", "Values": [AZ]}])
    kept = ready.ec2.run_instances(
        ImageId=ready.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet["Subnets"][0]["SubnetId"],
        IamInstanceProfile={"Name": policy.PROFILE_NAME},
    )["Instances"][0]["InstanceId"]
    held = leases.acquire_all(ready.s3, bucket, PREFIX, "runk", "ann", {"instance": kept}, 3600)
    s3 = _as_instance(ready, kept)
    keeper = Keeper({"bucket": bucket, "prefix": PREFIX, "leases": held}, "runk", client=s3)
    keeper.renew()
    keeper.release()
    assert leases.holders(ready.s3, bucket, PREFIX, kept) == []
    with pytest.raises(ClientError) as caught:
        s3.put_object(Bucket=bucket, Key=guard_key(PREFIX, kept), Body=b"x")
    assert _code(caught.value) == "AccessDenied"
