"""`--image`: the code of a local run in a real podman container (tests/container_runtime.py
sets podman up for this sandbox and imports a base image of this machine's Python)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from agent_helpers import wait_for
from container_runtime import BASE_IMAGE

from runctl_jupyter.agent import container
from runctl_jupyter.errors import RunctlError, RunFailed

LOOP = """
import time
ckpt = runctl.load_checkpoint()
start = ckpt + 1 if ckpt is not None else 0
for step in range(start, steps):
    runctl.log(step=step, value=step * 2)
    runctl.save_checkpoint(step)
    if runctl.should_stop:
        print("stop seen in the container at", step, flush=True)
        break
    time.sleep(pause)
"""


@pytest.fixture
def csession(podman, home, tmp_path, monkeypatch):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    work = tmp_path / "work"
    work.mkdir()
    dataset = tmp_path / "dataset"  # a data folder outside the workdir, linked into it
    dataset.mkdir()
    (dataset / "rows.txt").write_text("1\n2\n3\n")
    (work / "data").symlink_to(dataset)
    monkeypatch.chdir(work)
    config = Runctl(
        home=str(home), grace_seconds=5.0, refresh_interval=0.05, container_network="none"
    )
    return Session(config=config)


CELL = """
import os
print("marker:", open("/opt/marker.txt").read().strip(), open("/opt/built").read(), os.environ["IMAGE_MARK"])
rows = open("data/rows.txt").read().split()
runctl.log(step=0, rows=len(rows), in_run_folder=int(os.path.isdir(os.environ["RUNCTL_RUN_DIR"])))
open(os.path.join(os.environ["RUNCTL_RUN_DIR"], "written-in-container.txt"), "w").write(os.getcwd())
print("region:", os.environ.get("AWS_DEFAULT_REGION"), "home:", os.environ.get("HOME"))
"""


def test_a_cell_runs_in_the_image_built_from_a_dockerfile(csession, dockerfile, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")  # passed by name
    run = csession.train(code=CELL, options={"image": str(dockerfile)})
    assert run.row["status"] == "succeeded", csession.logs(run.id)
    assert run.metrics == {"rows": 3, "in_run_folder": 1}  # reached the store
    logs = csession.logs(run.id)
    assert "marker: from the image built yes" in logs
    assert "region: eu-west-3" in logs and f"home: {os.environ['HOME']}" not in logs
    run_dir = csession.store.run_dir(run.id)
    assert (run_dir / "written-in-container.txt").read_text() == os.getcwd()  # same workdir
    assert (run_dir / "image" / "Dockerfile").exists()
    tag = f"{container.BUILD_REPO}:{container.context_digest(run_dir / 'image')[:32]}"
    assert subprocess.run(["podman", "image", "exists", tag]).returncode == 0
    again = csession.train(code=CELL, options={"image": str(dockerfile)})
    assert again.row["status"] == "succeeded"
    build_log = (csession.store.run_dir(again.id) / container.BUILD_LOG).read_text()
    assert f"{tag} exists: not built again" in build_log and "STEP" not in build_log
    rerun = csession.rerun(run.id)  # the source run's image/ comes along: the same tag
    assert rerun.row["status"] == "succeeded"
    assert f"{tag} exists" in (csession.store.run_dir(rerun.id) / container.BUILD_LOG).read_text()


def test_stop_reaches_the_code_in_the_container_and_resume_continues(csession):
    params = {"steps": 400, "pause": 0.05}
    run = csession.train(code=LOOP, params=params, options={"image": BASE_IMAGE}, detach=True)
    wait_for(
        lambda: csession.store.refresh(run.id) is not None and len(run.checkpoints()) >= 3,
        timeout=60,
    )
    stopped = csession.stop(run.id, wait=60)  # under load, --rm of a vfs copy takes seconds
    assert stopped.row["status"] == "stopped" and stopped.row["reason"] == "user", csession.logs(run.id)[-3000:]
    assert "stop seen in the container at" in csession.logs(run.id)  # SIGTERM reached the code
    name = container.container_name(run.id, 1)
    assert subprocess.run(["podman", "container", "exists", name]).returncode == 1  # --rm
    last = run.checkpoints()[-1]["step"]
    csession.resume(run.id, detach=True)
    wait_for(
        lambda: (
            csession.store.refresh(run.id) is not None and last + 1 in dict(run.history()["value"])
        ),
        timeout=60,
    )
    csession.stop(run.id, force=True, wait=60)
    assert run.row["attempt"] == 2 and run.row["status"] == "stopped"
    assert subprocess.run(["podman", "container", "exists", container.container_name(run.id, 2)]).returncode == 1
    steps = [s for s, _ in run.history()["value"]]
    assert steps == sorted(set(steps)) and last + 1 in steps  # continued, no duplicates


def test_a_dockerfile_that_fails_to_build_fails_the_run_with_its_last_lines(csession, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "Dockerfile").write_text(
        f"FROM {BASE_IMAGE}\n"
        'RUN ["python3", "-c", "import sys; [print(\'line\', i) for i in range(40)]; '
        'print(\'no such wheel\'); sys.exit(3)"]\n'
    )
    with pytest.raises(RunFailed) as info:
        csession.train(code="print('never')", options={"image": str(folder / "Dockerfile")})
    text = str(info.value)
    assert "the Dockerfile failed to build (last 20 lines)" in text and "no such wheel" in text
    assert "line 30" in text and "line 10" not in text and "STEP 1/" not in text  # the tail
    assert "never" not in csession.logs(info.value.run_id)


def test_a_missing_image_or_runtime_is_one_line_before_anything_is_written(
    csession, monkeypatch, tmp_path
):
    with pytest.raises(RunctlError) as info:
        csession.train(code="print(1)", options={"image": "localhost/no-such-image:1"})
    line = str(info.value)
    assert "\n" not in line and "localhost/no-such-image:1 does not exist here and cannot be pulled" in line
    with pytest.raises(RunctlError, match="no such Dockerfile"):
        csession.train(code="print(1)", options={"image": "./missing/Dockerfile"})
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RunctlError) as info:
        csession.train(code="print(1)", options={"image": BASE_IMAGE})
    assert str(info.value) == (
        "--image needs docker or podman: install one (e.g. apt-get install podman), or drop --image"
    )
    assert csession.store.list_runs() == []


def _documented_flags(runtime: str) -> set[str]:
    """The long and short options `RUNTIME run --help` documents (no daemon needed)."""
    out = subprocess.run([runtime, "run", "--help"], capture_output=True, text=True).stdout
    import re

    return set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", out))


@pytest.mark.parametrize("runtime", ["podman", "docker"])
def test_the_wrapped_argv_uses_only_documented_flags_and_names_not_values(runtime, tmp_path):
    if runtime == "docker" and shutil.which("docker") is None:
        pytest.fail("the docker client is needed to read `docker run --help`")
    argv = container.wrap(
        ["python3", "-m", "runctl_jupyter.agent.runner", "/runs/r1"],
        container.passed_env(
            {"RUNCTL_RUN_DIR": "/runs/r1", "SECRET_TOKEN": "s3cr3t", "PATH": "/x", "AWS_REGION": "r"},
            {"RUNCTL_RUN_DIR"},
        ),
        runtime=runtime,
        image="pytorch/pytorch:2.5.1",
        name="runctl-r1-1",
        workdir="/work",
        mounts=["/runs/r1:/runs/r1", "/pkg:/pkg:ro"],
        gpus=True,
        network="host",
        user="1000:1000",
    )
    flags = [a for a in argv[: argv.index("pytorch/pytorch:2.5.1")] if a.startswith("-")]
    assert set(flags) <= _documented_flags(runtime), set(flags) - _documented_flags(runtime)
    assert argv[:6] == [runtime, "run", "--rm", "--init", "--name", "runctl-r1-1"]
    assert argv[argv.index("pytorch/pytorch:2.5.1") :] == [
        "pytorch/pytorch:2.5.1", "python3", "-m", "runctl_jupyter.agent.runner", "/runs/r1",
    ]
    pairs = list(zip(argv, argv[1:]))
    assert ("--env", "RUNCTL_RUN_DIR") in pairs and ("--env", "AWS_REGION") in pairs
    assert "s3cr3t" not in " ".join(argv) and ("--env", "PATH") not in pairs
    assert ("--env", "SECRET_TOKEN") not in pairs  # only the run's and AWS/CUDA-like names
    gpu = ("--gpus", "all") if runtime == "docker" else ("--device", "nvidia.com/gpu=all")
    assert gpu in pairs and ("--network", "host") in pairs and ("-w", "/work") in pairs
    assert ("-v", "/pkg:/pkg:ro") in pairs


def test_gpus_are_seen_by_their_device_files(tmp_path):
    assert not container.has_gpus(str(tmp_path))
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "nvidiactl").touch()
    assert not container.has_gpus(str(tmp_path))
    (tmp_path / "dev" / "nvidia0").touch()
    assert container.has_gpus(str(tmp_path))


def test_the_image_option_is_on_train_sweep_and_dev():
    from runctl_jupyter.commands import parse, to_call

    for line in ("train --image ./Dockerfile x.py", "sweep --image img --grid a=1,2 x.py",
                 "dev --image img x.py"):
        assert to_call(parse(line.split()))[1]["options"]["image"] == line.split()[2]


def test_packages_for_the_host_are_refused_with_an_image():
    from runctl_jupyter.runs.image import image_options

    for name, value in (("pip", ["numpy"]), ("requirements", "reqs.txt")):
        with pytest.raises(RunctlError, match=f"--{name} installs packages on the host"):
            image_options({"image": "img", name: value}, "aws")
    options = {"image": "img", "pip": []}
    assert image_options(options, "aws") is None  # `--pip none`: nothing to refuse
    assert options["container_runtime"] == "docker" and options["container_network"] == "host"


def test_a_sweep_s_trials_run_in_the_image_built_from_a_relative_dockerfile(
    csession, dockerfile, monkeypatch
):
    monkeypatch.chdir(dockerfile.parent.parent)  # the scheduler runs elsewhere: the path is made full
    code = "runctl.log(step=0, acc=lr * (open('/opt/marker.txt').read() == 'from the image\\n'))\n"
    sw = csession.sweep(
        code=code,
        grid={"lr": [1, 2]},
        objective="acc:max",
        options={"image": "image-src/Dockerfile"},
        max_parallel=1,
    )
    assert sw.state.status == "succeeded" and sw.state.counts()["done"] == 2
    assert sw.best["objective"] == 2  # run in the image: it has the marker


def test_the_agent_side_pull_of_a_missing_image_is_one_line(podman, tmp_path):
    """What an instance's agent says when the named image cannot be pulled there."""
    spec = {"run_id": "r1", "options": {"image": "localhost/no-such-image:2"}}
    with pytest.raises(container.ContainerError) as info:
        container.prepare_image(spec, tmp_path, tick=lambda: True)
    line = str(info.value)
    assert "\n" not in line
    assert line.startswith("image localhost/no-such-image:2 does not exist here and cannot be pulled: ")
    assert "podman pull localhost/no-such-image:2" in (tmp_path / container.BUILD_LOG).read_text()
