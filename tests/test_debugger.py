"""`train --debug` (issue 17): the run's process waits for a debugger (debugpy, on
127.0.0.1), a real DAP client attaches, stops at a breakpoint in the cell's code, reads
its variables and continues, and the run finishes; without a client the run goes on
after the timeout; bad input is one line. The global `--debug` (before the command)
keeps its meaning."""

from __future__ import annotations

import html
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from agent_helpers import busy_port, wait_for
from dap_client import DapClient, stop_at_and_read
from IPython.core.error import UsageError

from runctl_jupyter.commands import parse, to_call
from runctl_jupyter.commands.completion import complete
from runctl_jupyter.display.debug_attach import JUPYTERLAB_NOTE, launch_config
from runctl_jupyter.display.run_panel import RunPanel
from runctl_jupyter.events import read_events
from runctl_jupyter.runs.debugging import DebuggerView

BODY = "total = 0\nfor i in range(n):\n    total += i\nprint('total', total)\n"
PRINT_LINE = 4  # `print('total', total)`: the cell's 4th line is code.py's line 4


def _debugger_events(home: Path) -> list[dict]:
    found = []
    for path in sorted((home / "runs").glob("*/events.jsonl")):
        found += [e for e in read_events(path)[0] if e["type"] == "debugger"]
    return found


def _no_runs(home: Path) -> bool:
    return not (home / "runs").exists() or not list((home / "runs").iterdir())


def _waiting(home: Path) -> dict | None:
    return next((e for e in _debugger_events(home) if e["state"] == "waiting"), None)


def test_a_dap_client_stops_at_a_breakpoint_in_the_cell_reads_its_variables_and_the_run_ends(
    ip, home, capsys
):
    caught: dict = {}

    def debug() -> None:
        event = wait_for(lambda: _waiting(home), timeout=60)
        try:  # bound to 127.0.0.1 only: another loopback address (so any interface) is refused
            socket.create_connection(("127.0.0.2", event["port"]), timeout=5).close()
            caught["error"] = AssertionError("debugpy answers on 127.0.0.2: not 127.0.0.1 only")
        except ConnectionRefusedError:
            pass
        client = DapClient("127.0.0.1", event["port"])
        try:
            path = str(Path(event["run_dir"]) / "code.py")
            caught["frame"], caught["values"] = stop_at_and_read(
                client, path, PRINT_LINE, ("total", "i", "n")
            )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            caught["error"] = exc
        finally:
            client.close()

    thread = threading.Thread(target=debug, daemon=True)
    thread.start()
    run = ip.run_cell_magic(
        "runctl", "train --debug --debug-port 0 --debug-timeout 60 -p n=5", BODY
    )
    thread.join(30)
    assert "error" not in caught, caught.get("error")
    assert run.status == "succeeded"
    run_dir = home / "runs" / run.id
    assert caught["frame"]["source"]["path"] == str(run_dir / "code.py")
    assert caught["frame"]["line"] == PRINT_LINE
    assert caught["values"] == {"total": "10", "i": "4", "n": "5"}
    states = [e["state"] for e in _debugger_events(home)]
    assert states == ["waiting", "attached"]
    assert "total 10" in (run_dir / "stdout.log").read_text()
    # the shell's lines: where it waits, launch.json's attach entry as is, where to break
    err = capsys.readouterr().err
    waiting = _waiting(home)
    assert f"waits 60 s for a debugger on 127.0.0.1:{waiting['port']}" in err
    entry = json.loads(err[err.index("\n{") + 1 : err.index("\n}") + 2])
    assert entry == {
        "name": f"runctl {run.id}",
        "type": "debugpy",
        "request": "attach",
        "connect": {"host": "127.0.0.1", "port": waiting["port"]},
        "pathMappings": [{"localRoot": str(run_dir), "remoteRoot": str(run_dir)}],
    }
    assert f"set breakpoints in {run_dir / 'code.py'}" in err
    assert JUPYTERLAB_NOTE in err


