from __future__ import annotations

import os
import sys
from pathlib import Path

import comm
import pytest
from comm.base_comm import BaseComm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from container_runtime import dockerfile, podman  # noqa: E402, F401 - --image's fixtures (real podman)


@pytest.fixture
def home(tmp_path, monkeypatch):
    """An empty RUNCTL_HOME for one test."""
    path = tmp_path / "runctl-home"
    monkeypatch.setenv("RUNCTL_HOME", str(path))
    return path


@pytest.fixture
def session(home, tmp_path, monkeypatch):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = Runctl(home=str(home), grace_seconds=3.0, refresh_interval=0.05)
    return Session(config=config)


@pytest.fixture
def ip(home, tmp_path, monkeypatch):
    """The real IPython shell with the extension loaded, in a fresh working folder, and a
    fresh magic that reads this test's RUNCTL_HOME; quick refresh and a short grace."""
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter.magics import RunctlMagics

    shell = InteractiveShell.instance()
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    shell.run_line_magic("load_ext", "runctl_jupyter")
    shell.register_magics(RunctlMagics(shell=shell))
    shell.run_line_magic("config", "Runctl.refresh_interval = 0.05")
    shell.run_line_magic("config", "Runctl.grace_seconds = 3.0")
    return shell


@pytest.fixture(autouse=True)
def _package_on_path(monkeypatch):
    # agents and runners are separate processes: make sure they import this checkout
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )


class RecordingComm(BaseComm):
    """A widget comm that keeps what the kernel would send to the frontend
    (ipywidgets' own tests use the same trick): panels are tested without a browser."""

    def __init__(self, *args, **kwargs):
        self.messages: list[tuple[str, dict]] = []
        super().__init__(*args, **kwargs)

    def publish_msg(self, msg_type, data=None, metadata=None, buffers=None, **keys):
        self.messages.append((msg_type, data or {}))


@pytest.fixture
def comms(monkeypatch):
    """Every comm a widget opens during the test, with the messages it sent."""
    created: list[RecordingComm] = []

    def create(*args, **kwargs):
        c = RecordingComm(*args, **kwargs)
        created.append(c)
        return c

    monkeypatch.setattr(comm, "create_comm", create)
    return created


@pytest.fixture()
def no_aws(monkeypatch):
    """AWS is configured nowhere reachable: a closed port on 127.0.0.1, no credentials."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
