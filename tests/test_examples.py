"""The example notebooks, executed end to end on a real kernel (nbclient)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent

EXAMPLES = ROOT / "examples"


def execute(name: str, home, tmp_path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(EXAMPLES / name), as_version=4)
    os.environ["RUNCTL_HOME"] = str(home)  # the kernel inherits it
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(EXAMPLES)}},
    )
    client.execute()
    out = tmp_path / name
    nbformat.write(nb, str(out))
    return nb


def outputs_of(nb, source_start: str) -> list:
    cell = next(c for c in nb.cells if c.cell_type == "code" and c.source.startswith(source_start))
    return cell.outputs


def test_quickstart_runs_end_to_end_and_leaves_static_results(home, tmp_path):
    nb = execute("01_quickstart.ipynb", home, tmp_path)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    train = outputs_of(nb, "%%runctl train -p lr=0.5")
    bundles = [o.data for o in train if o.output_type in ("display_data", "execute_result")]
    assert any("application/vnd.plotly.v1+json" in b for b in bundles), (
        "no static figure left behind"
    )
    assert any("text/html" in b and "val_acc" in b["text/html"] for b in bundles)
    runs_table = outputs_of(nb, "%runctl runs")[0].data["text/plain"]
    assert "quickstart" in runs_table and "succeeded" in runs_table
    record = next((home / "runs").glob("*/record.ipynb"))
    nbformat.validate(nbformat.read(str(record), as_version=4))


@pytest.mark.parametrize("name", ["01_quickstart.ipynb"])
def test_example_notebooks_are_committed_without_outputs(name):
    nb = json.loads((EXAMPLES / name).read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
