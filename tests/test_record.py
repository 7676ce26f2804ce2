"""record.py: run folders built by hand with the real EventWriter, checked with nbformat,
executed with nbclient on a real kernel."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from runctl_jupyter.errors import RunctlError
from runctl_jupyter.events import EventWriter
from runctl_jupyter.record import (
    MAX_POINTS,
    PLOTLY_MIME,
    build_record,
    downsample,
    load_shipped_objects,
    read_record,
    write_record,
)
from runctl_jupyter.runs.capture import ship_objects

REPO = Path(__file__).resolve().parents[1]
T0 = 1_764_380_000.0

CODE = """\
import sys
for epoch in range(epochs):
    print(f"epoch {epoch} loss={1.0 / (epoch + 1):.3f}")
print("careful", file=sys.stderr)
"""


def make_run(
    root: Path,
    *,
    run_id: str = "3f9a1c2b7d",
    name: str = "digits-mlp-3",
    params: dict | None = None,
    code: str = CODE,
    objects: bytes | None = None,
    kind: str = "cell",
    backend: str = "local",
) -> Path:
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    params = {"lr": 0.05, "epochs": 3, "hidden": [64, 32]} if params is None else params
    spec = {
        "format": 1,
        "run_id": run_id,
        "name": name,
        "experiment": "digits-mlp",
        "project": "default",
        "owner": "ann",
        "tags": ["baseline"],
        "kind": kind,
        "entry": "input.ipynb" if kind == "notebook" else "code.py",
        "params": params,
        "objects": [],
        "workdir": str(root),
        "backend": backend,
        "target": {},
        "created": T0,
        "rerun_of": None,
    }
    if kind != "notebook":
        (run_dir / "code.py").write_text(code)
    if objects is not None:
        (run_dir / "objects.pkl").write_bytes(objects)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    (run_dir / "params.json").write_text(json.dumps(params))
    env = {
        "python": {"version": "3.11.7", "implementation": "CPython", "executable": "/x/python"},
        "os": {"platform": "Linux-6-x86_64", "system": "Linux"},
        "gpus": [],
        "git": {"commit": "29d8670d883f", "branch": "main", "dirty": True, "changed": ["a.py"]},
        "packages": {"numpy": "2.4.6", "scikit-learn": "1.9.1", "zzz-other": "1"},
        "seeds": {},
        "host": {"hostname": "box", "python": {"version": "3.11.7"}, "os": {}, "gpus": []},
    }
    (run_dir / "env.json").write_text(json.dumps(env))
    return run_dir


def write_attempt(
    run_dir: Path,
    attempt: int = 1,
    *,
    steps: int = 3,
    metrics: dict | None = None,
    stdout: list[str] | None = None,
    stderr: list[str] | None = None,
    exit_fields: dict | None = None,
    t0: float = T0,
) -> None:
    """One attempt's events as the agent writes them (optionally without its exit event)."""
    w = EventWriter(run_dir, attempt)
    w.write("status", t=t0, status="starting", format=1)
    w.write("status", t=t0 + 0.1, status="running")
    for step in range(steps):
        values = {"loss": 1.0 / (step + 1), "acc": step / max(1, steps)}
        if metrics:
            values = {k: f(step) for k, f in metrics.items()}
        w.write("metric", t=t0 + 1 + step, step=step, values=values, total=steps)
    w.write("checkpoint", t=t0 + 5, step=steps - 1, path="checkpoints/step-00000002.pkl", bytes=812)
    if stdout is None:
        stdout = [f"epoch {e} loss={1.0 / (e + 1):.3f}" for e in range(steps)]
    if stdout:
        w.write("log", t=t0 + 6, stream="stdout", text="\n".join(stdout) + "\n")
    if stderr is None:
        stderr = ["careful"]
    if stderr:
        w.write("log", t=t0 + 6.5, stream="stderr", text="\n".join(stderr) + "\n")
    if exit_fields is not None:
        w.write("exit", t=t0 + 7, **exit_fields)
    w.close()


OK = {"status": "succeeded", "reason": None, "exit_code": 0, "error": None, "duration": 7.25}


