"""No S3 key or bundle member leaves its folder (issue 20, item 2): keys planted in the
moto bucket and members planted in a tar are refused and reported; nothing is written
outside the run folder, the data folder or the stage."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from runctl_jupyter.agent.data import stage_data
from runctl_jupyter.agent.restore import restore
from runctl_jupyter.agent.supervise import Agent
from runctl_jupyter.aws import bootstrap
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.events import EventWriter, read_events, sha256_of
from runctl_jupyter.paths import REFUSED_FILE, UnsafePath, extract_bundle, path_under

BUCKET = "keys-test"
PREFIX = "runctl/runs/r1/"


def _files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "home" / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps({"run_id": "r1", "code": "pass"}))
    return run


def _cfg() -> dict:
    return {"kind": "s3", "bucket": BUCKET, "prefix": "runctl/", "region": "us-east-1"}


def _checkpoint_event(writer: EventWriter, rel: str, body: bytes) -> None:
    import hashlib

    writer.write("checkpoint", step=1, path=rel, bytes=len(body),
                 sha256=hashlib.sha256(body).hexdigest())  # fmt: skip


def test_path_under_refuses_dot_dot_absolute_and_symlinks_out(tmp_path: Path):
    root = tmp_path / "root"
    (root / "in").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (root / "link").symlink_to(tmp_path / "outside")
    (root / "loop").symlink_to(root / "loop")
    assert path_under(root, "in/a.pkl") == root.resolve() / "in" / "a.pkl"
    for name in ("../x", "in/../../x", "/etc/passwd", "", "link/x", "link", "loop/x"):
        with pytest.raises(UnsafePath):
            path_under(root, name)


def test_restore_leaves_out_planted_checkpoint_keys_and_reports_them(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    run = _run_dir(tmp_path)
    (tmp_path / "outside").mkdir()
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "out").symlink_to(tmp_path / "outside")
    good, bad = b"good state", b"planted state"
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    writer = EventWriter(chunk, attempt=1)
    _checkpoint_event(writer, "checkpoints/step-00000001.pkl", good)
    _checkpoint_event(writer, "checkpoints/step-00000002.pkl", good)  # S3 holds other bytes
    writer.close()
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "events/000001.jsonl",
                      Body=(chunk / "events.jsonl").read_bytes())  # fmt: skip
    planted = {
        "checkpoints/step-00000001.pkl": good,
        "checkpoints/step-00000002.pkl": bad,  # its event's sha256 is another's
        "checkpoints/step-00000009.pkl": bad,  # no checkpoint event names it
        "checkpoints/../../../../escaped.pkl": bad,
        "checkpoints/out/through-link.pkl": bad,
        "checkpoints/step-00000003/model.bin": b"weights",  # a copied file: path checked only
    }
    for rel, body in planted.items():
        aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + rel, Body=body)
    listed = {o["Key"] for o in aws.s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert PREFIX + "checkpoints/../../../../escaped.pkl" in listed  # S3 keeps the key as is

    result = restore(run, _cfg())

    assert result["checkpoints"] == 2
    assert _files(run / "checkpoints") == {"step-00000001.pkl", "step-00000003/model.bin"}
    assert (run / "checkpoints" / "step-00000001.pkl").read_bytes() == good
    assert _files(tmp_path / "outside") == set()
    assert (
        not (tmp_path / "escaped.pkl").exists() and not (tmp_path / "home" / "escaped.pkl").exists()
    )
    refused = json.loads((run / REFUSED_FILE).read_text())
    assert len(refused) == 4
    for name in ("step-00000002.pkl", "step-00000009.pkl", "escaped.pkl", "through-link.pkl"):
        assert sum(name in line for line in refused) == 1, refused
    assert "sha256" in next(line for line in refused if "step-00000002" in line)

    # the attempt's agent says each as a warning event (the panel and `runctl logs` show them)
    agent = Agent(run, attempt=2)
    agent._report_refused()
    agent.events.close()
    warnings = [e for e in read_events(run / "events.jsonl")[0] if e["type"] == "warning"]
    assert [w["message"] for w in warnings] == refused
    assert {w["code"] for w in warnings} == {"refused-key"}
    assert not (run / REFUSED_FILE).exists()


def test_data_staging_refuses_a_key_that_leaves_the_data_folder(aws: Clients, tmp_path: Path):
    aws.s3.create_bucket(Bucket=BUCKET)
    aws.s3.put_object(Bucket=BUCKET, Key="data/train.csv", Body=b"1,2\n")
    aws.s3.put_object(Bucket=BUCKET, Key="data/../../../../planted.txt", Body=b"x")
    dest = tmp_path / "work" / "data"
    with pytest.raises(
        ValueError,
        match=r"1 key\(s\) under s3://keys-test/data/ would be written outside data/: 'data/\.\./",
    ):
        stage_data(f"s3://{BUCKET}/data/", dest, "us-east-1", validate=False)
    assert _files(tmp_path) == set()  # nothing staged, nothing outside

    aws.s3.delete_object(Bucket=BUCKET, Key="data/../../../../planted.txt")
    (tmp_path / "outside").mkdir()
    (dest).mkdir(parents=True, exist_ok=True)
    (dest / "sub").symlink_to(tmp_path / "outside")
    aws.s3.put_object(Bucket=BUCKET, Key="data/sub/x.bin", Body=b"x")
    with pytest.raises(ValueError, match="'data/sub/x.bin'"):
        stage_data(f"s3://{BUCKET}/data/", dest, "us-east-1", validate=False)
    assert _files(tmp_path / "outside") == set()

    (dest / "sub").unlink()
    manifest = stage_data(f"s3://{BUCKET}/data/", dest, "us-east-1", validate=True)
    assert manifest["files"] == 2 and _files(dest) == {"train.csv", "sub/x.bin"}


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o4755
    return info


PLANTED = [
    ("../escaped", tarfile.REGTYPE, ""),
    ("/tmp/runctl-absolute-planted", tarfile.REGTYPE, ""),
    ("run/link", tarfile.SYMTYPE, "/etc"),
    ("run/inside-link", tarfile.SYMTYPE, "spec.json"),  # even a link inside: bundles hold none
    ("run/hard", tarfile.LNKTYPE, "/etc/passwd"),
    ("run/dev", tarfile.CHRTYPE, ""),
]


@pytest.mark.parametrize("has_filter", [True, False], ids=["data-filter", "no-data-filter"])
@pytest.mark.parametrize("name,kind,link", PLANTED, ids=[p[0] for p in PLANTED])
def test_a_bundle_with_a_planted_member_is_refused_whole(
    tmp_path: Path, monkeypatch, has_filter: bool, name: str, kind: bytes, link: str
):
    if not has_filter:  # Python < 3.10.12 / 3.11.4: the same refusals without the filter
        monkeypatch.delattr(tarfile, "data_filter")
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(
        _tar([(_member("run/spec.json"), b"{}"), (_member(name, kind, link), b"x")])
    )
    stage = tmp_path / "stage"
    stage.mkdir()
    with pytest.raises(UnsafePath, match=re.escape(repr(name))):
        extract_bundle(archive, str(stage))
    assert _files(tmp_path) == {"b.tar.gz"}  # nothing extracted, inside or out
    assert not os.path.lexists("/tmp/runctl-absolute-planted")


@pytest.mark.parametrize("has_filter", [True, False], ids=["data-filter", "no-data-filter"])
def test_a_plain_bundle_extracts_without_setuid_bits(tmp_path: Path, monkeypatch, has_filter):
    if not has_filter:
        monkeypatch.delattr(tarfile, "data_filter")
    archive = tmp_path / "b.tar.gz"
    archive.write_bytes(_tar([(_member("run/spec.json"), b"{}"), (_member("pkg/a/b.py"), b"x=1")]))
    extract_bundle(archive, str(tmp_path / "stage"))
    assert _files(tmp_path / "stage") == {"run/spec.json", "pkg/a/b.py"}
    assert (tmp_path / "stage" / "pkg/a/b.py").stat().st_mode & 0o7000 == 0


def test_the_boot_scripts_staging_refuses_a_planted_bundle(aws: Clients, tmp_path: Path):
    """The exact Python text the bootstrap sends, on a Python without tarfile's data filter."""
    aws.s3.create_bucket(Bucket=BUCKET)
    body = _tar([(_member("run/spec.json"), b"{}"), (_member("../../../escaped"), b"x")])
    aws.s3.put_object(Bucket=BUCKET, Key="bundles/r1-1.tar.gz", Body=body)
    root = tmp_path / "root"
    (root / "bundles").mkdir(parents=True)
    no_filter = "import sys, tarfile; del tarfile.data_filter; exec(compile(sys.argv.pop(1), 'stage', 'exec'))"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            no_filter,
            bootstrap._STAGE_PY,
            BUCKET,
            "bundles/r1-1.tar.gz",
            "us-east-1",
            str(root),
            "r1",
            "1",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,  # fmt: skip
    )
    assert proc.returncode == 1, proc.stderr
    assert (
        "runctl: refusing the bundle s3://keys-test/bundles/r1-1.tar.gz: '../../../escaped'"
        in proc.stderr
    )
    assert _files(tmp_path) == {"root/bundles/r1-1.tar.gz"}


