"""Data volumes (issue 16, item 2): `--data-size GB` makes an encrypted gp3 volume in the
AZ the launch chose first, the instance side formats it only when blank and mounts it at
/data (the played instance's disk tools record their exact argv), the end of the run
deletes it unless `--persistent`; a kept one is found again by `--volume NAME`; cleanup
leaves kept volumes and removes orphaned ones; bad input is one line, nothing created."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_end_to_end import _follow, _new_run

from runctl_jupyter.aws import data_volume, policy, resources, tags
from runctl_jupyter.aws.launch_errors import LaunchError
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.aws.user_policy import user_policy
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.commands import UsageProblem, parse, split_line
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.runs.start import check_options

WRITE = """
import os
d = os.environ["RUNCTL_DATA_DIR"]
assert str(runctl.data_dir) == d
open(os.path.join(d, "shard-0.txt"), "w").write("tokens")
print("DATA_DIR", d)
"""
READ = """
import os
d = os.environ["RUNCTL_DATA_DIR"]
print("READ", open(os.path.join(d, "shard-0.txt")).read(), sorted(os.listdir(d)))
"""


def _volume(aws, volume_id: str) -> dict | None:
    found = aws.ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [volume_id]}])[
        "Volumes"
    ]
    return found[0] if found else None


def _gone(aws, volume_id: str, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _volume(aws, volume_id) is None:
            return True
        time.sleep(0.3)
    return False


def _available(aws, volume_id: str, timeout: float = 60.0) -> str:
    """The volume's state once its instance is gone (the run's end terminates it)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = (_volume(aws, volume_id) or {}).get("State", "gone")
        if state != "in-use":
            return state
        time.sleep(0.3)
    return state


def _disk_log(instance, instance_id: str) -> list[str]:
    path = instance.home(instance_id) / "root" / "commands.log"
    return path.read_text().splitlines() if path.exists() else []


def _run(aws, instance, tmp_path: Path, code: str, options: dict, name: str) -> tuple:
    run_dir, spec = _new_run(tmp_path / name, code=code, options={"spot": False, **options})
    backend = AWSBackend(clients=aws, aws_poll=0.1, poll_interval=0.2)
    facts = backend.start(run_dir, spec, attempt=1)
    events = _follow(backend, run_dir, spec)
    exit_event = [e for e in events if e["type"] == "exit"][-1]
    assert exit_event["status"] == "succeeded", (exit_event, instance.runs[-1]["stderr"][-2000:])
    return run_dir, spec, facts


def test_data_size_makes_a_volume_in_the_launch_az_formats_mounts_and_deletes_it(
    aws, instance, tmp_path
):
    setup(aws)
    aws.calls.clear()
    run_dir, spec, facts = _run(aws, instance, tmp_path, WRITE, {"data_size": 5}, "one")
    volume_id = facts["volume"]
    assert volume_id and facts["volume_delete"] is True
    assert aws.calls["ec2.CreateVolume"] == 1  # one volume, created once
    inst = aws.ec2.describe_instances(InstanceIds=[facts["instance_id"]])["Reservations"][0]
    zone = inst["Instances"][0]["Placement"]["AvailabilityZone"]
    assert facts["availability_zone"] == zone

    # the instance side: blank -> formatted -> mounted at /data (the stand-in root's)
    root = instance.home(facts["instance_id"]) / "root"
    dev = str(
        root / "dev/disk/by-id" / f"nvme-Amazon_Elastic_Block_Store_{volume_id.replace('-', '')}"
    )
    mount = str(root / "data")
    assert _disk_log(instance, facts["instance_id"]) == [
        f"blkid -p {dev}",
        f"mkfs.ext4 -q -m 0 -E nodiscard -L runctl-data {dev}",
        f"mount {dev} {mount}",
        f"umount {mount}",
    ]
    assert f"DATA_DIR {mount}" in (run_dir / "stdout.log").read_text()
    assert spec["data_mount"] == "/data" and spec["data_volume"]["id"] == volume_id
    # the run's end deleted it, through the run's own role (the strict layer judged it)
    assert _gone(aws, volume_id), _volume(aws, volume_id)


