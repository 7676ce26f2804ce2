"""`train --backend aws --image ./Dockerfile`: the Dockerfile travels in the bundle, the
played instance builds it with a real podman (tests/container_runtime.py) and the
cell runs in it while the agent stays on the instance; a missing runtime is one line."""

from __future__ import annotations

import json
from pathlib import Path

from traitlets.config import Config

from runctl_jupyter.agent import container
from runctl_jupyter.agent.service import _prepare
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.container_runtime = "podman"  # the played instance's (the AMI's would be docker)
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    return Session(config=Runctl(config=cfg))


CELL = """
import os
print("in the image:", open("/opt/marker.txt").read().strip(), os.environ["IMAGE_MARK"])
for i in range(3):
    runctl.log(step=i, acc=i / 2)
"""


def test_a_dockerfile_is_built_on_the_instance_and_the_cell_runs_in_it(
    aws, instance, podman, dockerfile, tmp_path: Path
):
    setup(aws)
    # the sandbox's podman settings (storage, runc); /usr/sbin as on an instance (iptables
    # for the build's network)
    instance.extra_env = {**podman, "PATH": f"{instance.bare_bin}:/usr/bin:/bin:/usr/sbin:/sbin"}
    session = _session(tmp_path)
    run = session.train(
        code=CELL,
        backend="aws",
        options={"instance_type": "t3.micro", "image": str(dockerfile)},
    )
    assert session.store.get(run.id)["status"] == "succeeded", session.logs(run.id)
    assert session.store.metrics(run.id)["acc"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert "in the image: from the image yes" in str(session.logs(run.id))
    spec = json.loads((session.store.run_dir(run.id) / "spec.json").read_text())
    options = spec["options"]
    assert options["container_network"] == "host"  # IMDS and S3 from the container
    assert options["image_build"] == {"dockerfile": "Dockerfile"}
    played = list(instance.sandbox.glob(f"disk-*/runctl/runs/{run.id}/image/Dockerfile"))
    assert played and played[0].read_text() == dockerfile.read_text()  # came in the bundle


def test_an_instance_without_docker_fails_the_prepare_with_one_line(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = {"run_id": "r1", "kind": "cell", "options": {"image": "img", "container_runtime": "docker"}}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert container.find_runtime("docker") is None
    assert _prepare(str(run_dir)) == 6
    line = (run_dir / ".prepare-error").read_text()
    assert "\n" not in line and line.startswith("--image needs docker on the instance")
    assert "Deep Learning AMI" in line


def test_an_image_brings_the_code_s_packages_so_the_instance_installs_none(tmp_path):
    from runctl_jupyter.aws.bundle import requirements_for

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "code.py").write_text("import torch, numpy\n")
    spec = {"kind": "cell", "entry": "code.py", "options": {"image": "pytorch/pytorch:2.5.1"}}
    assert requirements_for(run_dir, spec, "auto") == []
