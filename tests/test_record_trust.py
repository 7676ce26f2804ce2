"""A shared record is code (issue 20, item 4): `rerun record.ipynb` unpickles the
record's objects only when Jupyter's notary trusts it (a record this home wrote is
signed when its run ends), or the user says --trust; a tampered record is refused; a
pickled checkpoint whose sha256 is not its event's is not loaded."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from test_parser import _runctl  # the shell command in a fresh process

from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunctlError, RunFailed
from runctl_jupyter.magics import RunctlMagics
from runctl_jupyter.session import Session
from runctl_jupyter.store.trust import pickle_imports

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "home-0.1.0"
CODE = "runctl.log(step=0, v=shift(3) * k)\n"
# what a planted record would carry: unpickling it runs `touch` (protocol 0, by hand)
EVIL = b"cos\nsystem\n(S'touch %s'\ntR."


def _session(home: Path) -> Session:
    return Session(config=Runctl(home=str(home), grace_seconds=3.0, refresh_interval=0.05))


@pytest.fixture
def shared_record(tmp_path, monkeypatch) -> Path:
    """A record written by another home, on another machine (its own Jupyter data folder),
    copied into a shared folder; then this test's machine is a third Jupyter data folder."""
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "their-jupyter"))
    ns: dict = {"__name__": "__main__"}
    exec("OFFSET = 10\ndef shift(v):\n    return v + OFFSET\n", ns)
    run = _session(tmp_path / "their-home").train(
        code=CODE, params={"k": 2}, user_ns={"shift": ns["shift"]}
    )
    assert run.metrics == {"v": 26.0}
    shared = tmp_path / "shared" / "record.ipynb"
    shared.parent.mkdir()
    shutil.copy(run.record_path, shared)
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "my-jupyter"))
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    return shared


@pytest.fixture
def ip(home):
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "runctl_jupyter")
    shell.register_magics(RunctlMagics(shell=shell))  # a new Runctl reads this RUNCTL_HOME
    shell.run_line_magic("config", "Runctl.refresh_interval = 0.05")
    return shell


def test_a_record_from_elsewhere_is_refused_then_rerun_with_trust_in_the_magic(
    shared_record, ip, home
):
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("runctl", f"rerun {shared_record}")
    message = str(info.value)
    assert "\n" not in message
    assert f"{shared_record} was not written or trusted here" in message
    assert "pickled objects (shift)" in message and "add --trust" in message
    assert "cloudpickle" in message  # what unpickling would import, read from the bytes
    assert not (home / "runs").exists() or list((home / "runs").iterdir()) == []

    run = ip.run_line_magic("runctl", f"rerun {shared_record} --trust")
    assert run.metrics == {"v": 26.0} and run.row["status"] == "succeeded"
    again = ip.run_line_magic("runctl", f"rerun {shared_record} -p k=1")  # trusted now
    assert again.metrics == {"v": 13.0}


def test_a_record_from_elsewhere_needs_trust_in_the_shell(shared_record, tmp_path):
    home = tmp_path / "my-home"
    refused = _runctl("rerun", str(shared_record), home=home, cwd=tmp_path / "work")
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "not written or trusted here" in lines[0], refused.stderr
    assert "add --trust" in lines[0]
    trusted = _runctl("rerun", str(shared_record), "--trust", home=home, cwd=tmp_path / "work")
    assert trusted.returncode == 0, trusted.stderr
    assert len(list((home / "runs").iterdir())) == 1


def test_a_record_of_this_home_is_signed_and_a_tampered_one_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.chdir(tmp_path)
    session = _session(tmp_path / "home")
    first = session.train(code="runctl.log(step=0, v=k * m)", params={"k": 2}, user_ns={"m": 4})
    record = Path(first.record_path)
    from nbformat.sign import NotebookNotary

    assert NotebookNotary().check_signature(
        nbformat.read(record, as_version=4)
    )  # signed at its end
    copy = tmp_path / "elsewhere" / "r.ipynb"
    copy.parent.mkdir()
    shutil.copy(record, copy)
    assert session.rerun(str(copy)).metrics == {"v": 8.0}

    marker = tmp_path / "pwned"
    notebook = json.loads(copy.read_text())
    notebook["metadata"]["runctl"]["objects_b64"] = base64.b64encode(
        EVIL % str(marker).encode()
    ).decode()
    copy.write_text(json.dumps(notebook))
    with pytest.raises(RunctlError, match=r"not written or trusted here.*would import os\.system"):
        session.rerun(str(copy))
    assert not marker.exists()
    assert len(session.runs()) == 2  # nothing was started for it


