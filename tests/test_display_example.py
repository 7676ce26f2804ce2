"""examples/02_compare.ipynb, executed end to end on a real kernel: a few digits
runs, then `%runctl compare` leaves the comparison in the saved outputs."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "02_compare.ipynb"
PLOTLY = "application/vnd.plotly.v1+json"


def test_compare_example_runs_and_leaves_the_comparison(home, tmp_path, monkeypatch):
    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    monkeypatch.setenv("RUNCTL_HOME", str(home))  # the kernel inherits it
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    nbformat.write(nb, str(tmp_path / NOTEBOOK.name))
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    cell = next(c for c in nb.cells if c.source.startswith("%runctl compare --experiment"))
    bundles = [o.data for o in cell.outputs if o.output_type == "display_data"]
    table = next(b["text/html"] for b in bundles if "runctl-compare" in b.get("text/html", ""))
    for name in ("sgd-slow", "sgd-mid", "sgd-fast", "sgd-fast-reg"):
        assert name in table
    assert "val_acc_best" in table and "★" in table
    figures = [b[PLOTLY] for b in bundles if PLOTLY in b]
    assert len(figures) == 3  # curves, cost vs objective, parallel coordinates
    assert len(figures[0]["data"]) == 4
    assert figures[1]["data"][1]["name"] == "Pareto front"
    assert "Pareto front:" in "".join(o.get("text", "") for o in nb.cells[-1].outputs)


def test_compare_example_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
