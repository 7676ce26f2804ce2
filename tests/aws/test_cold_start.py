"""What a start does not wait for (docs/benchmarks.md, "Cold start, step by step"):
no pip when the pins are installed already, each boot phase timed."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

from test_end_to_end import _new_run  # tests/aws is on sys.path, as for conftest's helpers

from runctl_jupyter.aws import bootstrap
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.events import read_events


def _pins_present(tmp_path: Path, lines: list[str]) -> bool:
    """The boot script's check, run as the instance runs it (python -c TEXT FILE)."""
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("".join(line + "\n" for line in lines))
    proc = subprocess.run([sys.executable, "-c", bootstrap._PINS_PRESENT_PY, str(reqs)])
    return proc.returncode == 0


def test_the_pins_check_says_yes_only_when_every_pin_is_installed(tmp_path):
    have = f"idna=={importlib.metadata.version('idna')}"
    assert _pins_present(tmp_path, [have, "# a comment", ""])
    assert _pins_present(tmp_path, ["IDNA==" + importlib.metadata.version("idna")])  # any case
    assert not _pins_present(tmp_path, [have, "idna==0.0.1"])  # another version
    assert not _pins_present(tmp_path, ["no-such-package-runctl==1.0"])
    assert not _pins_present(tmp_path, ["idna"])  # not a pin: pip decides
    assert not _pins_present(tmp_path, ["idna>=1"])


def _boot(backend: AWSBackend, run_dir: Path, spec: dict, instance) -> dict:
    """Start the run, wait for its end; the agent's first event (bootstrap facts)."""
    import time

    backend.start(run_dir, spec, attempt=1)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        backend.pull(run_dir, spec, force=True)
        events, _ = read_events(run_dir / "events.jsonl")
        if any(e["type"] == "exit" for e in events):
            assert events[-1]["status"] == "succeeded", instance.runs[-1]["stdout"][-2000:]
            return next(e for e in events if e.get("status") == "starting")
        time.sleep(0.2)
    raise AssertionError(f"no exit: {instance.runs[-1]['stdout'][-2000:]}")


def test_a_warm_instance_with_the_pins_installed_runs_no_pip(aws, instance, tmp_path):
    setup(aws)
    backend = AWSBackend(clients=aws, aws_poll=0.1, fast_poll=0.2)
    code = "import idna\nrunctl.log(step=0, ok=1)\n"
    run_dir, spec = _new_run(tmp_path, code=code, options={"keep": True})
    first = _boot(backend, run_dir, spec, instance)
    assert first["requirements"] in ("installed", "present")  # the session's venv may have it
    instance_id = json.loads((run_dir / "aws.json").read_text())["instance_id"]

    run_dir, spec = _new_run(tmp_path, code=code, options={"instance": instance_id})
    second = _boot(backend, run_dir, spec, instance)
    out = instance.runs[-1]["stdout"]
    assert second["requirements"] == "present", out
    assert "installed already" in out and "installing" not in out
    # every phase of the boot script is timed, in order, on the wall clock
    marks = second["marks"]
    assert list(marks) == ["start", "python", "venv", "bundle", "requirements"]
    assert list(marks.values()) == sorted(marks.values())
    assert marks["start"] <= second["t"] and marks["requirements"] - marks["bundle"] < 5
    aws.ec2.terminate_instances(InstanceIds=[instance_id])


def test_the_installed_distributions_are_read_once_until_something_is_installed(
    tmp_path, monkeypatch
):
    from runctl_jupyter.aws import bundle

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    reads = []
    real = importlib.metadata.packages_distributions
    monkeypatch.setattr(
        importlib.metadata, "packages_distributions", lambda: reads.append(1) or real()
    )
    assert bundle.pinned_requirements(["idna"]) == bundle.pinned_requirements(["idna"])
    assert len(reads) == 1  # the second launch (or cell) reads nothing again
    assert bundle.pinned_requirements(["runctl_fresh_mod"]) == []

    # `pip install` in the notebook: a new dist-info folder on sys.path is seen at once
    info = site / "runctl_fresh-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: runctl-fresh\nVersion: 1.2.3\n")
    (info / "top_level.txt").write_text("runctl_fresh_mod\n")
    (site / "runctl_fresh_mod.py").write_text("")
    assert bundle.pinned_requirements(["runctl_fresh_mod"]) == ["runctl-fresh==1.2.3"]
    assert len(reads) == 2