def test_a_record_of_this_home_not_yet_signed_is_trusted_by_its_run_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.chdir(tmp_path)
    session = _session(tmp_path / "home")
    first = session.train(code="runctl.log(step=0, v=k)", user_ns={"k": 5})
    shutil.rmtree(tmp_path / "jupyter")  # as if signed by a Jupyter data folder now gone
    assert session.rerun(str(first.record_path)).metrics == {"v": 5.0}
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "another-jupyter"))
    with pytest.raises(RunctlError, match="not written or trusted here"):  # not its run folder
        _session(tmp_path / "other-home").rerun(str(first.record_path))


def test_an_old_record_with_no_objects_reruns_without_trust(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    old = work / "old-record.ipynb"
    shutil.copy(FIXTURE / "runs" / "77c1290358" / "record.ipynb", old)
    run = _session(tmp_path / "home").rerun(str(old), params={"steps": 3})
    assert run.row["status"] == "succeeded"
    assert [s for s, _ in run.history(["loss"])["loss"]] == [0, 1, 2]


def test_pickle_imports_reads_what_unpickling_would_import_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    assert pickle_imports(EVIL % str(marker).encode()) == ["os.system"]
    assert not marker.exists()
    assert pickle_imports(b"not a pickle") == ["(an unreadable pickle)"]


def test_a_checkpoint_changed_after_it_was_saved_is_not_loaded(session):
    code = (
        "ck = runctl.load_checkpoint()\n"
        "if ck is None:\n"
        "    runctl.save_checkpoint({'step': 1})\n"
        "    raise RuntimeError('planted failure after the checkpoint')\n"
        "print('resumed from', ck)\n"
    )
    with pytest.raises(RunFailed, match="planted failure") as failed:
        session.train(code=code)
    run_id = failed.value.run_id
    run_dir = session.store.run_dir(run_id)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    saved = next(e for e in events if e["type"] == "checkpoint")
    assert len(saved["sha256"]) == 64
    (run_dir / saved["path"]).write_bytes(EVIL % str(run_dir / "pwned").encode())
    with pytest.raises(RunFailed, match="CheckpointError: checkpoint checkpoints/step-"):
        session.resume(run_id)
    assert not (run_dir / "pwned").exists()
    log = (run_dir / "stdout.log").read_text()
    assert "does not match the sha256 its checkpoint event recorded" in log
    assert "resumed from" not in log


def test_the_live_view_shows_the_last_events_before_the_record_is_signed(tmp_path, monkeypatch):
    """Signing reads the record with nbformat, whose first import takes seconds: the view
    gets the events of the refresh that saw the exit first (issue 19: a short cell's first
    metric arrives with its exit), and the record is signed before the cell returns."""
    from nbformat.sign import NotebookNotary

    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.chdir(tmp_path)
    session = _session(tmp_path / "home")
    seen: list[tuple[list[str], bool]] = []

    class Spy:
        def update(self, row: dict, events: list[dict]) -> None:
            if any(e["type"] == "exit" for e in events):
                record = session.store.run_dir(row["id"]) / "record.ipynb"
                signed = NotebookNotary().check_signature(nbformat.read(record, as_version=4))
                seen.append(([e["type"] for e in events], signed))

        def idle(self, seconds: float) -> None:
            import time

            time.sleep(seconds)

        def finish(self, row: dict, metrics: dict) -> None:
            pass

    monkeypatch.setattr(session, "_live_view", lambda run: Spy())
    run = session.train(code="runctl.log(step=0, v=k)", params={"k": 2})
    assert len(seen) == 1 and seen[0][1] is False, seen  # shown first, signed after
    assert NotebookNotary().check_signature(nbformat.read(run.record_path, as_version=4))
