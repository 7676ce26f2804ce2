"""`runctl dev --backend aws --keep --watch` on the played instance: a change ships only
the changed file (by content hash, through S3) and the same run restarts on the same
warm instance as its next attempt (docs/dev.md)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from traitlets.config import Config

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session

SCRIPT = """\
import time
import helper
from runctl_jupyter.runtime import runctl
print("version {version}", helper.WORD, flush=True)
step = 0
while not runctl.should_stop:
    runctl.log(step=step, loss=1.0)
    step += 1
    time.sleep(0.2)
"""


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.refresh_interval = 0.05
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    return Session(config=Runctl(config=cfg))


def _wait(predicate, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _dev_files(aws, bucket: str, run_id: str) -> dict[str, bytes]:
    prefix = f"runctl/runs/{run_id}/bundle/files/"
    listed = aws.s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {
        o["Key"][len(prefix) :]: aws.s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for o in listed
    }


def test_a_change_ships_only_that_file_and_restarts_on_the_warm_instance(
    aws, instance, tmp_path, monkeypatch, capfd
):
    setup(aws)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "helper.py").write_text("WORD = 'one'\n")
    (work / "train.py").write_text(SCRIPT.format(version="A"))
    session = _session(tmp_path)
    seen: dict = {}

    def log_of(run_id: str) -> str:
        path = session.store.run_dir(run_id) / "stdout.log"
        return path.read_text() if path.exists() else ""

    def edit_then_stop():
        _wait(lambda: session.store.list_runs(limit=None), 300)
        run_id = session.store.list_runs(limit=None)[0]["id"]
        _wait(lambda: "version A one" in log_of(run_id), 300)
        target = json.loads((session.store.run_dir(run_id) / "aws.json").read_text())
        seen["target"] = target
        seen["files_before"] = _dev_files(aws, target["bucket"], run_id)
        (work / "helper.py").write_text("WORD = 'two'\n")  # a module only
        _wait(lambda: "version A two" in log_of(run_id))
        seen["files_after_module"] = _dev_files(aws, target["bucket"], run_id)
        t0 = time.monotonic()
        (work / "train.py").write_text(SCRIPT.format(version="B"))
        _wait(lambda: "version B two" in log_of(run_id))
        seen["restart_seconds"] = time.monotonic() - t0
        seen["files_after_script"] = _dev_files(aws, target["bucket"], run_id)
        session.backend_stop(run_id)  # the panel's Stop: the dev session ends

    editor = threading.Thread(target=edit_then_stop, daemon=True)
    editor.start()
    run = session.dev(
        script="train.py", watch=True, backend="aws",
        options={"instance_type": "t3.micro", "keep": True, "spot": False},
    )  # fmt: skip
    editor.join(timeout=30)
    print(f"save to first new line through S3: {seen.get('restart_seconds', -1):.2f} s")

    # nothing was shipped before the first change; then exactly the changed file, each time
    assert seen["files_before"] == {}
    module = b"WORD = 'two'\n"
    assert seen["files_after_module"] == {hashlib.sha256(module).hexdigest(): module}
    script = SCRIPT.format(version="B").encode()
    assert set(seen["files_after_script"]) - set(seen["files_after_module"]) == {
        hashlib.sha256(script).hexdigest()
    }
    # one run, three attempts, each restart named; one bootstrap, then SSM restarts only
    events = session.store.events(run.id)
    restarts = [e for e in events if e["type"] == "status" and e.get("reason") == "restart"]
    assert [(e["attempt"], e["changed"]) for e in restarts] == [
        (1, ["helper.py"]),
        (2, ["train.py"]),
    ]
    row = session.store.get(run.id)
    assert (row["attempt"], row["status"], row["reason"]) == (3, "stopped", "user")
    scripts = [r["script"] for r in instance.runs if r["kind"] == "ssm"]
    assert sum("runctl-jupyter bootstrap" in s for s in scripts) == 1
    assert sum("restart-requested" in s for s in scripts) == 2
    # the kept instance stays up for the next session, as asked
    instance_id = seen["target"]["instance_id"]
    state = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] == "running"
    assert session._dev_runs.watchers == {}
    assert (
        f"dev session of run {run.id} ended (stopped). Instance {instance_id} stays up for the "
        f"next session (--instance {instance_id}); it stops itself after 30 idle minutes"
    ) in capfd.readouterr().err


def test_the_restart_script_asks_only_a_live_agent_with_a_fixed_control_file(tmp_path):
    """The exact SSM text, run with bash as the played instance runs it."""
    import os
    import subprocess

    from runctl_jupyter.aws import bootstrap

    run_dir = tmp_path / "runctl" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    key = "runctl/runs/r1/bundle/dev/1-5.json"
    script = bootstrap.restart_script("r1", key)

    def run() -> str:
        env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run(["/bin/bash", "-c", script], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    gone = subprocess.Popen(["true"])
    gone.wait()
    (run_dir / "agent.json").write_text(json.dumps({"pid": gone.pid}))
    assert run() == "no-agent"
    assert not (run_dir / "control.json").exists()
    (run_dir / "agent.json").write_text(json.dumps({"pid": os.getpid()}))
    assert run() == "restart-requested"
    assert json.loads((run_dir / "control.json").read_text()) == {"restart": True, "manifest": key}


def test_a_dev_run_whose_agent_is_gone_restarts_on_the_same_kept_instance(
    aws, instance, tmp_path, monkeypatch
):
    setup(aws)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "helper.py").write_text("WORD = 'one'\n")
    (work / "train.py").write_text(SCRIPT.format(version="A"))
    session = _session(tmp_path)
    run = session.dev(
        script="train.py", backend="aws", detach=True,
        options={"instance_type": "t3.micro", "keep": True, "spot": False},
    )  # fmt: skip
    mirror = session.store.run_dir(run.id)
    backend, spec = session.backend("aws"), json.loads((mirror / "spec.json").read_text())

    def mirrored(text: str) -> bool:
        backend.pull(mirror, spec)
        log = mirror / "stdout.log"
        return log.exists() and text in log.read_text()

    _wait(lambda: mirrored("version A one"), 300)
    first = json.loads((mirror / "aws.json").read_text())["instance_id"]
    session.stop(run.id, wait=0)  # the agent ends: nobody to ask for a restart
    _wait(lambda: not _agent_alive(instance, run.id))

    (work / "train.py").write_text(SCRIPT.format(version="B"))
    names = session._dev_runs.restart(run.id, {"code.py": (work / "train.py").read_bytes()})
    assert names == ["train.py"]
    spec = json.loads((mirror / "spec.json").read_text())
    _wait(lambda: mirrored("version B one"), 300)
    reservations = aws.ec2.describe_instances()["Reservations"]
    assert [i["InstanceId"] for r in reservations for i in r["Instances"]] == [first]
    assert json.loads((mirror / "aws.json").read_text())["instance_id"] == first
    session.backend_stop(run.id)


def _agent_alive(instance, run_id: str) -> bool:
    import os

    try:
        pid = json.loads((instance.run_dir(run_id) / "agent.json").read_text())["pid"]
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError):
        return False
    return True