def test_the_volume_is_created_encrypted_gp3_tagged_in_the_zone_chosen_first(
    aws, instance, tmp_path
):
    setup(aws)
    run_dir, spec, facts = _run(
        aws,
        instance,
        tmp_path,
        WRITE,
        {"data_size": 3, "persistent": True, "volume_name": "dataset-v2"},
        "tags",
    )
    vol = _volume(aws, facts["volume"])
    assert vol is not None, "a --persistent volume outlives its run"
    assert vol["Encrypted"] is True and vol["VolumeType"] == "gp3" and vol["Size"] == 3
    assert vol["AvailabilityZone"] == facts["availability_zone"]
    vt = tags.tag_dict(vol["Tags"])
    assert vt[tags.PERSISTENT] == "true" and vt[tags.VOLUME_NAME] == "dataset-v2"
    assert vt[tags.RUN_ID] == spec["run_id"] and vt[tags.MANAGED] == "true"
    assert _available(aws, facts["volume"]) == "available"  # detached: the instance is gone
    assert facts["volume_delete"] is False


def test_a_persistent_volume_is_kept_and_reused_by_name_in_its_zone(aws, instance, tmp_path):
    setup(aws)
    options = {"data_size": 2, "persistent": True, "volume_name": "ds"}
    _, _, first = _run(aws, instance, tmp_path, WRITE, options, "first")
    volume_id = first["volume"]
    assert _available(aws, volume_id) == "available"

    # cleanup leaves it: it is kept
    listing = resources.list_resources(aws)
    orphans = resources.orphans(listing, lambda run_id: "succeeded", "ann", all_owners=True)
    assert volume_id not in [r.id for r in orphans]

    run_dir, _, second = _run(aws, instance, tmp_path, READ, {"volume": "ds"}, "second")
    assert second["volume"] == volume_id
    assert second["availability_zone"] == first["availability_zone"]
    assert "READ tokens ['shard-0.txt']" in (run_dir / "stdout.log").read_text()
    log = _disk_log(instance, second["instance_id"])
    assert [line.split()[0] for line in log] == ["blkid", "mount"]  # never formatted again
    assert _available(aws, volume_id) == "available"  # kept after the second run too


def test_cleanup_removes_an_orphaned_data_volume_and_leaves_a_persistent_one(aws):
    run_tags = tags.run_tags("r-gone", "ann", "proj")
    scratch = data_volume.create(aws, "us-east-1a", 1, run_tags, None, poll=0.05)
    kept = data_volume.create(aws, "us-east-1a", 1, run_tags, "keep-me", poll=0.05)
    listing = resources.list_resources(aws)
    assert {scratch, kept} <= {r.id for r in listing if r.kind == "volume"}
    found = resources.orphans(listing, lambda run_id: "failed", "ann")
    assert [r.id for r in found if r.kind == "volume"] == [scratch]
    results = resources.cleanup(aws, found)
    assert all(ok for _, ok, _ in results), results
    assert _volume(aws, scratch) is None and _volume(aws, kept) is not None


# -- bad input: one line, nothing created ----------------------------------------------


@pytest.mark.parametrize(
    "line, words",
    [
        ("train --backend aws --data-size 0 x.py", "1 to 16384"),
        ("train --backend aws --data-size 70000 x.py", "1 to 16384"),
        ("train --backend aws --persistent x.py", "--persistent keeps a data volume"),
        ("train --backend aws --data-size 5 --volume-name a/b --persistent x.py", "letters"),
        ("train --backend aws --volume-name ds x.py", "add --persistent"),
        ("train --backend aws --data-size 5 --volume ds x.py", "drop one"),
    ],
)
def test_bad_volume_options_are_one_line(line, words):
    with pytest.raises(UsageProblem) as caught:
        parse(split_line(line), prog="runctl")
    message = str(caught.value)
    assert words in message and "\n" not in message.strip(), message


def test_data_size_on_the_local_backend_is_refused_in_one_line():
    with pytest.raises(RunctlError, match=r"--data-size is for cloud runs") as caught:
        check_options({"data_size": 5}, "local")
    assert "\n" not in str(caught.value)


def test_a_volume_name_that_does_not_exist_creates_nothing(aws, tmp_path):
    setup(aws)
    run_dir, spec = _new_run(tmp_path, options={"volume": "no-such-data"})
    backend = AWSBackend(clients=aws, aws_poll=0.1)
    aws.calls.clear()
    with pytest.raises(LaunchError, match="no volume named 'no-such-data' of ") as caught:
        backend.start(run_dir, spec, attempt=1)
    assert "\n" not in str(caught.value)
    created = [
        k
        for k in aws.calls
        if k.split(".")[1].startswith(("Create", "Run", "Request", "Put", "Attach"))
    ]
    assert created == [], created
    assert aws.ec2.describe_volumes()["Volumes"] == []


