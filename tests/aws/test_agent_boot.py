"""agent_boot: which instance runs which attempt, and a replacement that cannot go on."""

from __future__ import annotations

import json
from pathlib import Path

from runctl_jupyter.agent import boot as agent_boot
from runctl_jupyter.agent.service import attempt_end
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.events import EventWriter, read_events

BUCKET = "boot-test"
CFG = {"kind": "s3", "bucket": BUCKET, "prefix": "runctl/", "region": "us-east-1"}


def _run_dir(tmp_path: Path, *events: tuple[str, dict], attempt: int = 1) -> Path:
    run_dir = tmp_path / "r1"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "spec.json").write_text(json.dumps({"run_id": "r1", "sync": CFG}))
    writer = EventWriter(run_dir, attempt)
    for kind, fields in events:
        writer.write(kind, **fields)
    writer.close()
    return run_dir


def test_only_a_replacement_of_an_instance_that_ran_an_attempt_starts_one(aws: Clients):
    aws.s3.create_bucket(Bucket=BUCKET)
    assert "SSM" in agent_boot.replacement_wanted(CFG, "r1", "i-first")  # nothing claimed yet
    key = "runctl/runs/r1/attempts/000001.json"
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps({"instance_id": None}).encode())
    assert "being launched" in agent_boot.replacement_wanted(CFG, "r1", "i-first")
    agent_boot.record_attempt(CFG, "r1", 1, "i-first")  # the SSM bootstrap claimed it
    assert "this instance's already" in agent_boot.replacement_wanted(CFG, "r1", "i-first")
    assert agent_boot.replacement_wanted(CFG, "r1", "i-second") is None  # a replacement
    assert "unknown" in agent_boot.replacement_wanted(CFG, "r1", None)  # no IMDS: never guess
    assert agent_boot.markers(CFG, "r1")[1]["instance_id"] == "i-first"


def test_the_next_attempt_follows_the_events_and_none_once_the_run_is_over(tmp_path: Path):
    run_dir = _run_dir(
        tmp_path,
        ("status", {"status": "running"}),
        ("status", {"status": "resuming", "next_attempt": 2}),
    )
    assert attempt_end(run_dir) == "resuming" and agent_boot.next_attempt(run_dir) == 2
    writer = EventWriter(run_dir, 2)
    writer.write("status", status="running")  # then the instance dies with no notice
    writer.close()
    assert attempt_end(run_dir) is None and agent_boot.next_attempt(run_dir) == 3
    run_dir = _run_dir(tmp_path / "over", ("exit", {"status": "succeeded"}), attempt=3)
    assert attempt_end(run_dir) == "exit" and agent_boot.next_attempt(run_dir) is None


def test_a_replacement_that_cannot_go_on_fails_the_run_with_the_reason_in_s3(
    aws: Clients, tmp_path: Path
):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path, ("status", {"status": "resuming", "next_attempt": 2}))
    agent_boot.fail_attempt(run_dir, 2, "the replacement instance i-2: volume vol-1 is busy")
    events, _ = read_events(run_dir / "events.jsonl")
    assert [e["seq"] for e in events] == [1, 2, 3]
    end = events[-1]
    assert end["type"] == "exit" and end["status"] == "failed" and end["reason"] == "resume"
    assert end["attempt"] == 2 and "vol-1 is busy" in end["error"]["message"]
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix="runctl/runs/r1/events/")["Contents"]
    uploaded = [
        json.loads(line)
        for obj in listed
        for line in aws.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().splitlines()
    ]
    assert uploaded[-1]["type"] == "exit"  # a notebook that looks later sees why