def test_checkpoint_events_carry_the_sha256_of_the_pickle(tmp_path: Path):
    from runctl_jupyter.runtime import Runtime

    run = _run_dir(tmp_path)
    rt = Runtime({"RUNCTL_RUN_DIR": str(run), "RUNCTL_RUN_ID": "r1"})
    saved = rt.save_checkpoint({"w": [1, 2]}, step=4)
    lines = [
        json.loads(x) for f in (run / "runtime").glob("*.jsonl") for x in f.read_text().splitlines()
    ]
    event = next(e for e in lines if e.get("type") == "checkpoint")
    assert event["path"] == "checkpoints/step-00000004.pkl"
    assert event["sha256"] == sha256_of(saved)


def test_another_node_checks_the_checkpoints_against_node_0s_events(
    aws: Clients, tmp_path: Path, monkeypatch
):
    """Node K > 0 of a multi-node run resumes from the run's checkpoints, whose events
    are node 0's (its own stream is under nodes/K/)."""
    monkeypatch.setenv("RUNCTL_NODE_RANK", "1")
    aws.s3.create_bucket(Bucket=BUCKET)
    run = _run_dir(tmp_path)
    good = b"good state"
    chunk = tmp_path / "chunk"
    chunk.mkdir()
    writer = EventWriter(chunk, attempt=1)
    _checkpoint_event(writer, "checkpoints/step-00000001.pkl", good)
    writer.close()
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "events/000001.jsonl",
                      Body=(chunk / "events.jsonl").read_bytes())  # fmt: skip
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "checkpoints/step-00000001.pkl", Body=good)
    aws.s3.put_object(Bucket=BUCKET, Key=PREFIX + "checkpoints/step-00000002.pkl", Body=b"x")

    result = restore(run, _cfg())

    assert result["checkpoints"] == 1 and len(result["refused"]) == 1
    assert _files(run / "checkpoints") == {"step-00000001.pkl"}
    assert "step-00000002.pkl" in result["refused"][0]
