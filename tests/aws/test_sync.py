"""The agent's S3 sync: numbered append-only chunks, retried, never lost or duplicated."""

from __future__ import annotations

import json
import time
from pathlib import Path

from runctl_jupyter.agent.s3 import Sync
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.events import EventWriter

BUCKET = "sync-test"


def _run_dir(tmp_path: Path, run_id: str = "r1") -> Path:
    run_dir = tmp_path / run_id
    run_dir.mkdir()
    (run_dir / "spec.json").write_text(json.dumps({"run_id": run_id}))
    return run_dir


def _cfg(**kw) -> dict:
    return {"kind": "s3", "bucket": BUCKET, "prefix": "runctl/", "region": "us-east-1", **kw}


def _chunks(aws: Clients, run_id: str = "r1") -> dict[str, list[dict]]:
    listed = aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"runctl/runs/{run_id}/events/")
    out = {}
    for obj in listed.get("Contents", []):
        body = aws.s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read().decode()
        out[obj["Key"].rsplit("/", 1)[-1]] = [json.loads(line) for line in body.splitlines()]
    return out


def _wait(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_urgent_events_go_out_at_the_next_tick_as_numbered_chunks(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    sync = Sync(run_dir, _cfg(), client=aws.s3)
    writer.write("status", status="running")
    writer.flush()
    sync.tick()
    _wait(lambda: "000001.jsonl" in _chunks(aws))
    writer.write("metric", step=0, values={"loss": 1.0})
    writer.flush()
    sync.tick()
    _wait(lambda: "000002.jsonl" in _chunks(aws))
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert sync.final(deadline=10)
    chunks = _chunks(aws)
    assert list(chunks) == ["000001.jsonl", "000002.jsonl", "000003.jsonl"]
    assert [e["seq"] for c in chunks.values() for e in c] == [1, 2, 3]


def test_heartbeats_alone_are_batched(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    sync = Sync(run_dir, _cfg(heartbeat_interval=3600), client=aws.s3)
    writer.write("status", status="running")
    writer.flush()
    sync.tick()
    _wait(lambda: len(_chunks(aws)) == 1)
    for _ in range(5):
        writer.write("heartbeat", pid=1)
        writer.flush()
        sync.tick()
        time.sleep(0.05)
    time.sleep(0.3)
    assert len(_chunks(aws)) == 1  # no upload per heartbeat
    writer.close()
    sync.final(deadline=10)
    assert [e["type"] for e in _chunks(aws)["000002.jsonl"]] == ["heartbeat"] * 5


def test_s3_failures_are_retried_and_no_chunk_is_lost_or_duplicated(
    aws: Clients, tmp_path: Path, fail
):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    sync = Sync(run_dir, _cfg(), client=aws.s3)
    injected = fail(
        aws, "s3.PutObject", code="InternalError"
    )  # 400 + not retried by botocore: ours must
    for step in range(4):
        writer.write("status", status="running", step=step)
        writer.flush()
        sync.tick()
        time.sleep(0.1)
    assert _chunks(aws) == {}
    assert sync.failures >= 1 and "InternalError" in (sync.last_error or "")
    injected.remove()
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert sync.final(deadline=30)
    seqs = [e["seq"] for c in _chunks(aws).values() for e in c]
    assert seqs == [1, 2, 3, 4, 5]


def test_a_restarted_sync_goes_on_from_its_state_on_disk(aws: Clients, tmp_path: Path, fail):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    first = Sync(run_dir, _cfg(), client=aws.s3)
    writer.write("status", status="running")
    writer.flush()
    injected = fail(aws, "s3.PutObject", code="InternalError")
    first.tick()
    _wait(lambda: first.failures >= 1)
    first._stop.set()  # the agent died: its numbered chunk waits on disk
    injected.remove()
    second = Sync(run_dir, _cfg(), client=aws.s3)
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert second.final(deadline=10)
    chunks = _chunks(aws)
    assert list(chunks) == ["000001.jsonl", "000002.jsonl"]
    assert [e["seq"] for c in chunks.values() for e in c] == [1, 2]


def test_checkpoints_and_logs_are_uploaded(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    EventWriter(run_dir, attempt=1).close()
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "step-00000001.pkl").write_bytes(b"state")
    (run_dir / "stdout.log").write_text("hello\n")
    old = time.time() - 10
    import os

    os.utime(run_dir / "checkpoints" / "step-00000001.pkl", (old, old))
    sync = Sync(run_dir, _cfg(), client=aws.s3)
    assert sync.final(deadline=10)
    body = aws.s3.get_object(Bucket=BUCKET, Key="runctl/runs/r1/checkpoints/step-00000001.pkl")[
        "Body"
    ].read()
    assert body == b"state"
    assert (
        aws.s3.get_object(Bucket=BUCKET, Key="runctl/runs/r1/stdout.log")["Body"].read()
        == b"hello\n"
    )


def test_the_exit_chunk_goes_up_after_the_log_and_record(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    sync = Sync(run_dir, _cfg(), client=aws.s3)
    order: list[str] = []
    aws.s3.meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **_: order.append(params["Key"])
    )
    (run_dir / "stdout.log").write_text("out\n")
    (run_dir / "record.ipynb").write_text("{}")
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    sync.tick()  # the uploader thread must leave the exit event to final()
    time.sleep(0.3)
    assert not any("/events/" in k for k in order)
    assert sync.final(deadline=10)
    names = [k.rsplit("/", 1)[-1] for k in order]
    assert names.index("000001.jsonl") > names.index("stdout.log")
    assert names.index("000001.jsonl") > names.index("record.ipynb")


def test_when_files_keep_failing_the_events_still_go_up(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run_dir = _run_dir(tmp_path)
    writer = EventWriter(run_dir, attempt=1)
    (run_dir / "record.ipynb").write_text("{}")
    sync = Sync(run_dir, _cfg(), client=aws.s3)

    def refuse_record(params, **_):
        if params["Key"].endswith("record.ipynb"):
            raise OSError("disk on fire")

    aws.s3.meta.events.register("before-parameter-build.s3.PutObject", refuse_record)
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert sync.final(deadline=1) is False
    assert [e["type"] for e in _chunks(aws)["000001.jsonl"]] == ["exit"]


def test_the_volume_device_is_found_by_its_nvme_serial_or_xen_name(tmp_path: Path):
    from runctl_jupyter.agent.volume import volume_device

    by_id = tmp_path / "dev" / "disk" / "by-id"
    by_id.mkdir(parents=True)
    assert volume_device("vol-0abc", root=str(tmp_path), timeout=0) is None
    (tmp_path / "dev" / "xvdf").write_text("")
    assert volume_device("vol-0abc", root=str(tmp_path), timeout=0) == str(
        tmp_path / "dev" / "xvdf"
    )
    (by_id / "nvme-Amazon_Elastic_Block_Store_vol0abc").write_text("")
    assert volume_device("vol-0abc", root=str(tmp_path), timeout=0).endswith(
        "nvme-Amazon_Elastic_Block_Store_vol0abc"
    )


def test_the_sync_is_made_at_once_and_misses_nothing_written_while_boto3_loads(
    aws: Clients, tmp_path: Path, monkeypatch
):
    """Issue 19: the agent starts its runner before the S3 client is there (boto3's
    import and S3's model take seconds on a small instance); the uploader thread makes
    the client, lists the run's chunks, and sends what was written meanwhile at once."""
    from runctl_jupyter.agent import s3 as agent_s3

    aws.s3.create_bucket(Bucket=BUCKET)
    aws.s3.put_object(Bucket=BUCKET, Key="runctl/runs/r1/events/000001.jsonl", Body=b"{}\n")
    run_dir = _run_dir(tmp_path)
    (run_dir / "events.jsonl").write_text(json.dumps({"seq": 1, "type": "status"}) + "\n")
    loading = []

    def slow_client(region, profile=None):
        loading.append(time.monotonic())
        time.sleep(1.5)
        return aws.s3

    monkeypatch.setattr(agent_s3, "make_s3_client", slow_client)
    started = time.monotonic()
    sync = Sync(run_dir, _cfg(heartbeat_interval=3600, interval=3600), client=None)
    assert time.monotonic() - started < 0.5  # no wait for the client
    writer = EventWriter(run_dir, attempt=1)  # goes on after the bundle's seq 1
    writer.write("status", status="running")
    writer.write("metric", step=0, values={"loss": 1.0})
    writer.flush()
    assert sync.wait_ready(timeout=10) and loading
    # no tick from the agent: the thread's first look sends the first metric
    _wait(lambda: "000002.jsonl" in _chunks(aws), timeout=5)
    sent = _chunks(aws)["000002.jsonl"]
    assert [e["type"] for e in sent] == ["status", "metric"]  # the bundle's line is not sent again
    writer.write("exit", status="succeeded", reason=None)
    writer.close()
    assert sync.final(deadline=10)
    assert sorted(_chunks(aws)) == ["000001.jsonl", "000002.jsonl", "000003.jsonl"]
