"""The summary row a run publishes to its team (agent/team.py), folded from its event
lines as the S3 sync cuts them into chunks: across attempts, metrics, cost, the exit."""

from __future__ import annotations

import json
import time

from runctl_jupyter.agent.team import Summary, local_sync_cfg


def _lines(*events: dict) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def test_a_summary_follows_a_run_over_two_attempts_to_its_exit():
    spec = {"run_id": "abc123", "name": "detr-1", "owner": "ann", "project": "detr",
            "experiment": "detr", "params": {"lr": 0.1}, "created": 100.0}  # fmt: skip
    summary = Summary(spec)
    assert summary.row["status"] == "queued" and not summary.status_changed
    summary.feed(_lines(
        {"t": 101.0, "type": "status", "status": "starting", "attempt": 1},
        {"t": 102.0, "type": "status", "status": "running", "attempt": 1},
        {"t": 103.0, "type": "metric", "step": 0, "values": {"loss": 1.0}, "total": 10},
        {"t": 104.0, "type": "cost", "dollars": 0.5, "rate": 1.8},
        {"t": 111.0, "type": "status", "status": "interrupted", "reason": "spot"},
        {"t": 112.0, "type": "status", "status": "resuming"},
    ))  # fmt: skip
    assert summary.status_changed and summary.row["status"] == "resuming"
    assert summary.row["prior_duration"] == 11.0 and summary.row["attempt_started"] is None
    summary.feed(b'not json\n' + _lines(
        {"t": 200.0, "type": "status", "status": "starting", "attempt": 2},
        {"t": 205.0, "type": "metric", "step": 9, "values": {"loss": 0.1, "acc": 0.9}},
        {"t": 206.0, "type": "heartbeat", "pid": 1},
        {"t": 207.0, "type": "exit", "status": "succeeded", "reason": None, "exit_code": 0,
         "error": None, "duration": 7.0, "attempt": 2},
    ))  # fmt: skip
    row = summary.row
    assert (row["status"], row["attempt"], row["exit_code"], row["ended"]) == (
        "succeeded",
        2,
        0,
        207.0,
    )
    assert row["final_metrics"] == {"loss": 0.1, "acc": 0.9} and row["last_step"] == 9
    assert (row["cost"], row["started"], row["duration"]) == (0.5, 101.0, 18.0)
    assert (row["owner"], row["project"], row["params"]) == ("ann", "detr", {"lr": 0.1})


def test_a_local_run_publishes_under_its_owners_prefix_without_checkpoints():
    cfg = local_sync_cfg({"team": "vision", "owner": "ann", "bucket": "b", "region": "r"})
    assert cfg["prefix"] == "teams/vision/ann/" and cfg["checkpoints"] is False
    assert cfg["from_start"] and cfg["state_dir"] != ".sync"


class _Puts:
    """An S3 client's put_object, recording the keys (the moto tests use the real one)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def put_object(self, Bucket: str, Key: str, Body: bytes, ContentType: str) -> None:  # noqa: N803
        self.keys.append(Key)


def test_a_live_run_beats_an_index_entry_alone_and_an_ended_one_does_not():
    from runctl_jupyter.agent.team import Publisher

    team = {"team": "vision", "owner": "ann", "bucket": "b", "beat_seconds": 0.05}
    s3 = _Puts()
    publisher = Publisher(s3, {"run_id": "abc123", "team": team}, "events/")
    publisher.summary.feed(_lines({"t": 1.0, "type": "status", "status": "running"}))
    publisher.publish()
    assert [k.rsplit("/", 1)[-1] for k in s3.keys][:2] == ["spec.json", "summary.json"]
    assert len(s3.keys) == 3 and "/index/" in s3.keys[2]
    s3.keys.clear()
    publisher.publish()
    assert s3.keys == []  # within the beat: nothing
    time.sleep(0.06)
    publisher.publish()
    assert len(s3.keys) == 1 and "/index/" in s3.keys[0]  # a bare beat: one small PUT
    assert publisher.summary.row["beat"] == 0.05
    publisher.summary.feed(_lines({"t": 2.0, "type": "exit", "status": "succeeded", "duration": 1.0}))  # fmt: skip
    publisher.publish()
    s3.keys.clear()
    time.sleep(0.06)
    publisher.publish()
    assert s3.keys == []  # ended: no beat
