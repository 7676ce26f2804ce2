"""`%runctl dev`: a dev run whose attempts restart on each change, on this machine
(real IPython shell, real agents, processes and files; docs/dev.md)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from agent_helpers import events_of, wait_for
from IPython.core.error import UsageError

SCRIPT = """\
import time
import helper
from runctl_jupyter.runtime import runctl
print("version {version}", helper.WORD, flush=True)
for step in range(1000):
    runctl.log(step=step, loss=1.0 / (step + 1))
    if runctl.should_stop:
        break
    time.sleep(0.05)
"""


def _write_project(version: str = "A", word: str = "one") -> None:
    Path("helper.py").write_text(f"WORD = {word!r}\n")
    Path("train.py").write_text(SCRIPT.format(version=version))


def _log(home: Path, run_id: str) -> str:
    path = home / "runs" / run_id / "stdout.log"
    return path.read_text() if path.exists() else ""


def _restarts(home: Path, run_id: str) -> list[dict]:
    return [
        e
        for e in events_of(home / "runs" / run_id)
        if e["type"] == "status" and e.get("reason") == "restart"
    ]


def _status(session, run_id: str) -> str:
    session.store.refresh(run_id)
    return session.store.get(run_id)["status"]


def _stop(ip, run_id: str, home: Path) -> None:
    ip.run_line_magic("runctl", f"stop {run_id}")
    from runctl_jupyter.backends.local import LocalBackend, agent_info

    wait_for(lambda: not LocalBackend._is_our_agent(agent_info(home / "runs" / run_id)))


def test_a_watched_script_and_its_module_restart_the_same_run_with_the_new_code(ip, home):
    _write_project()
    run = ip.run_line_magic("runctl", "dev train.py --watch --detach")
    wait_for(lambda: "version A one" in _log(home, run.id))

    Path("train.py").write_text(SCRIPT.format(version="B"))
    wait_for(lambda: "=== attempt 2 ===\nversion B one" in _log(home, run.id))
    Path("helper.py").write_text("WORD = 'two'\n")
    wait_for(lambda: "=== attempt 3 ===\nversion B two" in _log(home, run.id))

    restarts = _restarts(home, run.id)
    assert [(e["attempt"], e["next_attempt"], e["changed"]) for e in restarts] == [
        (1, 2, ["train.py"]),
        (2, 3, ["helper.py"]),
    ]
    # one run, every attempt under its id; the panel's feed shows each restart
    session = ip.magics_manager.registry["RunctlMagics"].session
    assert [r["id"] for r in session.store.list_runs(limit=None)] == [run.id]
    from runctl_jupyter.display.run_feed import RunFeed

    session.store.refresh(run.id)
    row = session.store.get(run.id)
    feed = RunFeed(row)
    feed.update(row, session.store.events(run.id))
    assert list(feed.warnings) == ["restarted: train.py changed", "restarted: helper.py changed"]
    assert row["attempt"] == 3 and row["status"] == "running"

    _stop(ip, run.id, home)
    watcher = session._dev_runs
    wait_for(lambda: run.id not in watcher.watchers, timeout=10)  # Stop ended the session
    assert session.store.get(run.id)["status"] == "stopped"


def test_stop_while_following_ends_the_dev_session_and_returns(session, home, capfd):
    _write_project()

    def edit_then_stop():
        wait_for(lambda: session.store.list_runs(limit=None))
        run_id = session.store.list_runs(limit=None)[0]["id"]
        wait_for(lambda: "version A" in _log(home, run_id))
        Path("train.py").write_text(SCRIPT.format(version="B"))
        wait_for(lambda: "version B" in _log(home, run_id))
        session.backend_stop(run_id)  # what the panel's Stop button does

    editor = threading.Thread(target=edit_then_stop, daemon=True)
    editor.start()
    run = session.dev(script="train.py", watch=True)  # blocks until the Stop
    editor.join(timeout=5)
    row = session.store.get(run.id)
    assert (row["status"], row["reason"], row["attempt"]) == ("stopped", "user", 2)
    assert session._dev_runs.watchers == {}
    said = capfd.readouterr().err
    assert f"dev session of run {run.id} ended (stopped).\n" in said  # nothing kept locally


def test_a_syntax_error_saved_while_watching_keeps_the_attempt_running(ip, home, capfd):
    _write_project()
    run = ip.run_line_magic("runctl", "dev train.py --watch --detach")
    wait_for(lambda: "version A" in _log(home, run.id))
    Path("train.py").write_text(SCRIPT.format(version="B") + "def broken(:\n")
    wait_for(lambda: "train.py line 10: SyntaxError" in capfd.readouterr().err, timeout=10)
    assert _restarts(home, run.id) == []
    Path("train.py").write_text(SCRIPT.format(version="C"))
    wait_for(lambda: "=== attempt 2 ===\nversion C" in _log(home, run.id))
    _stop(ip, run.id, home)


def test_running_a_dev_cell_again_restarts_its_run_with_the_new_cell(ip, home):
    ip.run_cell_magic("runctl", "dev --name cellrun -p word=hi", 'print("cell says", word)\n')
    first = ip.user_ns["_runctl_run"]
    assert "cell says hi" in _log(home, first.id)
    # the attempt ended; its agent waits for the next change: running the cell again
    ip.run_cell_magic("runctl", "dev --name cellrun -p word=bye", 'print("cell now says", word)\n')
    second = ip.user_ns["_runctl_run"]
    assert second.id == first.id
    log = _log(home, first.id)
    assert "=== attempt 2 ===\ncell now says bye" in log
    row = second.row
    assert (row["attempt"], row["status"]) == (2, "succeeded")
    assert [e["next_attempt"] for e in _restarts(home, first.id)] == []  # ended, not stopped
    warnings = [e["message"] for e in events_of(home / "runs" / first.id) if e["type"] == "warning"]
    assert warnings == ["restarted: the cell, params.json changed"]
    # Stop ends the waiting agent; the cell run again starts the next attempt all the same
    _stop(ip, first.id, home)
    ip.run_cell_magic("runctl", "dev --name cellrun -p word=again", 'print("third", word)\n')
    assert "=== attempt 3 ===\nthird again" in _log(home, first.id)
    assert ip.user_ns["_runctl_run"].row["attempt"] == 3
    _stop(ip, first.id, home)


def test_validate_before_run_refuses_a_syntax_error_before_anything_starts(ip, home):
    Path("train.py").write_text("print('ok')\nfor x in range(3)\n    print(x)\n")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("runctl", "dev train.py --validate-before-run")
    assert str(info.value).startswith("train.py line 2: SyntaxError")
    assert "nothing was started" in str(info.value)
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


def test_validate_before_run_names_an_import_that_resolves_nowhere(ip, home):
    Path("helper.py").write_text("x = (\n")  # a local module's syntax is checked too
    Path("train.py").write_text("import helper\n")
    with pytest.raises(UsageError, match=r"^helper.py line 1: SyntaxError"):
        ip.run_line_magic("runctl", "dev train.py --validate-before-run")
    Path("train.py").write_text("import numpy\nimport no_such_module_xyz\n")
    with pytest.raises(UsageError, match="imports no_such_module_xyz, which resolves neither"):
        ip.run_line_magic("runctl", "dev train.py --validate-before-run")
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


SMOKE = """\
from runctl_jupyter.runtime import runctl
rows = runctl.params["rows"]
print("rows", rows, flush=True)
for step in range(100):
    if step == runctl.params.get("fail_at"):
        raise ValueError(f"bad batch at step {step}")
    runctl.log(step=step, loss=1.0 / (step + 1))
