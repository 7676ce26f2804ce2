"""`--prewarm` (issue 16, item 3): the real agent reads a file standing in for the
restored volume's device with dd, before the code starts, and says so in `prewarm`
events that the run panel shows as its phase; Stop during the read stops the run."""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent_helpers import exit_event, make_run_dir, run_agent

from runctl_jupyter.agent.prewarm import device_of, prewarm_device, read_argv
from runctl_jupyter.display.run_feed import RunFeed
from runctl_jupyter.display.run_live_html import progress_html, progress_text

MIB = 1 << 20
CELL = "runctl.log(step=0, ok=1)\n"


def _device(tmp_path: Path, size: int) -> Path:
    device = tmp_path / "dev" / "nvme1n1"
    device.parent.mkdir(parents=True)
    with open(device, "wb") as f:
        f.truncate(size)  # sparse: the blocks read as zeros, as a new volume's do
    return device


def test_the_volume_is_read_before_the_code_with_progress_the_panel_shows(tmp_path: Path):
    device = _device(tmp_path, 8 * MIB)
    run_dir = make_run_dir(tmp_path, CELL, options={"prewarm": True}, data_device=str(device))
    events = run_agent(run_dir)
    assert exit_event(events)["status"] == "succeeded"
    kinds = [e["type"] for e in events]
    warm = [e for e in events if e["type"] == "prewarm"]
    assert kinds.index("prewarm") < kinds.index("metric")
    running = next(i for i, e in enumerate(events) if e.get("status") == "running")
    assert max(i for i, e in enumerate(events) if e["type"] == "prewarm") < running
    assert [e["state"] for e in warm] == ["reading"] * 8 + ["done"]
    assert [e["bytes"] for e in warm] == [i * MIB for i in range(8)] + [8 * MIB]
    assert {e["total"] for e in warm} == {8 * MIB} and warm[-1]["tool"] in ("dd", "fio")
    assert (run_dir / "record.ipynb").exists()

    feed = RunFeed({"id": "r1", "status": "starting"})
    feed.update({}, warm[:5])
    assert progress_text(feed) == "prewarming the data volume: 4 MiB of 8 MiB read (50%)"
    assert "width:50.0%" in progress_html(feed)
    feed.update({}, warm[5:])
    assert progress_text(feed) == "waiting for the first metric…"

    # the next attempt (a spot resume) does not read the same device again
    events = run_agent(run_dir, attempt=2)
    again = [e for e in events if e["type"] == "prewarm" and e["attempt"] == 2]
    assert again == [again[0]] and again[0]["state"] == "skipped"
    assert again[0]["read_in_attempt"] == 1


def test_stop_during_the_read_stops_the_run_before_its_code(tmp_path: Path):
    device = _device(tmp_path, 64 << 30)  # sparse: read for longer than the stop takes
    run_dir = make_run_dir(
        tmp_path, "print('the code ran')\n", options={"prewarm": True}, data_device=str(device)
    )
    (run_dir / "control.json").write_text(json.dumps({"stop": True, "reason": "user"}))
    events = run_agent(run_dir)
    end = exit_event(events)
    assert end["status"] == "stopped" and end["reason"] == "user"
    states = [e["state"] for e in events if e["type"] == "prewarm"]
    assert states[0] == "reading" and states[-1] == "stopped"
    assert not any(e["type"] == "status" and e["status"] == "running" for e in events)
    assert "the code ran" not in (run_dir / "stdout.log").read_text()


def test_a_missing_device_is_a_warning_and_the_code_runs(tmp_path: Path):
    run_dir = make_run_dir(tmp_path, CELL, options={"prewarm": True})
    events = run_agent(run_dir)
    assert exit_event(events)["status"] == "succeeded"
    warning = next(e for e in events if e["type"] == "warning")
    assert warning["code"] == "prewarm" and "no data volume found" in warning["message"]


def test_the_device_is_found_from_the_volume_or_the_mount_table(tmp_path: Path):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "dev").mkdir()
    (root / "dev" / "sdf").write_bytes(b"")
    (root / "proc" / "mounts").write_text(
        "/dev/root / ext4 rw 0 0\n/dev/nvme2n1 /data xfs rw 0 0\n"
    )
    assert device_of("/data", str(root)) == "/dev/nvme2n1"
    assert device_of("/elsewhere", str(root)) is None
    spec = {"options": {"volume": "vol-0abc"}, "data_mount": "/data"}
    assert prewarm_device(spec, str(root)) == os.path.join(root, "dev/sdf")
    assert prewarm_device({"data_mount": "/data"}, str(root)) == "/dev/nvme2n1"
    by_id = root / "dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0def"
    by_id.parent.mkdir(parents=True)
    by_id.write_bytes(b"")
    assert prewarm_device({"data_volume": {"id": "vol-0def"}, **spec}, str(root)) == str(by_id)
    assert prewarm_device({"data_device": "/dev/x", **spec}, str(root)) == "/dev/x"


def test_the_reads_are_the_ones_aws_documents():
    # docs.aws.amazon.com/ebs/latest/userguide/initalize-volume.html
    fio = read_argv("fio", "/dev/nvme1n1", 1 << 30, 1 << 30)
    assert fio[:8] == [
        "fio",
        "--filename=/dev/nvme1n1",
        "--rw=read",
        "--bs=1M",
        "--iodepth=32",
        "--ioengine=libaio",
        "--direct=1",
        "--name=volume-initialize",
    ]
    assert fio[8:] == [f"--offset={1 << 30}", f"--size={1 << 30}"]
    dd = read_argv("dd", "/dev/xvdf", 3 * MIB, MIB + 1)
    assert dd == ["dd", "if=/dev/xvdf", "of=/dev/null", "bs=1M", "skip=3", "count=2"]


def test_prewarm_with_no_volume_to_read_is_one_line_and_nothing_is_written(tmp_path: Path):
    import subprocess
    import sys

    from agent_helpers import ROOT

    script = tmp_path / "train.py"
    script.write_text("print('never')\n")
    home = tmp_path / "home"
    env = dict(os.environ, RUNCTL_HOME=str(home), PYTHONPATH=str(ROOT))
    for backend, says in (
        ("aws", "--prewarm reads a data volume: add --volume"),
        ("local", "--prewarm is for cloud runs"),
    ):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "runctl_jupyter",
                "train",
                str(script),
                "--backend",
                backend,
                "--prewarm",
            ],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        assert done.returncode != 0 and says in done.stderr, done.stderr
        assert done.stderr.strip().count("\n") == 0  # one line
        runs = home / "runs"
        assert not runs.exists() or not any(runs.iterdir())  # no run folder written
