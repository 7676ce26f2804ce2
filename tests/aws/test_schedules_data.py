"""Data triggers, locally: the moto S3 server on 127.0.0.1, a real IPython shell, real
runs. A burst of uploads gives one run once it settles; changed data gives the next;
stale data is refused with its one-line reason on the schedule."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
from crontab import CronTab
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output

from runctl_jupyter.schedules.data import list_prefix, manifest_digest, manifest_of

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "training-data"


def _magic(ip, line: str) -> str:
    with capture_output() as cap:
        result = ip.run_line_magic("runctl", line)
    return cap.stdout + str(result if result is not None else "")


@pytest.fixture
def data(aws, ip, tmp_path):
    aws.s3.create_bucket(Bucket=BUCKET)
    tab = tmp_path / "crontab"
    ip.run_line_magic("config", f"Runctl.crontab_file = {str(tab)!r}")
    Path("train.py").write_text("print('training')\n")
    return tab


def _runs(home: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((home / "runs").glob("*/spec.json"))]


def test_a_burst_of_50_uploads_gives_one_run(ip, aws, data, home):
    out = _magic(
        ip,
        f"schedule add train.py --on-new-data s3://{BUCKET}/incoming/ --settle 5s --schedule-name ingest",
    )
    assert "new data in s3://training-data/incoming/" in out
    job = next(CronTab(tabfile=str(data)).find_comment("runctl:ingest"))
    assert str(job.slices) == "*/5 * * * *" and job.command.endswith("fire ingest --if-new-data")

    def burst():
        for i in range(50):
            aws.s3.put_object(
                Bucket=BUCKET, Key=f"incoming/part-{i:03d}.csv", Body=f"{i}\n".encode()
            )

    uploader = threading.Thread(target=burst)
    uploader.start()
    while uploader.is_alive():  # checks during the burst never fire
        assert "fired" not in _magic(ip, "schedule fire ingest --if-new-data")
    uploader.join()
    assert _runs(home) == []
    deadline = time.monotonic() + 30
    while "fired run" not in (line := _magic(ip, "schedule fire ingest --if-new-data")):
        assert "settles" in line, line
        assert time.monotonic() < deadline, "never fired"
        time.sleep(0.5)
    for _ in range(3):  # the same data never fires again
        assert "no new data" in _magic(ip, "schedule fire ingest --if-new-data")
    runs = _runs(home)
    assert len(runs) == 1
    trigger = runs[0]["trigger"]
    assert trigger["schedule"] == "ingest" and trigger["new_objects"] == 50
    assert trigger["objects"][0].startswith(f"s3://{BUCKET}/incoming/part-")
    listed = list_prefix(aws.s3, BUCKET, "incoming/")
    assert trigger["manifest"] == manifest_digest(manifest_of(listed))
    shown = _magic(ip, f"show {runs[0]['run_id']}")
    assert "50 new objects" in shown and trigger["manifest"] in shown

    # one changed object (new ETag) is new data: the next run, with only it
    aws.s3.put_object(Bucket=BUCKET, Key="incoming/part-007.csv", Body=b"changed\n")
    time.sleep(5.5)
    assert "fired run" in _magic(ip, "schedule fire ingest --if-new-data")
    second = [r for r in _runs(home) if r["run_id"] != runs[0]["run_id"]][0]["trigger"]
    assert second["new_objects"] == 1 and second["objects"] == [
        f"s3://{BUCKET}/incoming/part-007.csv"
    ]


def test_stale_data_is_refused_with_its_reason_on_the_schedule(ip, aws, data, home):
    _magic(
        ip, f"schedule add train.py --on-new-data s3://{BUCKET}/in/ --settle 1s --max-data-age 3s"
    )
    aws.s3.put_object(Bucket=BUCKET, Key="in/old.csv", Body=b"1\n")
    time.sleep(4.5)
    job = next(CronTab(tabfile=str(data)).find_comment("runctl:train"))
    keep = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    env = [f"{k}={os.environ[k]}" for k in keep]  # cron has no AWS variables of its own
    done = subprocess.run(
        [
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            f"HOME={home.parent}",
            f"PYTHONPATH={ROOT}",
            *env,
            "/bin/sh",
            "-c",
            job.command,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    assert "refused: stale data" in done.stdout
    assert "s3://training-data/in/old.csv" in done.stdout and "--max-data-age 3.0s" in done.stdout
    assert not (home / "runs").exists() or _runs(home) == []
    schedule = json.loads((home / "schedules" / "train.json").read_text())
    assert schedule["refused"]["why"].startswith("stale data: the newest object")
    assert schedule["history"][-1]["status"] == "refused"
    assert "last fire refused: stale data" in _magic(ip, "schedules")


def test_a_prefix_that_cannot_be_listed_is_a_failed_fire_on_the_schedule(ip, aws, data, home):
    _magic(ip, "schedule add train.py --on-new-data s3://no-such-bucket/in/ --schedule-name lost")
    with pytest.raises(UsageError, match="could not list s3://no-such-bucket/in/") as caught:
        ip.run_line_magic("runctl", "schedule fire lost --if-new-data")
    assert "NoSuchBucket" in str(caught.value) and "\n" not in str(caught.value).strip()
    schedule = json.loads((home / "schedules" / "lost.json").read_text())
    assert schedule["history"][-1]["status"] == "failed"
    assert "last fire failed: could not list" in _magic(ip, "schedules")
    assert not (home / "runs").exists() or _runs(home) == []