def load(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    return nb


def by_id(nb, cell_id: str):
    return next(c for c in nb.cells if c.get("id") == cell_id)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    run_dir = make_run(tmp_path / "runs")
    write_attempt(run_dir)
    return run_dir


# ------------------------------------------------------------------ structure


def test_record_is_valid_nbformat_45_with_cells_in_order(run_dir):
    path = write_record(run_dir, OK)
    assert path == run_dir / "record.ipynb"
    nb = load(path)
    assert (nb.nbformat, nb.nbformat_minor) == (4, 5)
    assert [c.cell_type for c in nb.cells] == [
        "markdown",
        "code",
        "code",
        "code",
        "code",
        "markdown",
    ]
    assert [c.id for c in nb.cells] == [
        "summary",
        "parameters",
        "setup",
        "code",
        "metrics",
        "environment",
    ]
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.metadata.runctl["format"] == 1
    assert nb.metadata.runctl["spec"]["run_id"] == "3f9a1c2b7d"
    assert not list(run_dir.glob("*.tmp"))


def test_parameters_cell_is_tagged_and_sets_the_params(run_dir):
    nb = load(write_record(run_dir, OK))
    cell = by_id(nb, "parameters")
    assert cell.metadata.tags == ["parameters"]
    assert "lr = 0.05" in cell.source.splitlines()
    ns: dict = {}
    exec(cell.source, ns)
    assert {k: ns[k] for k in ("lr", "epochs", "hidden")} == {
        "lr": 0.05,
        "epochs": 3,
        "hidden": [64, 32],
    }


def test_summary_header(run_dir):
    nb = load(write_record(run_dir, OK))
    text = by_id(nb, "summary").source
    assert text.startswith("# Run digits-mlp-3 · 3f9a1c2b7d")
    for expected in (
        "| Status | succeeded |",
        "| Duration | 7.2 s |",
        "| Experiment | digits-mlp |",
        "| Cost | \\$0.00 |",  # escaped: a $ pair would render as LaTeX
        "| Attempts | 1 |",
        "| Started | 2025-11-29 01:33:20 UTC |",
        "| loss | 0.3333 |",  # 4 significant digits
        "| acc | 0.6667 |",
    ):
        assert expected in text, expected
    run = nb.metadata.runctl["run"]
    assert run["status"] == "succeeded" and run["duration"] == 7.25
    assert run["final_metrics"] == {"loss": 1 / 3, "acc": 2 / 3}
    assert run["checkpoints"][0]["path"] == "checkpoints/step-00000002.pkl"


def test_code_cell_carries_stdout_and_stderr_separately(run_dir):
    nb = load(write_record(run_dir, OK))
    cell = by_id(nb, "code")
    assert cell.source == CODE
    streams = {o.name: o.text for o in cell.outputs if o.output_type == "stream"}
    assert streams == {
        "stdout": "epoch 0 loss=1.000\nepoch 1 loss=0.500\nepoch 2 loss=0.333\n",
        "stderr": "careful\n",
    }


def test_failed_run_has_an_error_output(tmp_path):
    traceback = 'Traceback (most recent call last):\n  File "code.py", line 3\nZeroDivisionError: division by zero\n'
    run_dir = make_run(tmp_path)
    # The runner prints the traceback on stderr too; the record shows it once.
    write_attempt(run_dir, steps=2, stderr=["careful", *traceback.splitlines()])
    error = {"type": "ZeroDivisionError", "message": "division by zero", "traceback": traceback}
    final = {
        "status": "failed",
        "reason": "exception",
        "exit_code": 1,
        "error": error,
        "duration": 2,
    }
    nb = load(write_record(run_dir, final))
    err = [o for o in by_id(nb, "code").outputs if o.output_type == "error"]
    assert len(err) == 1
    assert (err[0].ename, err[0].evalue) == ("ZeroDivisionError", "division by zero")
    assert err[0].traceback[-1] == "ZeroDivisionError: division by zero"
    stderr = [o.text for o in by_id(nb, "code").outputs if o.get("name") == "stderr"]
    assert stderr == ["careful\n"]
    assert "| Status | failed (exception) |" in by_id(nb, "summary").source


def test_without_final_the_last_exit_event_is_used(tmp_path):
    run_dir = make_run(tmp_path)
    stopped = {
        "status": "stopped",
        "reason": "user",
        "exit_code": -15,
        "error": None,
        "duration": 4,
    }
    write_attempt(run_dir, exit_fields=stopped)
    nb = build_record(run_dir)
    assert nb["metadata"]["runctl"]["run"]["status"] == "stopped"
    assert "| Status | stopped (user) |" in nb["cells"][0]["source"]


def test_resumed_run_sums_durations_and_heads_each_attempt(tmp_path):
    run_dir = make_run(tmp_path)
    first = {"status": "stopped", "reason": "user", "exit_code": -15, "error": None, "duration": 60}
    write_attempt(run_dir, 1, exit_fields=first, stdout=["first"], stderr=[])
    write_attempt(run_dir, 2, stdout=["second"], stderr=[], t0=T0 + 100)
    nb = load(write_record(run_dir, {**OK, "duration": 30}))
    run = nb.metadata.runctl["run"]
    assert (run["attempts"], run["duration"]) == (2, 90)
    out = by_id(nb, "code").outputs[0].text
    assert out == "=== attempt 1 ===\nfirst\n=== attempt 2 ===\nsecond\n"


def test_output_falls_back_to_stdout_log(tmp_path):
    run_dir = make_run(tmp_path)
    write_attempt(run_dir, stdout=[], stderr=[])
    (run_dir / "stdout.log").write_text("from the log\n")
    nb = load(write_record(run_dir, OK))
    assert by_id(nb, "code").outputs[0].text == "from the log\n"


def test_environment_section(run_dir):
    nb = load(write_record(run_dir, OK))
    text = by_id(nb, "environment").source
    assert "| Python | 3.11.7 (CPython) |" in text
    assert "29d8670d883f on main, dirty (1 changed files)" in text
    assert "numpy 2.4.6, scikit-learn 1.9.1 (3 installed in all)" in text
    assert "| GPU | none |" in text
    assert "box" in text


def test_non_finite_metrics_keep_the_notebook_valid_json(tmp_path):
    run_dir = make_run(tmp_path)
    write_attempt(run_dir, metrics={"loss": lambda s: math.nan if s == 2 else 1.0 / (s + 1)})
    path = write_record(run_dir, OK)
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in record"))
    nb = load(path)
    assert nb.metadata.runctl["run"]["final_metrics"] == {"loss": "nan"}
    assert by_id(nb, "metrics").outputs[0].data[PLOTLY_MIME]["data"][0]["y"] == [1.0, 0.5]


def test_a_run_that_never_started_still_gets_a_valid_record(tmp_path):
    run_dir = tmp_path / "bare"
    run_dir.mkdir()
    (run_dir / "spec.json").write_text(json.dumps({"run_id": "bare1", "name": "b", "kind": "cell"}))
    error = {"type": "OSError", "message": "no python", "traceback": ""}
    final = {
        "status": "failed",
        "reason": "agent",
        "exit_code": None,
        "error": error,
        "duration": 0,
    }
    nb = load(write_record(run_dir, final))
    assert "| Status | failed (agent) |" in nb.cells[0].source
    assert "not found" in by_id(nb, "code").source
    assert by_id(nb, "metrics").outputs[0].data["text/plain"] == "no metrics were logged"


def test_script_run_shows_the_script_and_its_args(tmp_path):
    run_dir = make_run(tmp_path, kind="script", code="import sys\nprint(sys.argv)\n")
    spec = json.loads((run_dir / "spec.json").read_text())
    spec.update(script_path="/home/ann/train.py", args=["--fast"])
    (run_dir / "spec.json").write_text(json.dumps(spec))
    write_attempt(run_dir)
    nb = load(write_record(run_dir, OK))
    assert "| Script | /home/ann/train.py --fast |" in nb.cells[0].source
    assert read_record(run_dir / "record.ipynb")["code"] == "import sys\nprint(sys.argv)\n"


# ------------------------------------------------------------------ figure and size


def test_figure_mime_bundle_and_separate_scales(run_dir):
    nb = load(write_record(run_dir, OK))
    (output,) = by_id(nb, "metrics").outputs
    assert output.output_type == "display_data"
    assert {PLOTLY_MIME, "text/html", "text/plain"} <= set(output.data)
    figure = output.data[PLOTLY_MIME]
    traces = {t["name"]: t for t in figure["data"]}
    assert traces["loss"]["x"] == [0, 1, 2]
    assert traces["loss"]["yaxis"] == traces["acc"]["yaxis"] == "y"  # same scale: one subplot
    assert "<table>" in output.data["text/html"]


def test_long_run_record_is_small_and_traces_downsampled(tmp_path):
    steps = 100_000
    run_dir = make_run(tmp_path)
    write_attempt(
        run_dir,
        steps=steps,
        metrics={
            "loss": lambda s: 50.0 if s == 54_321 else 2.0 / (1 + s / 1000),
            "acc": lambda s: s / steps,
            "lr": lambda s: 1e-4 * (1 - s / steps),
        },
        stdout=[
            f"step {s} loss={2.0 / (1 + s / 1000):.5f} acc={s / steps:.4f}" for s in range(steps)
        ],
        stderr=[],
    )
    path = write_record(run_dir, OK)
    size = path.stat().st_size
    assert size < 1_000_000, size
    nb = load(path)
    figure = by_id(nb, "metrics").outputs[0].data[PLOTLY_MIME]
    traces = {t["name"]: t for t in figure["data"]}
    assert all(len(t["x"]) <= MAX_POINTS for t in traces.values())
    assert max(traces["loss"]["y"]) == 50.0  # the spike survives
    assert traces["loss"]["x"][0] == 0 and traces["loss"]["x"][-1] == steps - 1
    assert traces["lr"]["yaxis"] != traces["loss"]["yaxis"]  # 1e-4 vs ~1: own subplot
    (output,) = by_id(nb, "code").outputs
    assert output.text.startswith("[runctl: ")
    assert "earlier output lines are not in this record" in output.text.splitlines()[0]
    assert output.text.endswith(f"step {steps - 1} loss=0.01980 acc=1.0000\n")
    assert len(output.text.splitlines()) <= 10_001


def test_downsample_keeps_extremes_and_bounds():
    xs = list(range(10_000))
    ys = [float(x % 97) for x in xs]
    ys[1234], ys[8765] = -500.0, 900.0
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 200 and dx == sorted(dx)
    assert min(dy) == -500.0 and max(dy) == 900.0
    assert downsample([1, 2], [3.0, 4.0]) == ([1, 2], [3.0, 4.0])


# ------------------------------------------------------------------ escaping


def test_run_text_is_escaped_in_markdown_and_html(tmp_path):
    evil = "<script>alert(1)</script>"
    run_dir = make_run(tmp_path, name=evil, params={"note": evil, "cmd": "$(touch /tmp/x) $y$"})
    write_attempt(run_dir, metrics={evil: lambda s: float(s)}, stdout=[evil], stderr=[])
    nb = load(write_record(run_dir, OK))
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    metrics = by_id(nb, "metrics").outputs[0].data
    for text in (markdown, metrics["text/html"], json.dumps(metrics[PLOTLY_MIME])):
        assert "<script" not in text
        assert "&lt;script&gt;" in text
    assert "\\$(touch /tmp/x) \\$y\\$" in markdown  # no LaTeX from run text
    # The output stream is text (rendered as text), kept as printed.
    assert by_id(nb, "code").outputs[0].text == evil + "\n"
    # The parameters cell is code: the value is a Python string literal.
    ns: dict = {}
    exec(by_id(nb, "parameters").source, ns)
    assert ns["note"] == evil


# ------------------------------------------------------------------ read_record


def test_read_record_round_trips_from_a_copy(tmp_path, monkeypatch):
    objects = ship_objects({"scale": 3, "double": lambda v: 2 * v}, tmp_path)
    run_dir = make_run(tmp_path / "runs", objects=objects)
    write_attempt(run_dir)
    path = write_record(run_dir, OK)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    copy = shutil.copy(path, elsewhere / "my-run.ipynb")
    shutil.rmtree(run_dir)
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "empty-home"))
    got = read_record(copy)
    assert got["spec"]["run_id"] == "3f9a1c2b7d" and got["spec"]["params"]["lr"] == 0.05
    assert got["code"] == CODE
    assert got["params"] == {"lr": 0.05, "epochs": 3, "hidden": [64, 32]}
    assert got["objects"] == objects


