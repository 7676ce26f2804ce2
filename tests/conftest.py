from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


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


@pytest.fixture(autouse=True)
def _package_on_path(monkeypatch):
    # agents and runners are separate processes: make sure they import this checkout
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    )
