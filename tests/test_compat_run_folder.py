"""A home written by runctl-jupyter 0.1.0 before the package layout move (issue 13),
checked in as it was made: its run is listed, shown, attached to and resumed by
today's code. The run failed on purpose after its step-2 checkpoint; its resume
continues from that checkpoint under the same id."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session

FIXTURE = Path(__file__).parent / "fixtures" / "home-0.1.0"
RUN_ID = "77c1290358"


@pytest.fixture
def old_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(FIXTURE, home)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    # Machine paths only: a folder moved to another machine keeps its format, not its
    # interpreter or working directory.
    spec_file = home / "runs" / RUN_ID / "spec.json"
    spec = json.loads(spec_file.read_text())
    if not Path(spec["python"]).exists():
        spec["python"] = sys.executable
    if not Path(spec["workdir"]).is_dir():
        spec["workdir"] = str(work)
    spec_file.write_text(json.dumps(spec, indent=1))
    return Session(config=Runctl(home=str(home), grace_seconds=3.0, refresh_interval=0.05))


def test_an_old_run_is_listed(old_home):
    table = old_home.runs()
    text = str(table)
    assert RUN_ID in text and "before-the-move" in text and "failed" in text


def test_an_old_run_is_shown_with_its_params_metrics_and_checkpoint(old_home):
    details = old_home.show("before-the-move")
    text = str(details)
    assert RUN_ID in text
    assert "steps" in text and "planted failure" in text
    run = old_home.run(RUN_ID)
    assert run.params == {
        "steps": 6,
        "note": "made by runctl-jupyter 0.1.0 before the package layout move",
    }
    assert [step for step, _ in run.history(["loss"])["loss"]] == [0, 1, 2, 3]
    assert len(run.checkpoints()) == 1


def test_attaching_to_an_old_ended_run_returns_it(old_home):
    run = old_home.attach(RUN_ID[:6])
    assert run.id == RUN_ID
    assert run.row["status"] == "failed"


def test_an_old_failed_run_resumes_from_its_checkpoint_under_the_same_id(old_home):
    run = old_home.resume(RUN_ID)
    assert run.id == RUN_ID
    assert run.row["status"] == "succeeded"
    steps = [step for step, _ in run.history(["loss"])["loss"]]
    assert steps == [0, 1, 2, 3, 4, 5]  # attempt 2 went on from the step-2 checkpoint
    out = (old_home.store.run_dir(RUN_ID) / "stdout.log").read_text()
    assert "done at 5" in out