"""


def test_smoke_steps_run_n_steps_here_on_the_named_slice_then_the_dev_run(ip, home):
    Path("train.py").write_text(SMOKE)
    run = ip.run_line_magic(
        "runctl", "dev train.py -p rows=50000 --smoke-steps 3 --smoke-param rows=64 --detach"
    )
    session = ip.magics_manager.registry["RunctlMagics"].session
    smoke = [r for r in session.store.list_runs(limit=None) if r["id"] != run.id]
    assert len(smoke) == 1
    smoke_id = smoke[0]["id"]
    row = session.store.get(smoke_id)
    assert row["status"] == "succeeded"
    assert [step for step, _ in session.store.metrics(smoke_id)["loss"]] == [0, 1, 2]  # no more
    assert "rows 64" in _log(home, smoke_id)
    wait_for(lambda: _status(session, run.id) == "succeeded")
    assert "rows 50000" in _log(home, run.id)
    assert len(session.store.metrics(run.id)["loss"]) == 100
    _stop(ip, run.id, home)


def test_a_failing_smoke_run_stops_there_with_its_reason(ip, home):
    Path("train.py").write_text(SMOKE)
    with pytest.raises(UsageError) as info:
        ip.run_line_magic(
            "runctl", "dev train.py -p rows=9 --smoke-steps 5 --smoke-param fail_at=2"
        )
    message = str(info.value)
    assert "failed (ValueError: bad batch at step 2); nothing was launched" in message
    session = ip.magics_manager.registry["RunctlMagics"].session
    assert [r["tags"] for r in session.store.list_runs(limit=None)] in (
        [["smoke"]],
        ['["smoke"]'],
    )


@pytest.mark.parametrize(
    "line, expected",
    [
        ("dev missing.py --watch", "dev --watch missing.py: no such file"),
        ("dev train.py --smoke-steps 0", "--smoke-steps: must be at least 1, got 0"),
        ("dev train.py --smoke-steps -2", "--smoke-steps"),
        ("dev train.py --nodes 2", "dev runs on one machine: drop --nodes"),
        ("dev train.py --smoke-param rows=5", "add --smoke-steps N"),
    ],
)
def test_bad_dev_input_is_one_line(ip, home, line, expected):
    Path("train.py").write_text("print(1)\n")
    with pytest.raises(UsageError) as info:
        ip.run_line_magic("runctl", line)
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not (home / "runs").exists() or not list((home / "runs").iterdir())


def test_shell_dev_needs_a_script_and_refuses_detach_with_watch(home, tmp_path, monkeypatch):
    from runctl_jupyter.cli import main

    monkeypatch.chdir(tmp_path)
    Path("train.py").write_text("print(1)\n")
    assert main(["dev"]) == 2
    assert main(["dev", "train.py", "--watch", "--detach"]) == 2
    assert main(["dev", "nope.py", "--watch"]) == 2


def test_the_dev_line_parses_into_train_kwargs_and_dev_options():
    from runctl_jupyter.commands import parse, split_line, to_call

    line = (
        "dev train.py --watch --validate-before-run --smoke-steps 3 --smoke-param rows=64 "
        "-p lr=0.1 --backend aws --instance-type g5.xlarge --keep -- --data ./d"
    )
    method, kw = to_call(parse(split_line(line)))
    assert method == "dev"
    assert (kw["script"], kw["watch"], kw["validate"], kw["smoke_steps"]) == (
        "train.py",
        True,
        True,
        3,
    )
    assert kw["smoke_params"] == {"rows": 64} and kw["params"] == {"lr": 0.1}
    assert kw["args"] == ("--data", "./d") and kw["backend"] == "aws"
    assert kw["options"]["instance_type"] == "g5.xlarge" and kw["options"]["keep"] is True
    assert not {"watch", "validate", "smoke_steps", "smoke_params"} & set(kw["options"])


def test_the_agent_writes_a_fetched_file_only_inside_the_run_folder_and_by_its_hash(tmp_path):
    import hashlib

    from runctl_jupyter.agent.restart import put_file

    data = b"WORD = 'three'\n"
    digest = hashlib.sha256(data).hexdigest()
    put_file(tmp_path, "work/pkg/helper.py", data, digest)
    assert (tmp_path / "work" / "pkg" / "helper.py").read_bytes() == data
    put_file(tmp_path, "run/code.py", data, digest)
    assert (tmp_path / "code.py").read_bytes() == data
    for name in ("../evil.py", "run/../../evil.py", "/etc/x", "work/", "other/x.py"):
        with pytest.raises(ValueError, match="outside the run folder"):
            put_file(tmp_path, name, data, digest)
    with pytest.raises(ValueError, match="does not match its hash"):
        put_file(tmp_path, "run/code.py", b"tampered", digest)
    assert (tmp_path / "code.py").read_bytes() == data


def test_shell_dev_watch_follows_restarts_and_ctrl_c_ends_the_session(home, tmp_path, monkeypatch):
    import signal
    import subprocess
    import sys
    import time

    monkeypatch.chdir(tmp_path)
    _write_project()
    proc = subprocess.Popen(
        [sys.executable, "-m", "runctl_jupyter", "dev", "train.py", "--watch"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = home / "runs"
        wait_for(lambda: runs.exists() and list(runs.iterdir()), timeout=30)
        run_id = next(runs.iterdir()).name
        wait_for(lambda: "version A one" in _log(home, run_id), timeout=30)
        Path("train.py").write_text(SCRIPT.format(version="B"))
        wait_for(lambda: "=== attempt 2 ===\nversion B one" in _log(home, run_id), timeout=30)
        time.sleep(2)  # the shell's view prints at its refresh interval
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert f"dev session of run {run_id} ended (interrupted)" in err
    assert "version B one" in out  # the shell followed the new attempt's output
    last = events_of(runs / run_id)[-1]
    assert (last["type"], last["status"], last["reason"], last["attempt"]) == (
        "exit",
        "stopped",
        "user",
        2,
    )
