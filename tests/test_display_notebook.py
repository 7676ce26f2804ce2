"""Finished panels in an executed, saved notebook (nbclient, widget state stored):
the static summary is in the outputs and each run adds under 300 KB."""

from __future__ import annotations

import json
import re

import nbclient
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

RUNS = 10
PLOTLY = "application/vnd.plotly.v1+json"

SETUP = """
import time
from runctl_jupyter.display.run_panel import RunPanel

def row(i, status="running"):
    return {"id": f"run{i:04d}", "name": f"digits-{i}", "experiment": "digits", "backend": "local",
            "status": status, "started": time.time() - 30, "duration": None if status == "running" else 30.0,
            "params": {"lr": 0.01 * (i + 1), "epochs": 3000}, "cost": 0.0}

def events(n):
    out = [{"seq": s + 1, "t": time.time(), "type": "metric", "step": s,
            "values": {"loss": 1 / (s + 1), "acc": s / n, "lr": 1e-3}, "total": n} for s in range(n)]
    out.append({"seq": n + 1, "t": time.time(), "type": "log", "stream": "stderr", "text": "<script>x</script>\\n" * 40})
    return out
"""

PANEL = """
panel = RunPanel(row({i}), on_stop=lambda force: None)
panel.show()
ev = events(3000)
for k in range(0, len(ev), 500):
    panel.update(row({i}), ev[k:k + 500])
    panel.redraw()
panel.finish(row({i}, "succeeded"),
             {{m: [(e["step"], e["values"][m]) for e in ev if e["type"] == "metric"] for m in ("loss", "acc", "lr")}})
"""

# the tags JupyterLab's sanitizer keeps in untrusted HTML outputs (a subset we use)
SAFE_TAGS = {
    "div",
    "span",
    "b",
    "code",
    "a",
    "button",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "pre",
}


def execute(tmp_path, n: int) -> tuple[nbformat.NotebookNode, int]:
    nb = new_notebook(
        cells=[new_code_cell(SETUP)] + [new_code_cell(PANEL.format(i=i)) for i in range(n)]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbclient.NotebookClient(
        nb, timeout=240, store_widget_state=True, kernel_name="python3"
    ).execute()
    path = tmp_path / f"panels-{n}.ipynb"
    nbformat.write(nb, path)
    return nb, path.stat().st_size


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nb")
    base, base_size = execute(tmp, 0)
    nb, size = execute(tmp, RUNS)
    return nb, size, base_size


def test_each_finished_run_adds_under_300_kb(executed):
    nb, size, base_size = executed
    per_run = (size - base_size) / RUNS
    print(f"saved notebook grows {per_run / 1000:.0f} KB per finished run")
    assert per_run < 300_000, f"{per_run / 1000:.0f} KB per run"


def test_no_plotly_bundle_is_left_in_the_widget_state(executed):
    nb, _, _ = executed
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    biggest = max(len(json.dumps(model)) for model in state.values())
    assert biggest < 50_000


def test_outputs_are_the_static_summary_and_figure_not_widget_views(executed):
    nb, _, _ = executed
    for cell in nb.cells[1:]:
        kinds = [set(o.get("data", {})) for o in cell.outputs]
        assert all("application/vnd.jupyter.widget-view+json" not in k for k in kinds)
        summary, figure = cell.outputs
        html = summary["data"]["text/html"]
        assert "succeeded" in html and "final" in html and "lr" in html
        assert PLOTLY in figure["data"] and "<svg" in figure["data"]["text/html"]
        assert all(len(trace["x"]) <= 1000 for trace in figure["data"][PLOTLY]["data"])
        assert set(re.findall(r"<([a-z]+)[\s>]", html)) <= SAFE_TAGS, (
            "a tag JupyterLab strips when untrusted"
        )
        assert "<script>" not in json.dumps(cell.outputs)