def test_read_record_without_objects(run_dir):
    assert read_record(write_record(run_dir, OK))["objects"] is None


def test_load_shipped_objects_finds_the_record_or_says_how(tmp_path, monkeypatch):
    objects = ship_objects({"scale": 3}, tmp_path)
    run_dir = make_run(tmp_path / "runs", objects=objects)
    write_attempt(run_dir)
    path = write_record(run_dir, OK)
    assert load_shipped_objects("3f9a1c2b7d", path) == {"scale": 3}
    monkeypatch.chdir(run_dir)
    assert load_shipped_objects("3f9a1c2b7d") == {"scale": 3}
    monkeypatch.chdir(tmp_path)
    with pytest.raises(
        RunctlError, match=r"load_shipped_objects\('3f9a1c2b7d', 'path/to/record.ipynb'\)"
    ):
        load_shipped_objects("3f9a1c2b7d")
    # another notebook in the working folder, even of that run, is never searched
    shutil.copy(path, tmp_path / "planted.ipynb")
    with pytest.raises(RunctlError, match="cannot find the record of run 3f9a1c2b7d"):
        load_shipped_objects("3f9a1c2b7d")
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "planted.ipynb"))  # the open notebook
    assert load_shipped_objects("3f9a1c2b7d") == {"scale": 3}


