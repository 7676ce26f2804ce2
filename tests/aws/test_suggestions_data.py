"""The staged-data suggestions before launch (issue 16, item 4), against moto: a big
`--data` prefix fetched by every run, and a `--volume` restored from a snapshot
without `--prewarm`; shown once per notebook, silent when they should be."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_aws_session import _session

from runctl_jupyter.cost.estimate import before_launch
from runctl_jupyter.cost.suggestions import Launch

REGION = "us-east-1"


@pytest.fixture
def session(aws, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "nb.ipynb"))
    monkeypatch.chdir(tmp_path)
    s = _session(tmp_path)
    s.config.confirm_above = 10000.0
    s.config.stage_threshold_gb = 0.000002  # 2 KB: a small bucket stands in for a big one
    s.config.quiet_suggestions = ["spot-savings", "spot-no-checkpoint", "gpu-unused"]
    return s


def said(session, capsys, options: dict) -> list[str]:
    capsys.readouterr()
    before_launch(
        session,
        "aws",
        {"instance_type": "g5.xlarge", "max_hours": 1, **options},
        1.0,
        None,
        launch=Launch(None, None, code="import torch\n"),
    )
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("suggestion")]


def test_a_big_prefix_fetched_by_every_run_is_told_to_stage_on_a_persistent_volume(
    aws, session, capsys
):
    aws.s3.create_bucket(Bucket="datasets")
    aws.s3.put_object(Bucket="datasets", Key="small/a.bin", Body=b"x" * 100)
    for i in range(3):
        aws.s3.put_object(Bucket="datasets", Key=f"big/{i}.bin", Body=b"x" * 1000)
    assert said(session, capsys, {"data": "s3://datasets/small/"}) == []  # under the threshold
    staged = {"data": "s3://datasets/big/", "data_size": 10, "persistent": True}
    assert said(session, capsys, staged) == []  # kept on a persistent volume already
    assert said(session, capsys, {"data": "s3://datasets/big/", "volume": "vol-1"}) == []
    lines = said(session, capsys, {"data": "s3://datasets/big/"})
    assert len(lines) == 1 and "s3://datasets/big/ holds over" in lines[0], lines
    assert "--data-size 1 --persistent" in lines[0]
    assert "quiet_suggestions = ['stage-data']" in lines[0]
    assert said(session, capsys, {"data": "s3://datasets/big/"}) == []  # once per notebook


def test_a_volume_restored_from_a_snapshot_without_prewarm_is_told_to_prewarm(
    aws, session, capsys, data_volume, monkeypatch, tmp_path
):
    zone = f"{REGION}a"
    fresh = data_volume(aws, zone)
    snap = aws.ec2.create_snapshot(VolumeId=fresh)["SnapshotId"]
    restored = aws.ec2.create_volume(AvailabilityZone=zone, SnapshotId=snap)["VolumeId"]
    assert said(session, capsys, {"volume": fresh}) == []  # a new volume is fast at once
    assert said(session, capsys, {"volume": restored, "prewarm": True}) == []
    lines = said(session, capsys, {"volume": restored})
    assert len(lines) == 1 and f"was restored from {snap}" in lines[0], lines
    assert "--prewarm reads it once before training" in lines[0]
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "other.ipynb"))
    assert len(said(session, capsys, {"volume": restored})) == 1  # another notebook is told
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "third.ipynb"))
    session.config.quiet_suggestions = [*session.config.quiet_suggestions, "prewarm"]
    assert said(session, capsys, {"volume": restored}) == []  # silenced