# -- who may create, detach and delete a data volume (least privilege) ---------------------


def test_a_runs_instance_deletes_only_its_own_runs_volume_that_is_not_kept(aws):
    from test_reach import _as_instance, _refused, _run_instance

    setup(aws)
    bucket = policy.bucket_name("123456789012", aws.region)
    me = _run_instance(aws, bucket, "runa")
    scratch = data_volume.create(aws, "us-east-1a", 1, tags.run_tags("runa", "ann", "p"), None)
    kept = data_volume.create(aws, "us-east-1a", 1, tags.run_tags("runa", "ann", "p"), "mine")
    other = data_volume.create(aws, "us-east-1a", 1, tags.run_tags("runb", "ann", "p"), None)
    ec2 = _as_instance(aws, me, "ec2")
    for volume in (kept, other):
        _refused(lambda v=volume: ec2.delete_volume(VolumeId=v), "UnauthorizedOperation")
    aws.ec2.attach_volume(VolumeId=scratch, InstanceId=me, Device="/dev/sdf")
    ec2.detach_volume(VolumeId=scratch, InstanceId=me)
    ec2.delete_volume(VolumeId=scratch)
    assert _volume(aws, scratch) is None and _volume(aws, kept) and _volume(aws, other)


def test_the_user_creates_only_encrypted_volumes_tagged_as_runctls():
    from iam_eval import Context, allowed

    doc = user_policy("123456789012", "us-east-1")
    arn = "arn:aws:ec2:us-east-1:123456789012:volume/*"
    managed = {"aws:requesttag/runctl:managed": "true"}

    def ctx(**keys: str) -> Context:
        return Context("ec2:CreateVolume", arn, keys)

    assert allowed([doc], [ctx(**managed, **{"ec2:encrypted": "true"})]) is None
    assert allowed([doc], [ctx(**managed, **{"ec2:encrypted": "false"})]) is not None
    assert allowed([doc], [ctx(**{"ec2:encrypted": "true"})]) is not None
    tag_on_create = Context("ec2:CreateTags", arn, {"ec2:createaction": "CreateVolume", **managed})
    assert allowed([doc], [tag_on_create]) is None


# -- a spot interruption: the replacement is in the volume's AZ and mounts the same disk --


def test_a_spot_replacement_attaches_and_mounts_the_same_volume_unformatted(
    aws, instance, tmp_path
):
    from test_spot_resume_aws import (
        OPTIONS,
        PARAMS,
        _instance_events,
        _interrupt_at_step,
        _session,
        _wait,
        fault_helpers,
    )

    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code=fault_helpers.TRAIN,
        params=PARAMS,
        backend="aws",
        options={**OPTIONS, "data_size": 4},
        detach=True,
    )
    target = json.loads((session.store.run_dir(run.id) / "aws.json").read_text())
    first, volume_id = target["instance_id"], target["volume"]
    zone = _volume(aws, volume_id)["AvailabilityZone"]
    fleet = aws.ec2.describe_fleets(FleetIds=[target["fleet_id"]])["Fleets"][0]
    subnets = [o["SubnetId"] for c in fleet["LaunchTemplateConfigs"] for o in c["Overrides"]]
    zones = {s["AvailabilityZone"] for s in aws.ec2.describe_subnets(SubnetIds=subnets)["Subnets"]}
    assert zones == {zone}  # every candidate of the fleet is in the volume's AZ
    del session

    _interrupt_at_step(instance, run.id, first, 15)
    _, old, new = _wait(lambda: instance.refills, 60, "the fleet refilled", instance)[0]
    assert old == first
    _wait(
        lambda: any(e["type"] == "exit" for e in _instance_events(instance, run.id, new)),
        180,
        "attempt 2 ends on the replacement",
        instance,
    )
    new_zone = aws.ec2.describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]
    assert new_zone["Placement"]["AvailabilityZone"] == zone
    assert _gone(aws, volume_id, timeout=90)  # the run is over: the scratch volume went
    first_log, new_log = _disk_log(instance, first), _disk_log(instance, new)
    assert [line.split()[0] for line in first_log] == ["blkid", "mkfs.ext4", "mount"]
    assert [line.split()[0] for line in new_log] == ["blkid", "mount", "umount"], new_log