def test_read_record_refuses_a_plain_notebook(tmp_path):
    path = tmp_path / "plain.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    with pytest.raises(RunctlError, match="not a runctl record"):
        read_record(path)
    with pytest.raises(RunctlError, match="no notebook at"):
        read_record(tmp_path / "missing.ipynb")


# ------------------------------------------------------------------ notebook runs


def test_notebook_run_record_is_the_executed_notebook_with_a_summary(tmp_path):
    run_dir = make_run(tmp_path, kind="notebook", params={"alpha": 2})
    source = nbformat.v4.new_notebook()
    source.cells = [
        nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("print(alpha * 2)"),
    ]
    nbformat.write(source, run_dir / "input.ipynb")
    executed = nbformat.v4.new_notebook()
    executed.cells = [
        nbformat.v4.new_code_cell("alpha = 1", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("alpha = 2", metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell(
            "print(alpha * 2)", outputs=[nbformat.v4.new_output("stream", text="4\n")]
        ),
    ]
    raw = json.loads(nbformat.writes(executed))
    raw["nbformat_minor"] = 4  # an older writer: no cell ids
    for cell in raw["cells"]:
        cell.pop("id", None)
    (run_dir / "output.ipynb").write_text(json.dumps(raw))
    write_attempt(run_dir, stdout=["4"], stderr=[])
    nb = load(write_record(run_dir, OK))
    assert nb.nbformat_minor >= 5
    assert nb.cells[0].cell_type == "markdown" and "| Status | succeeded |" in nb.cells[0].source
    assert nb.cells[3].outputs[0].text == "4\n"
    assert nb.metadata.runctl["spec"]["kind"] == "notebook"
    rerun = json.loads(read_record(run_dir / "record.ipynb")["code"])
    assert ["".join(c["source"]) for c in rerun["cells"]] == ["alpha = 1", "print(alpha * 2)"]
    assert rerun["cells"][1]["outputs"] == [] and "runctl" not in rerun["metadata"]


# ------------------------------------------------------------------ stdlib only, and a real kernel


def test_record_module_is_stdlib_only():
    script = (
        "import sys, json\n"
        "before = set(sys.modules)\n"
        "import runctl_jupyter.record\n"
        "mods = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(mods - set(sys.stdlib_module_names) - {'runctl_jupyter'})))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert json.loads(out.stdout) == []


def test_executing_the_record_reproduces_the_output(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")  # installed in this project: never skipped
    ns = {"__name__": "__main__"}
    exec("OFFSET = 10\ndef shift(v):\n    return v + OFFSET\n", ns)
    objects = ship_objects({"shift": ns["shift"]}, tmp_path)
    code = "for epoch in range(epochs):\n    print('value', shift(epoch) * lr)\n"
    run_dir = make_run(tmp_path / "runs", code=code, params={"epochs": 2, "lr": 2}, objects=objects)
    write_attempt(run_dir, stdout=["value 20", "value 22"], stderr=[])
    path = write_record(run_dir, OK)
    elsewhere = tmp_path / "copied"
    elsewhere.mkdir()
    copy = Path(shutil.copy(path, elsewhere / "copy.ipynb"))
    shutil.rmtree(run_dir)
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.delenv("RUNCTL_RUN_DIR", raising=False)
    # the kernel knows its notebook as Jupyter Server tells it; no other notebook is searched
    monkeypatch.setenv("JPY_SESSION_NAME", str(copy))
    nb = nbformat.read(copy, as_version=4)
    recorded = by_id(nb, "code").outputs[0].text
    client = nbclient.NotebookClient(
        nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(elsewhere)}}
    )
    client.execute()
    fresh = [o for o in by_id(nb, "code").outputs if o.output_type == "stream"]
    assert recorded == "value 20\nvalue 22\n"
    assert fresh[0].text == recorded


def test_a_cloud_run_record_says_where_its_files_are_in_s3(tmp_path):
    from runctl_jupyter.record import s3_location

    spec = {"run_id": "abc", "sync": {"kind": "s3", "bucket": "b", "prefix": "runctl"}}
    assert s3_location(spec) == "s3://b/runctl/runs/abc/"
    assert s3_location({"run_id": "abc", "sync": None}) is None