def test_price_clients_are_made_once_per_region_and_endpoint(monkeypatch):
    from runctl_jupyter.cost.prices import quick_clients

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    first = quick_clients("us-east-1")
    assert quick_clients("us-east-1") is first
    assert quick_clients("eu-west-1") is not first
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:10")  # another moto, another account
    assert quick_clients("us-east-1") is not first


def test_the_bootstraps_end_is_seen_within_a_second_not_at_a_grown_poll(aws, instance):
    """A 13 s command: with polls growing 1.5x from 5 s on (the old wait), its end was seen
    4 s late; now the wait looks at least once a second for its first two minutes."""
    import time

    from runctl_jupyter.aws import ssm

    image = aws.test_amis["al2023-x86"]
    iid = aws.ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    command_id = ssm.send(aws, iid, "sleep 13\necho done\n")
    polls: list[float] = []
    hook = ("before-call.ssm.GetCommandInvocation", lambda **_: polls.append(time.monotonic()))
    aws.ssm.meta.events.register(*hook)
    try:
        ssm.wait(aws, command_id, iid, timeout=120, poll=2.0)  # AWSBackend.aws_poll's default
    finally:
        aws.ssm.meta.events.unregister(*hook)
    seen = time.monotonic()
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    assert max(gaps) < 1.6, f"a pause of {max(gaps):.2f} s between two looks"
    played = next(r for r in instance.runs if r["kind"] == "ssm")
    ended = played["picked_up"] + played["seconds"]
    assert played["returncode"] == 0 and played["seconds"] >= 13
    assert seen - ended < 1.5, f"seen {seen - ended:.2f} s after the command ended"


def test_the_wait_for_ssm_online_sees_it_within_a_fraction_of_its_poll(aws):
    """The instance's SSM agent comes online 3 s in: seen at once, not 2 s later (the old
    fixed first sleep of `poll` seconds, then 1.5x)."""
    import threading
    import time

    from runctl_jupyter.aws.instance_ready import wait_ssm_online

    image = aws.test_amis["al2023-x86"]
    iid = aws.ec2.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)[
        "Instances"
    ][0]["InstanceId"]
    aws.ec2.stop_instances(InstanceIds=[iid])  # offline: the fixture reports running ones
    online_at: list[float] = []

    def come_online() -> None:
        time.sleep(3)
        aws.ec2.start_instances(InstanceIds=[iid])
        online_at.append(time.monotonic())

    threading.Thread(target=come_online, daemon=True).start()
    wait_ssm_online(aws, iid, timeout=30, poll=2.0)
    late = time.monotonic() - online_at[0]
    assert late < 1.2, f"online seen {late:.2f} s late"