def test_resources_shows_a_data_volume_with_its_name_size_and_month_price(
    aws, aws_clients_env, tmp_path
):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.cost.prices import table
    from runctl_jupyter.session import Session

    run_tags = tags.run_tags("r-data", "moto", "proj")
    kept = data_volume.create(aws, "us-east-1b", 500, run_tags, "dataset-v2", poll=0.05)
    session = Session(config=Runctl(home=str(tmp_path / "home")), shell=None)
    rows = {r["id"]: r for r in session.resources().rows}
    gp3 = table()["ebs_gb_month"]["us-east-1"]["gp3"]
    assert rows[kept]["kind"] == "volume"
    assert "500 GiB gp3 us-east-1b name=dataset-v2" in rows[kept]["detail"]
    assert rows[kept]["usd_per_month"] == round(500 * gp3, 2)


def test_a_forced_stop_from_the_notebook_deletes_the_scratch_volume_too(aws, instance, tmp_path):
    setup(aws)
    code = "import time\nrunctl.log(step=0, loss=1.0)\ntime.sleep(120)\n"
    run_dir, spec = _new_run(tmp_path, code=code, options={"spot": False, "data_size": 1})
    backend = AWSBackend(clients=aws, aws_poll=0.1, poll_interval=0.2)
    facts = backend.start(run_dir, spec, attempt=1)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the code runs, with the volume mounted
        backend.pull(run_dir, spec, force=True)
        if (run_dir / "events.jsonl").exists() and '"metric"' in (
            run_dir / "events.jsonl"
        ).read_text():
            break
        time.sleep(0.3)
    backend.stop(run_dir, {**spec, "target": facts}, force=True)
    assert _gone(aws, facts["volume"]), _volume(aws, facts["volume"])


def test_a_second_persistent_volume_of_the_same_name_is_refused_before_anything(aws, tmp_path):
    from runctl_jupyter.aws.clients import owner_from_arn

    setup(aws)
    owner = owner_from_arn(aws.identity()["Arn"])
    run_tags = tags.run_tags("r-old", owner, "proj")
    existing = data_volume.create(aws, "us-east-1a", 1, run_tags, "ds", poll=0.05)
    options = {"data_size": 1, "persistent": True, "volume_name": "ds"}
    run_dir, spec = _new_run(tmp_path, options=options)
    aws.calls.clear()
    with pytest.raises(LaunchError, match=f"a volume named 'ds' already \\({existing}\\)"):
        AWSBackend(clients=aws, aws_poll=0.1).start(run_dir, spec, attempt=1)
    assert "ec2.CreateVolume" not in aws.calls and "ec2.RunInstances" not in aws.calls
    assert [v["VolumeId"] for v in aws.ec2.describe_volumes()["Volumes"]] == [existing]


def test_an_attached_volume_is_not_deleted_as_aws_refuses_it(aws):
    """DeleteVolume: "The volume must be in the available state (not attached to an
    instance)" (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DeleteVolume.html):
    moto refuses it itself with AWS's VolumeInUse, so the strict layer has no rule for it;
    this shows it does, for the volumes runctl deletes."""
    from botocore.exceptions import ClientError

    run_tags = tags.run_tags("r1", "ann", "proj")
    volume_id = data_volume.create(aws, "us-east-1a", 1, run_tags, None, poll=0.05)
    subnet = aws.ec2.describe_subnets(
        Filters=[{"Name": "availability-zone", "Values": ["us-east-1a"]}]
    )["Subnets"][0]["SubnetId"]
    instance_id = aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        SubnetId=subnet,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags.tag_list(run_tags)}],
    )["Instances"][0]["InstanceId"]
    aws.ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    with pytest.raises(ClientError) as caught:
        aws.ec2.delete_volume(VolumeId=volume_id)
    assert caught.value.response["Error"]["Code"] == "VolumeInUse"
    aws.ec2.detach_volume(VolumeId=volume_id, InstanceId=instance_id)
    aws.ec2.delete_volume(VolumeId=volume_id)
    assert _volume(aws, volume_id) is None
