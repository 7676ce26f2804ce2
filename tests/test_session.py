"""The Python API end to end on the local backend: real agents, real processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from agent_helpers import wait_for

from runctl_jupyter.errors import AmbiguousRun, RunctlError, RunFailed, RunNotFound

LOOP = """
import time
ckpt = runctl.load_checkpoint()
start = ckpt + 1 if ckpt is not None else 0
for step in range(start, steps):
    runctl.log(step=step, value=step * 2)
    runctl.save_checkpoint(step)
    if runctl.should_stop:
        break
    time.sleep(pause)
"""


def test_a_cell_runs_with_typed_params_as_globals_and_is_recorded(session):
    code = (
        "runctl.log(step=0, lr=lr, n=len(hidden))\nprint(type(lr).__name__, hidden, name, flag)\n"
    )
    params = {"lr": 1e-3, "hidden": [64, 32], "name": "abc", "flag": True}
    run = session.train(code=code, params=params, experiment="exp", name="first")
    row = run.row
    assert row["status"] == "succeeded" and row["experiment"] == "exp" and row["name"] == "first"
    assert row["params"] == params
    assert run.metrics == {"lr": 1e-3, "n": 2}
    assert "float [64, 32] abc True" in session.logs(run.id)
    assert (session.store.run_dir(run.id) / "code.py").read_text() == code


def test_a_failed_run_raises_with_the_remote_traceback(session):
    with pytest.raises(RunFailed) as info:
        session.train(code="def boom():\n    raise ValueError('bad data')\nboom()\n")
    err = info.value
    assert "ValueError: bad data" in str(err)
    rendered = "\n".join(err._render_traceback_())
    assert "raise ValueError('bad data')" in rendered and "in boom" in rendered
    assert session.store.get(err.run_id)["status"] == "failed"


def test_a_syntax_error_is_refused_before_any_run_starts(session):
    with pytest.raises(RunctlError, match="line 2"):
        session.train(code="x = 1\nif x\n    pass\n")
    assert session.store.list_runs() == []


def test_a_script_runs_in_its_folder_with_args_and_params(session, tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 41\n")
    (folder / "data.txt").write_text("hello")
    (folder / "train.py").write_text(
        textwrap.dedent("""
        import json, os, sys
        from helper import VALUE
        from runctl_jupyter.runtime import runctl
        params = json.load(open(os.environ["RUNCTL_PARAMS_FILE"]))
        runctl.log(step=0, answer=VALUE + params["k"])
        print(open("data.txt").read(), sys.argv[1:], runctl.params)
    """)
    )
    run = session.train(script=str(folder / "train.py"), args=["--fast", "x y"], params={"k": 1})
    assert run.metrics == {"answer": 42}
    assert "hello ['--fast', 'x y'] {'k': 1}" in session.logs(run.id)


def test_a_script_finds_runctl_as_a_global_or_by_import(session, tmp_path):
    script = tmp_path / "plain.py"
    script.write_text(
        "from runctl_jupyter import runctl as imported\n"
        "assert imported is runctl\n"
        "runctl.log(step=0, loss=0.5)\n"
    )
    run = session.train(script=str(script))
    assert run.status == "succeeded" and run.metrics == {"loss": 0.5}


def test_a_missing_script_is_a_clear_error(session):
    with pytest.raises(RunctlError, match="no script 'nope.py'"):
        session.train(script="nope.py")


def test_a_hyperparameter_is_never_executed(session, tmp_path):
    marker = tmp_path / "pwned"
    value = f"$(touch {marker})"
    run = session.train(code="print(x)", params={"x": value})
    assert not marker.exists()
    assert value in session.logs(run.id)


def test_detach_returns_at_once_and_attach_follows_to_the_end(session):
    run = session.train(code=LOOP, params={"steps": 10, "pause": 0.1}, detach=True)
    assert run.row["status"] in ("queued", "starting", "running")
    attached = session.attach(run.id)
    assert attached.row["status"] == "succeeded"
    assert [s for s, _ in attached.history()["value"]] == list(range(10))


def test_stop_then_resume_continues_from_the_checkpoint_under_the_same_id(session):
    run = session.train(code=LOOP, params={"steps": 400, "pause": 0.02}, detach=True)
    wait_for(lambda: session.store.refresh(run.id) is not None and len(run.checkpoints()) >= 3)
    stopped = session.stop(run.id)
    assert stopped.row["status"] == "stopped" and stopped.row["reason"] == "user"
    last = run.checkpoints()[-1]["step"]
    resumed = session.resume(run.id, detach=True)
    assert resumed.id == run.id
    wait_for(
        lambda: (
            session.store.refresh(run.id) is not None and last + 1 in dict(run.history()["value"])
        )
    )
    session.stop(run.id, force=True)
    row = run.row
    assert row["attempt"] == 2
    steps = [s for s, _ in run.history()["value"]]
    assert steps == sorted(set(steps)) and last + 1 in steps  # continued, no duplicates
    assert "=== attempt 2 ===" in session.logs(run.id)


def test_resume_refuses_a_run_that_succeeded(session):
    run = session.train(code="print(1)")
    with pytest.raises(RunctlError, match="only a stopped, failed or lost run"):
        session.resume(run.id)


def test_run_references_by_prefix_and_name(session):
    a = session.train(code="print(1)", name="same")
    b = session.train(code="print(2)", name="same")
    assert session.run("same").id == b.id
    assert session.run(a.id[:6]).id == a.id
    with pytest.raises(RunNotFound, match="nothere"):
        session.run("nothere")
    with pytest.raises((AmbiguousRun, RunNotFound)):
        session.run("")


def test_a_killed_agent_makes_the_run_lost_not_running_forever(session):
    run = session.train(code="import time\ntime.sleep(60)", detach=True)
    info = wait_for(
        lambda: (
            (session.store.run_dir(run.id) / "agent.json").exists()
            and json.loads((session.store.run_dir(run.id) / "agent.json").read_text())
        )
    )
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(
        lambda: session.store.refresh() is not None and run.row["status"] == "lost", timeout=10
    )


def test_two_runs_at_once_lose_nothing(session):
    runs = [
        session.train(code=LOOP, params={"steps": 300, "pause": 0}, detach=True) for _ in range(2)
    ]
    for run in runs:
        session.attach(run.id)
    for run in runs:
        assert run.row["status"] == "succeeded"
        assert len(run.history()["value"]) == 300


def test_rerun_starts_a_fresh_run_with_overrides(session):
    first = session.train(code="runctl.log(step=0, v=a * b)", params={"a": 2, "b": 3})
    second = session.rerun(first.id, params={"b": 5})
    assert second.id != first.id
    assert second.params == {"a": 2, "b": 5} and second.metrics == {"v": 10}


def test_a_record_alone_reruns_elsewhere_and_reproduces_the_metrics(session, tmp_path, monkeypatch):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    code = "import random\nrandom.seed(seed)\nrunctl.log(step=0, draw=random.random() * scale)\n"
    first = session.train(code=code, params={"seed": 7}, user_ns={"scale": 10.0})
    copied = tmp_path / "elsewhere" / "record.ipynb"
    copied.parent.mkdir()
    shutil.copy(first.record_path, copied)
    other = Session(config=Runctl(home=str(tmp_path / "empty-home"), refresh_interval=0.05))
    again = other.rerun(str(copied))
    assert again.metrics == first.metrics and again.params == {"seed": 7}


def test_the_run_finishes_and_is_recorded_when_the_kernel_dies(session, home):
    """A 'kernel' (a real Python process blocking in train) is SIGKILLed mid-run."""
    driver = textwrap.dedent(f"""
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session
        s = Session(config=Runctl(home={str(home)!r}))
        s.train(code="import time\\nfor i in range(15):\\n    runctl.log(step=i, x=i)\\n    time.sleep(0.1)", name="orphan")
    """)
    kernel = subprocess.Popen([sys.executable, "-c", driver])
    wait_for(
        lambda: any(
            r["name"] == "orphan" and r["status"] == "running"
            for r in (session.store.refresh(), session.store.list_runs())[1]
        )
    )
    kernel.send_signal(signal.SIGKILL)
    kernel.wait()
    run = session.run("orphan")
    wait_for(
        lambda: session.store.refresh() is not None and run.row["status"] == "succeeded", timeout=20
    )
    assert len(run.history()["x"]) == 15
    assert os.path.exists(run.record_path)


def test_max_hours_stops_a_run(session):
    run = session.train(code="import time\nwhile True:\n    time.sleep(0.05)", max_hours=1 / 3600)
    assert run.row["status"] == "stopped" and run.row["reason"] == "max-hours"


def test_execute_runs_a_whole_notebook_with_parameters(session, tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    params_cell = nbformat.v4.new_code_cell("n = 1")
    params_cell.metadata["tags"] = ["parameters"]
    nb.cells = [params_cell, nbformat.v4.new_code_cell("print('n is', n * 10)")]
    path = tmp_path / "job.ipynb"
    nbformat.write(nb, str(path))
    run = session.execute(str(path), params={"n": 4})
    assert run.row["status"] == "succeeded" and run.row["kind"] == "notebook"
    executed = nbformat.read(str(session.store.run_dir(run.id) / "output.ipynb"), as_version=4)
    outputs = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "n is 40" in outputs


def test_stop_of_a_finished_run_says_there_is_nothing_to_stop(session):
    run = session.train(code="print(1)")
    with pytest.raises(RunctlError, match="nothing to stop"):
        session.stop(run.id)


def test_options_that_would_be_ignored_are_refused(session):
    with pytest.raises(RunctlError, match="--instance-type is for cloud runs"):
        session.train(code="print(1)", options={"instance_type": "g5.xlarge"})
    assert session.store.list_runs() == []


def test_a_grace_period_can_be_set_per_run(session):
    run = session.train(code="print(1)", options={"grace_seconds": 1.5})
    spec = json.loads((session.store.run_dir(run.id) / "spec.json").read_text())
    assert spec["grace_seconds"] == 1.5


def _interrupt_in(seconds: float):
    import threading

    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    return timer


def test_interrupt_detaches_from_a_blocking_run_which_goes_on(session, capsys):
    timer = _interrupt_in(1.0)
    try:
        run = session.train(code="import time\nfor i in range(30):\n    time.sleep(0.1)\n")
    finally:
        timer.cancel()
    assert "detached from run" in capsys.readouterr().err
    assert run.refresh().status == "running"
    assert session.attach(run.id).status == "succeeded"


def test_interrupt_stops_the_run_when_configured_to(session):
    session.config.on_interrupt = "stop"
    timer = _interrupt_in(1.0)
    try:
        run = session.train(code="import time\nwhile True:\n    time.sleep(0.05)\n", detach=True)
        session.wait(run)
    finally:
        timer.cancel()
    assert run.row["status"] == "stopped" and run.row["reason"] == "user"


def test_early_stopping_stops_a_run_that_stopped_improving(session):
    code = (
        "import time\nfor step in range(200):\n    runctl.log(step=step, val_loss=max(1.0 - step / 10, 0.5))\n"
        "    time.sleep(0.02)\n    if runctl.should_stop:\n        break\n"
    )
    early = {"metric": "val_loss", "mode": "min", "patience": 3, "min_delta": 0.0, "warmup": 0}
    run = session.train(code=code, options={"early_stop": early})
    assert run.row["status"] == "stopped" and run.row["reason"] == "early-stop"
    assert run.row["last_step"] < 199


def test_attach_from_the_runs_table_follows_a_run_in_the_background(session):
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter.runs.liveview import follow_in_background

    InteractiveShell.instance()  # a shell to display into; the kernel stays free meanwhile
    run = session.train(
        code="import time\nfor i in range(8):\n    runctl.log(step=i, x=i)\n    time.sleep(0.1)",
        detach=True,
    )
    thread = follow_in_background(session, run.id, interval=0.05)
    assert thread.is_alive()  # returned at once: the run is still going
    thread.join(timeout=30)
    assert not thread.is_alive() and run.row["status"] == "succeeded"


def test_the_runs_table_offers_stop_for_active_runs(session):
    run = session.train(code="import time\ntime.sleep(30)", detach=True)
    table = session.runs()
    assert run.id in str(table)
    from runctl_jupyter.display.runs_table import RunsTable

    actions = RunsTable(table.rows, on_stop=lambda rid: session.backend_stop(rid), widgets=True)
    actions._build_actions([r for r in table.rows if r["id"] == run.id])
    actions.buttons[run.id]["stop"].click()
    wait_for(
        lambda: session.store.refresh(run.id) is not None and run.row["status"] == "stopped",
        timeout=15,
    )


def test_following_a_fast_run_in_the_background_barely_delays_other_work(session):
    """Issue 3: a run logging ~20,000 steps/s, followed live from a thread (runs table's
    Attach), does not hold up the kernel's own work: 95% of 10 ms sleeps overshoot by
    under 0.2 s (measured alone, the worst is ~0.05 s). A percentile, because the other
    test worker on the same 2 cores causes rare scheduling spikes that are not ours; a
    follower holding the GIL through its backlog delays nearly every sleep."""
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter.runs.liveview import follow_in_background

    InteractiveShell.instance()
    code = (
        "import time\nt = time.time()\ni = 0\nwhile time.time() - t < 4:\n"
        "    for _ in range(200):\n        runctl.log(step=i, a=1.0, b=2.0, c=3.0)\n        i += 1\n"
        "    time.sleep(0.01)\n"
    )
    run = session.train(code=code, detach=True)
    thread = follow_in_background(session, run.id)
    delays = []
    while thread.is_alive():
        start = time.perf_counter()
        time.sleep(0.01)
        delays.append(time.perf_counter() - start - 0.01)
    assert run.row["status"] == "succeeded" and len(run.history()["a"]) > 20000
    delays.sort()
    p95 = delays[int(len(delays) * 0.95)]
    assert p95 < 0.2, f"95% of waits under {p95:.3f} s (worst {delays[-1]:.3f} s)"


def test_the_runs_table_leaves_no_widget_repr_as_text(session):
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    InteractiveShell.instance()
    run = session.train(code="import time\ntime.sleep(30)", detach=True)
    try:
        with capture_output() as shown:
            session.runs()._ipython_display_()
        texts = "".join(o.data.get("text/plain", "") for o in shown.outputs)
        assert run.id in texts and "Output()" not in texts
    finally:
        session.stop(run.id, force=True)


def test_the_code_sees_the_folder_that_holds_the_package_first_on_its_path(session):
    """The runner's PYTHONPATH starts with the folder holding runctl_jupyter, never a
    folder inside it (where `events.py` or `params.py` would shadow a user's modules)."""
    from pathlib import Path

    import runctl_jupyter

    code = "import os\nprint('path0', os.environ['PYTHONPATH'].split(os.pathsep)[0])\n"
    run = session.train(code=code)
    out = (session.store.run_dir(run.id) / "stdout.log").read_text()
    first = out.split("path0 ", 1)[1].splitlines()[0]
    assert Path(first) == Path(runctl_jupyter.__file__).resolve().parents[1]