def test_a_resume_fetches_its_chunks_and_checkpoints_at_once_and_in_order(aws, tmp_path):
    """restore(): S3 gets overlap (they went one by one: 40 chunks, 40 round trips)."""
    import threading

    from runctl_jupyter.agent.clients import make_s3_client
    from runctl_jupyter.agent.restore import restore

    aws.s3.create_bucket(Bucket="bkt")
    for n in range(1, 41):
        line = json.dumps({"seq": n, "t": 1.0, "type": "log", "text": f"{n}\n"}) + "\n"
        aws.s3.put_object(Bucket="bkt", Key=f"runctl/runs/r1/events/{n:06d}.jsonl", Body=line)
    for n in range(6):
        aws.s3.put_object(Bucket="bkt", Key=f"runctl/runs/r1/checkpoints/step-{n}.pt", Body=b"w")
    run = tmp_path / "r1"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"run_id": "r1"}))
    cfg = {"kind": "s3", "bucket": "bkt", "prefix": "runctl/", "region": "us-east-1"}

    in_flight, most, lock = [0], [0], threading.Lock()

    def began(**_):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])

    def ended(**_):
        with lock:
            in_flight[0] -= 1

    events = make_s3_client("us-east-1").meta.events  # the client restore() uses
    hooks = [("before-send.s3.GetObject", began), ("after-call.s3.GetObject", ended)]
    hooks += [("after-call-error.s3.GetObject", ended)]
    for name, hook in hooks:
        events.register(name, hook)
    try:
        done = restore(run, cfg)
    finally:
        for name, hook in hooks:
            events.unregister(name, hook)
    assert done == {"events": 40, "fetched_events": 40, "checkpoints": 6, "refused": []}
    seqs = [json.loads(line)["seq"] for line in (run / "events.jsonl").read_text().splitlines()]
    assert seqs == list(range(1, 41))
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        f"step-{n}.pt" for n in range(6)
    ]
    assert most[0] >= 2, "the gets went one at a time"


def test_the_first_metric_is_pulled_within_a_quarter_second_of_reaching_s3(aws, tmp_path):
    """A panel calls pull() all the time; pull paces itself. Until the first metric it
    looks every 0.25 s (it looked every 1 s: a metric landing at 1.1 s was seen at 2 s)."""
    import time

    aws.s3.create_bucket(Bucket="bkt")
    mirror = tmp_path / "r1"
    mirror.mkdir()
    spec = {"run_id": "r1", "target": {"bucket": "bkt", "prefix": "runctl/", "instance_id": None}}
    backend = AWSBackend(clients=aws)  # the default pacing
    status = json.dumps({"seq": 1, "t": 1.0, "type": "status", "status": "running"}) + "\n"
    aws.s3.put_object(Bucket="bkt", Key="runctl/runs/r1/events/000001.jsonl", Body=status)
    started = time.monotonic()
    landed = None
    while time.monotonic() - started < 5:
        backend.pull(mirror, spec)
        events, _ = read_events(mirror / "events.jsonl")
        if any(e["type"] == "metric" for e in events):
            break
        if landed is None and time.monotonic() - started > 1.1:
            metric = {"seq": 2, "t": 2.0, "type": "metric", "step": 0, "values": {"loss": 1.0}}
            key = "runctl/runs/r1/events/000002.jsonl"
            aws.s3.put_object(Bucket="bkt", Key=key, Body=json.dumps(metric) + "\n")
            landed = time.monotonic()
        time.sleep(0.02)
    assert landed is not None
    late = time.monotonic() - landed
    assert late < 0.5, f"the first metric was pulled {late:.2f} s after it reached S3"
    calls = aws.total_calls("s3.ListObjectsV2")
    # then the usual pace: the next list comes a second later, not a quarter second
    time.sleep(0.5)
    backend.pull(mirror, spec)
    assert aws.total_calls("s3.ListObjectsV2") == calls


def test_the_boots_s3_client_serves_the_agents_steps_after_it(monkeypatch):
    """The staging made three S3 clients (bundle, restore, the attempt's marker), each
    loading S3's model again (seconds on a small instance); now the first serves all."""
    import boto3

    from runctl_jupyter.agent import clients

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:11")  # a key of its own
    monkeypatch.setattr(clients, "_CLIENTS", {})
    fetcher = boto3.session.Session().client("s3", region_name="eu-north-1")
    clients.adopt("s3", "eu-north-1", fetcher)
    assert clients.make_s3_client("eu-north-1") is fetcher
    other = clients.make_s3_client("eu-west-3")
    assert other is not fetcher and clients.make_s3_client("eu-west-3") is other
    assert "s3.download_file(" not in bootstrap._STAGE_PY  # one GET for the bundle, no HEAD
    assert 'adopt("s3", region, s3)' in bootstrap._STAGE_PY