def test_with_no_debugger_the_run_goes_on_after_the_timeout_and_the_panel_showed_how_to_attach(
    session, home
):
    run = session.train(
        code=BODY,
        params={"n": 3},
        options={"debugger": True, "debug_rank": 0, "debug_port": 0, "debug_timeout": 1.0},
    )
    assert run.status == "succeeded"
    events = session.store.events(run.id)
    states = [e["state"] for e in events if e["type"] == "debugger"]
    assert states == ["waiting", "timeout"]
    output = (home / "runs" / run.id / "stdout.log").read_text()
    assert "no debugger attached in 1 s: the run goes on" in output
    assert "total 3" in output
    # the panel (HTML mode) of that run while it waited: the attach settings
    waiting = next(e for e in events if e["type"] == "debugger")
    panel = RunPanel({**run.row, "status": "running"}, on_stop=lambda force: None, live=False)
    view = DebuggerView(session, run.id, panel)
    view.update({**run.row, "status": "running"}, [waiting])
    shown = html.unescape(panel.live_html())
    entry = launch_config(panel.debugger)
    assert entry["connect"] == {"host": "127.0.0.1", "port": waiting["port"]}
    assert json.dumps(entry, indent=2) in shown
    assert f"waits 1 s for a debugger on 127.0.0.1:{waiting['port']}" in shown
    assert JUPYTERLAB_NOTE in shown
    view.finish(run.row, {})
    assert "runctl-debugger" not in str(panel._repr_mimebundle_())  # gone once it ended
    # a rerun is the same run for reproduction: it does not wait for a debugger
    again = session.rerun(run.id)
    assert again.status == "succeeded"
    assert not [e for e in session.store.events(again.id) if e["type"] == "debugger"]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("train --debug --nodes 2 --backend aws", "--debug with --nodes 2: say which rank"),
        ("train --debug-port 5679", "--debug-port goes with --debug"),
        ("train --debug --debug-rank 2", "--debug-rank 2: the run has 1 process"),
        ("train --debug --debug-port 70000", "a port is 1-65535"),
        ("sweep --grid a=1,2 --debug", "--debug waits for a debugger in one run, not in a sweep"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(ip, home, line, says):
    with pytest.raises(UsageError) as caught:
        ip.run_cell_magic("runctl", line, "x = 1\n")
    assert says in str(caught.value)
    assert "\n" not in str(caught.value)
    assert _no_runs(home)


def test_a_debug_port_in_use_here_is_one_line_before_launch(ip, home):
    with busy_port() as port:
        with pytest.raises(UsageError) as caught:
            ip.run_cell_magic("runctl", f"train --debug --debug-port {port}", "x = 1\n")
    message = str(caught.value)
    assert f"--debug-port {port} is in use on this machine" in message
    assert "--debug-port 0 for a free one" in message and "\n" not in message
    assert _no_runs(home)


def _runner(tmp_path: Path, options: dict, env: dict | None = None) -> tuple[int, dict]:
    """The run's process itself (python -m runctl_jupyter.agent.runner) on a run folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "code.py").write_text("print('ran')\n")
    (run_dir / "params.json").write_text("{}")
    spec = {"run_id": "r1", "kind": "cell", "entry": "code.py", "options": options}
    (run_dir / "spec.json").write_text(json.dumps(spec))
    environ = {**os.environ, "RUNCTL_RUN_DIR": str(run_dir), "RUNCTL_ATTEMPT": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "runctl_jupyter.agent.runner", str(run_dir)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    error = run_dir / "error-1.json"
    return done.returncode, json.loads(error.read_text()) if error.exists() else {}


DEBUG = {"debugger": True, "debug_rank": 0, "debug_timeout": 5.0}


def test_the_run_side_says_in_one_line_that_its_port_is_taken(tmp_path):
    with busy_port() as port:  # e.g. another run on that instance waits there
        code, error = _runner(tmp_path, {**DEBUG, "debug_port": port})
    assert code == 1
    assert error["type"] == "DebuggerUnavailable"
    assert error["message"].startswith(f"--debug-port {port} is in use on ")
    assert "--debug-port 0 for a free one" in error["message"]


def test_the_run_side_without_debugpy_names_the_package_to_install(tmp_path):
    shadow = tmp_path / "no-debugpy"
    (shadow / "debugpy").mkdir(parents=True)  # a machine without debugpy: its import fails
    (shadow / "debugpy" / "__init__.py").write_text(
        "raise ImportError('No module named debugpy')\n"
    )
    path = os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    code, error = _runner(tmp_path, {**DEBUG, "debug_port": 0}, {"PYTHONPATH": path})
    assert code == 1
    assert error["message"] == (
        "--debug needs debugpy where the run runs: pip install debugpy "
        "(or runctl-jupyter[debug]), then run it again"
    )


def test_the_global_debug_before_the_command_and_the_run_option_after_it_stay_apart():
    before = parse(["--debug", "train", "x.py"])
    assert before.debug is True and before.debugger is False
    after = parse(["train", "x.py", "--debug"])
    assert after.debug is False and after.debugger is True
    both = parse(["--debug", "train", "x.py", "--debug", "--debug-port", "0"])
    assert both.debug is True
    options = to_call(both)[1]["options"]
    assert {k: options[k] for k in ("debugger", "debug_rank", "debug_port", "debug_timeout")} == {
        "debugger": True,
        "debug_rank": 0,
        "debug_port": 0,
        "debug_timeout": 300.0,
    }
    assert "debugger" not in to_call(parse(["sweep", "--grid", "a=1,2"]))[1]["options"]


def test_completion_offers_each_debug_where_it_belongs(tmp_path):
    assert complete("--de", tmp_path)[1] == ["--debug"]
    assert complete("--debug train --debug-", tmp_path)[1] == [
        "--debug-rank",
        "--debug-port",
        "--debug-timeout",
    ]
    assert "--debug" in complete("train x.py --d", tmp_path)[1]
    assert complete("sweep --deb", tmp_path)[1] == []  # a sweep refuses them


def test_stop_reaches_a_run_that_waits_for_its_debugger(session, home):
    run = session.train(
        code=BODY,
        params={"n": 3},
        options={"debugger": True, "debug_rank": 0, "debug_port": 0, "debug_timeout": 120.0},
        detach=True,
    )
    wait_for(lambda: _waiting(home), timeout=60)
    session.stop(run.id)
    wait_for(lambda: session.run(run.id).status == "stopped", timeout=30)
    assert "total" not in (home / "runs" / run.id / "stdout.log").read_text()


def test_in_a_distributed_run_only_the_chosen_rank_waits(session, home):
    run = session.train(
        code="print('rank', runctl.rank, 'done')\n",
        options={
            "nproc_per_node": 2,
            "debugger": True,
            "debug_rank": 1,
            "debug_port": 0,
            "debug_timeout": 2.0,
        },
    )
    assert run.status == "succeeded"
    events = [e for e in session.store.events(run.id) if e["type"] == "debugger"]
    assert [(e["state"], e["rank"]) for e in events] == [("waiting", 1), ("timeout", 1)]
    output = (home / "runs" / run.id / "stdout.log").read_text()
    assert "rank 0 done" in output and "rank 1 done" in output


def test_attach_after_detach_says_again_where_to_attach(session, home):
    import io

    from runctl_jupyter.runs.debugging import with_debugger
    from runctl_jupyter.runs.liveview import TextView

    run = session.train(
        code=BODY,
        params={"n": 2},
        options={"debugger": True, "debug_rank": 0, "debug_port": 0, "debug_timeout": 60.0},
        detach=True,
    )
    try:
        waiting = wait_for(lambda: _waiting(home), timeout=60)
        session.store.refresh(run.id)  # what `attach` does first: the event is no longer new
        err = io.StringIO()
        view = with_debugger(session, run, TextView(run, out=io.StringIO(), err=err))
        view.update(session.store.get(run.id), session.store.refresh(run.id))
        shown = err.getvalue()
        assert f"waits 60 s for a debugger on 127.0.0.1:{waiting['port']}" in shown
        assert f'"port": {waiting["port"]}' in shown
        view.update(session.store.get(run.id), [])  # said once, not at every update
        assert err.getvalue() == shown
    finally:
        session.stop(run.id)
