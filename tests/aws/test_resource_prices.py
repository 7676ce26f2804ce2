"""`runctl resources` prices storage next to instances: volumes by type (GB-month, io1/io2
IOPS-month), snapshots (the standard snapshot GB-month, an upper bound) and the bucket's
STANDARD bytes under runctl/ (S3 Standard GB-month), from the bundled table."""

from __future__ import annotations

import pytest

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.cost.prices import HOURS_PER_MONTH, table

GIB = 1024**3


def _tagged(kind: str, run: str) -> list[dict]:
    return [{"ResourceType": kind, "Tags": tags.tag_list(tags.run_tags(run, "moto", "p"))}]


@pytest.fixture
def session(aws_clients_env, tmp_path):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    return Session(config=Runctl(home=str(tmp_path / "home")), shell=None)


def test_volumes_snapshots_and_the_bucket_are_priced(aws: Clients, session):
    ebs = table()["ebs_gb_month"]["us-east-1"]
    iops_price = table()["ebs_iops_month"]["us-east-1"]["io1"]
    s3_price = table()["s3_gb_month"]["us-east-1"]["STANDARD"]
    gp3 = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=20,
        VolumeType="gp3",
        TagSpecifications=_tagged("volume", "r1"),
    )["VolumeId"]
    io1 = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a",
        Size=100,
        VolumeType="io1",
        Iops=1000,
        TagSpecifications=_tagged("volume", "r1"),
    )["VolumeId"]
    snap = aws.ec2.create_snapshot(VolumeId=gp3, TagSpecifications=_tagged("snapshot", "r1"))[
        "SnapshotId"
    ]
    setup(aws)
    bucket = f"runctl-{aws.identity()['Account']}-us-east-1"
    sizes = [3 * 1024 * 1024, 5 * 1024 * 1024]
    for i, size in enumerate(sizes):
        aws.s3.put_object(Bucket=bucket, Key=f"runctl/runs/r1/chunk-{i}", Body=b"x" * size)
    aws.s3.put_object(Bucket=bucket, Key="elsewhere/big", Body=b"y" * 1024)  # not runctl's

    result = session.resources()
    rows = {r["id"]: r for r in result.rows}
    costs = session._resource_costs(result.listing)

    assert rows[gp3]["usd_per_month"] == round(20 * ebs["gp3"], 2)
    assert "gp3" in rows[gp3]["priced"]
    io1_month = 100 * ebs["io1"] + 1000 * iops_price
    assert rows[io1]["usd_per_month"] == round(io1_month, 2)
    assert costs[io1]["rate"] == pytest.approx(io1_month / HOURS_PER_MONTH)
    assert "IOPS" in rows[io1]["priced"]

    assert costs[snap]["rate"] == pytest.approx(20 * ebs["snapshot"] / HOURS_PER_MONTH)
    assert "upper bound" in rows[snap]["priced"] and rows[snap]["kind"] == "snapshot"

    assert rows[bucket]["kind"] == "bucket" and "2 objects" in rows[bucket]["detail"]
    expected = sum(sizes) / GIB * s3_price / HOURS_PER_MONTH
    assert costs[bucket]["rate"] == pytest.approx(expected)
    assert "S3 Standard" in rows[bucket]["priced"]

    storage = sum(costs[i]["rate"] for i in (gp3, io1, snap, bucket)) * HOURS_PER_MONTH
    assert f"storage ${storage:.2f}/month" in str(result)
    assert result.exit_code == 0


def test_cleanup_deletes_an_orphan_snapshot_and_never_the_bucket(aws: Clients, session):
    vol = aws.ec2.create_volume(
        AvailabilityZone="us-east-1a", Size=5, TagSpecifications=_tagged("volume", "gone")
    )["VolumeId"]
    snap = aws.ec2.create_snapshot(VolumeId=vol, TagSpecifications=_tagged("snapshot", "gone"))[
        "SnapshotId"
    ]
    setup(aws)
    bucket = f"runctl-{aws.identity()['Account']}-us-east-1"
    assert bucket in {r["id"] for r in session.resources().rows}
    text = str(session.cleanup(yes=True))
    assert f"snapshot {snap}: deleted" in text and f"volume {vol}: deleted" in text
    assert bucket not in text  # runctl's bucket (role=setup) is never an orphan
    left = aws.ec2.describe_snapshots(OwnerIds=["self"])["Snapshots"]
    assert snap not in {s["SnapshotId"] for s in left}
    assert aws.s3.head_bucket(Bucket=bucket)