def test_plain_pins_ride_in_the_script_all_or_none():
    """A bare image installs the agent's packages and the pins in one pip run: the pins
    come in the script's PINS array, quoted, only when every line is a plain pin."""
    script = bootstrap.script("b", "k.tar.gz", "us-east-1", "r1", 1, pins=["numpy==2.4.6"])
    assert "\nPINS=(numpy==2.4.6)\n" in script
    assert 'pip_install boto3 cloudpickle ${PINS[@]+"${PINS[@]}"}' in script
    for odd in (["numpy>=2"], ["numpy==2; python_version>'3'"], ["-e ."], ["x==1 $(reboot)"]):
        assert "\nPINS=()\n" in bootstrap.script("b", "k", "us-east-1", "r1", 1, pins=odd)
    many = [f"package-{i}==1.0" for i in range(400)]  # too long for a command: pip reads the file
    assert "\nPINS=()\n" in bootstrap.script("b", "k", "us-east-1", "r1", 1, pins=many)
    assert "\nPINS=()\n" in bootstrap.boot_script("b", "k", "us-east-1", "r1")
    # a warm start starts no Python of its own for the pins check or the idle watcher
    assert "agent.idle ensure" not in script and "pins_present(reqs)" in bootstrap._STAGE_PY


def test_a_venv_without_pip_installs_with_the_pip_wheel_its_python_bundles(tmp_path):
    """The bare image's venv is made without pip (ensurepip's install of pip into it took
    seconds) and pip runs from the wheel the Python bundles, as the script does."""
    from runctl_jupyter.aws.stage_py import _PIP_WHEEL_PY

    wheel = subprocess.run(
        [sys.executable, "-c", _PIP_WHEEL_PY], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert Path(wheel).name.startswith("pip-") and Path(wheel).is_file()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert not list(venv.glob("lib/python3*/site-packages/pip"))
    local = tmp_path / "pkg"
    (local / "runctl_tiny").mkdir(parents=True)
    (local / "runctl_tiny" / "__init__.py").write_text("X = 1\n")
    (local / "pyproject.toml").write_text(
        '[project]\nname = "runctl-tiny"\nversion = "1.0"\n'
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n'
    )
    (local / "backend.py").write_text(_TINY_BACKEND)
    out = subprocess.run(
        [str(venv / "bin" / "python"), f"{wheel}/pip", "install", "-q", "--no-compile",
         "--no-index", "--no-build-isolation", str(local)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    check = [str(venv / "bin" / "python"), "-c", "import runctl_tiny; print(runctl_tiny.X)"]
    assert subprocess.run(check, capture_output=True, text=True).stdout.strip() == "1"


# a PEP 517 backend with no dependency (offline): a wheel of the one package folder
_TINY_BACKEND = '''
import base64, hashlib, os, zipfile

def _record(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = "runctl_tiny-1.0-py3-none-any.whl"
    files = {
        "runctl_tiny/__init__.py": open("runctl_tiny/__init__.py", "rb").read(),
        "runctl_tiny-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\\nName: runctl-tiny\\nVersion: 1.0\\n",
        "runctl_tiny-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
    }
    lines = [_record(n, d) for n, d in files.items()] + ["runctl_tiny-1.0.dist-info/RECORD,,"]
    files["runctl_tiny-1.0.dist-info/RECORD"] = ("\\n".join(lines) + "\\n").encode()
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
    return name
'''


def test_one_launch_asks_who_the_caller_is_once(aws):
    """The credentials check, the bucket's name and the launch's own check asked STS three
    times in a row; the later two reuse the first answer (a doctor always asks)."""
    calls = lambda: aws.calls.get("sts.GetCallerIdentity", 0)  # noqa: E731
    before = calls()
    first = aws.identity()
    assert aws.identity(reuse=60) == first and aws.identity(reuse=60) == first
    assert calls() == before + 1
    aws.identity()  # no reuse asked: AWS is asked again
    assert calls() == before + 2
