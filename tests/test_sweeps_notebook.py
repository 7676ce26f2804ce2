"""Sweeps from the magic, the shell and a real notebook (nbclient), and the SweepPanel's widgets."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from nbclient import NotebookClient

from runctl_jupyter import cli
from runctl_jupyter.display.sweep_panel import SweepPanel
from runctl_jupyter.display.sweep_summary import static_outputs
from runctl_jupyter.sweeps.api import trial_rows
from runctl_jupyter.sweeps.record import (
    SPEC_FILE,
    SweepState,
    all_sweeps,
    append_log,
    scheduler_alive,
    write_json,
)

ROOT = Path(__file__).resolve().parent.parent
PLOTLY = "application/vnd.plotly.v1+json"


@pytest.fixture
def ip(ip, home):
    """The shared shell (conftest.py); sweeps still running at the end are stopped."""
    yield ip
    for state in all_sweeps(home):
        if scheduler_alive(state.dir):
            (state.dir / "control.json").write_text('{"stop": true}')


# ---------------------------------------------------------------- magic and shell


def test_a_sweep_cell_runs_its_trials_and_leaves_the_sweep_in_the_namespace(ip):
    ip.user_ns["scale"] = 10  # a notebook object the cell uses: shipped to every trial
    result = ip.run_cell_magic(
        "runctl",
        "sweep --grid lr=1,2 --grid bs=[1,2],[3] -p tag=x --objective acc:max --max-parallel 2 --name magic",
        "runctl.log(step=0, acc=lr * scale * len(bs))\n",
    )
    sweep = ip.user_ns["_runctl_sweep"]
    assert result is sweep and sweep.state.status == "succeeded"
    assert sweep.best["objective"] == 40 and sweep.best["params"] == {"lr": 2, "bs": [1, 2]}
    assert {t["params"]["lr"] for t in sweep.trials()} == {1, 2}
    listing = str(ip.run_line_magic("runctl", "sweeps"))
    assert "magic" in listing and "acc=40" in listing and "bs=[1, 2]" in listing


def test_magic_usage_errors_are_one_line(ip):
    with pytest.raises(UsageError, match="nothing to sweep"):
        ip.run_cell_magic("runctl", "sweep --objective acc:max", "pass\n")
    with pytest.raises(UsageError, match="bad --space lr=gauss"):
        ip.run_cell_magic("runctl", "sweep --random 2 --space lr=gauss(0,1)", "pass\n")
    with pytest.raises(UsageError, match="lr is given twice"):
        ip.run_cell_magic("runctl", "sweep --grid lr=1 --grid lr=2", "pass\n")
    with pytest.raises(UsageError, match="no sweep 'nope'"):
        ip.run_line_magic("runctl", "sweep --resume nope")


def test_the_shell_runs_a_script_sweep_and_lists_it(home, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text(
        "from runctl_jupyter.runtime import runctl\nrunctl.log(step=0, acc=runctl.params['lr'])\n"
    )
    code = cli.main(
        ["sweep", "train.py", "--hyperparams", "lr:1,3", "--objective", "acc:max", "--name", "sh"]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "succeeded" in out.out and "best acc=3" in out.out
    assert "trial 1" in out.err  # the text view: a line per trial
    assert cli.main(["sweeps"]) == 0
    assert "sh" in capsys.readouterr().out


# ---------------------------------------------------------------- the panel


def fake_sweep(home, n: int, hostile: str = "", objective: bool = True) -> SweepState:
    """A sweep folder as the scheduler leaves it: n trials, most done, some running."""
    sweep_dir = home / "sweeps" / "sabc"
    sweep_dir.mkdir(parents=True)
    plan = [
        {"lr": 10 ** -(i % 5), "act": hostile or ("relu" if i % 2 else "tanh")} for i in range(n)
    ]
    write_json(
        sweep_dir / SPEC_FILE,
        {
            "format": 1,
            "sweep_id": "sabc",
            "name": "big",
            "experiment": "big",
            "search": "grid",
            "objective": {"metric": "acc", "mode": "max"} if objective else None,
            "n_trials": n,
            "plan": plan,
            "created": time.time(),
        },
    )
    append_log(sweep_dir, type="status", status="running")
    for i in range(n - 20):
        append_log(sweep_dir, type="trial", index=i, run_id=f"r{i:04d}", status="succeeded", reason=None, objective=i / n)  # fmt: skip
    for i in range(n - 20, n - 17):
        append_log(sweep_dir, type="trial", index=i, run_id=f"r{i:04d}", status="running")
    return SweepState(sweep_dir)


def test_the_panel_shows_counts_table_and_figure_and_its_buttons_stop(session, home):
    state = fake_sweep(home, 40)
    trials = trial_rows(session, state)
    stopped_trials, stopped_sweeps = [], []
    panel = SweepPanel(state, stopped_trials.append, lambda: stopped_sweeps.append(1))
    panel.build_widgets()
    panel.update(state, trials)
    panel.redraw()
    w = panel.w
    assert "<b>20</b> done" in w["header"].value and "<b>3</b> running" in w["header"].value
    assert "<b>17</b> queued" in w["header"].value and "best <b>acc=0.475</b>" in w["header"].value
    assert w["progress"].max == 40 and w["progress"].value == 20
    table = w["table"].value
    assert table.index("r0020") < table.index("r0019") < table.index("r0000")  # running, then best
    fig = w["figure"]
    assert [t.type for t in fig.data] == ["parcoords", "scatter", "scatter"]
    assert [d.label for d in fig.data[0].dimensions] == ["log10(lr)", "act", "acc"]
    assert list(fig.data[2].y) == sorted(fig.data[2].y)  # best so far only improves
    assert [v for _, v in w["trial"].options] == ["r0020", "r0021", "r0022"]
    w["trial"].value = "r0021"
    w["stop_trial"].click()
    assert stopped_trials == ["r0021"] and "Stopping run r0021" in w["message"].value
    w["stop_sweep"].click()
    assert stopped_sweeps == [1] and w["stop_sweep"].disabled


def _shown_widgets(outputs) -> list[str]:
    return [
        o.data["application/vnd.jupyter.widget-view+json"]["model_id"]
        for o in outputs
        if "application/vnd.jupyter.widget-view+json" in o.data
    ]


@pytest.mark.parametrize("objective", [False, True])
def test_the_figure_shows_only_once_there_is_an_objective_to_plot(session, home, objective):
    InteractiveShell.instance()
    state = fake_sweep(home, 25, objective=objective)
    trials = trial_rows(session, state)
    if not objective:
        trials = [{**t, "objective": None} for t in trials]
    panel = SweepPanel(state, lambda r: None, lambda: None, widgets=True)
    panel.trials = trials
    with capture_output() as cap:
        panel.show()
    shown = _shown_widgets(cap.outputs)
    fig_shown = panel.w["figure"].model_id in shown
    assert panel.w["top"].model_id in shown and fig_shown is objective, shown
    # a running trial is chosen for Stop trial: no empty choice
    assert panel.w["trial"].value == "r0005"
    panel.close()


def test_finishing_closes_the_widgets_and_leaves_an_escaped_static_summary(session, home):
    state = fake_sweep(home, 25, hostile="<script>alert(1)</script>")
    trials = trial_rows(session, state)
    panel = SweepPanel(state, lambda r: None, lambda: None)
    panel.build_widgets()
    panel.update(state, trials)
    panel.redraw()
    fig, button = panel.w["figure"], panel.w["stop_sweep"]
    panel.finish(state, trials)
    assert fig._esm == "export default {};" and button.comm is None and panel.w == {}
    outputs = static_outputs(state, trials)
    assert PLOTLY in outputs[1] and "<svg" in outputs[1]["text/html"]
    html = outputs[0]["text/html"]
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "<script>" not in json.dumps(outputs[1][PLOTLY])


def test_the_panel_stays_quick_with_500_trials(session, home):
    state = fake_sweep(home, 500)
    trials = trial_rows(session, state)
    panel = SweepPanel(state, lambda r: None, lambda: None)
    panel.build_widgets()
    started = time.perf_counter()
    for _ in range(5):
        panel.update(state, trials)
        panel.redraw()
    per_redraw = (time.perf_counter() - started) / 5
    assert per_redraw < 0.5, per_redraw
    assert panel.w["table"].value.count("<tr>") == 31  # header + 30 rows, then "… and N more"
    assert "and 470 more trials" in panel.w["table"].value
    panel.close()


# ---------------------------------------------------------------- the example notebook


def test_the_sweep_example_runs_end_to_end_and_leaves_static_results(home, tmp_path):
    path = ROOT / "examples" / "04_sweep.ipynb"
    nb = nbformat.read(str(path), as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    os.environ["RUNCTL_HOME"] = str(home)  # the kernel inherits it
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(ROOT / "examples")}},
    )
    client.execute()
    saved = tmp_path / "04_sweep.ipynb"
    nbformat.write(nb, str(saved))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]  # fmt: skip
    assert not errors, errors
    for start in ("%%runctl sweep --grid", "%%runctl sweep --random"):
        cell = next(c for c in nb.cells if c.source.startswith(start))
        bundles = [o.data for o in cell.outputs if o.output_type in ("display_data", "execute_result")]  # fmt: skip
        assert any(PLOTLY in b for b in bundles), "no static figure left behind"
        assert any("runctl-sweep-summary" in b.get("text/html", "") for b in bundles)
    grid = next(s for s in all_sweeps(home) if s.name == "digits-grid")
    assert grid.status == "succeeded" and grid.counts()["done"] == 4
    reasons = {t["reason"] for t in grid.trials}
    assert "early-stop" in reasons  # lr=1.0 stops improving early
    listing = next(c for c in nb.cells if c.source.startswith("%runctl sweeps"))
    text = listing.outputs[0].data["text/plain"]
    assert "digits-grid" in text and "digits-random" in text
    assert saved.stat().st_size < 500_000  # no plotly.js bundles left in the widget state


def test_a_notebook_sweep_fills_the_parameters_cell_of_each_trial(session, tmp_path):
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell("seed = 0")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "from runctl_jupyter.runtime import runctl\nrunctl.log(step=0, acc=seed * 2)\n"
    )
    path = tmp_path / "analysis.ipynb"
    nbformat.write(new_notebook(cells=[params, body], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), str(path))  # fmt: skip
    sw = session.sweep(target=str(path), grid={"seed": [3]}, objective="acc:max")
    assert sw.best["objective"] == 6
    record = session.store.run_dir(sw.run_ids()[0]) / "record.ipynb"
    assert "seed = 3" in record.read_text()
