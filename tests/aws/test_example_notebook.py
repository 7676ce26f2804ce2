"""examples/03_aws.ipynb, executed on a real kernel against moto, the instance played here."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from nbclient import NotebookClient

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "03_aws.ipynb"


def test_the_aws_example_runs_end_to_end(aws, instance, tmp_path, monkeypatch):
    home = tmp_path / "runctl-home"
    monkeypatch.setenv("RUNCTL_HOME", str(home))  # the kernel inherits it, and AWS_ENDPOINT_URL
    nb = nbformat.read(str(EXAMPLE), as_version=4)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors, errors
    setup_out = "".join(
        o.get("text", "") + o.get("data", {}).get("text/plain", "")
        for c in nb.cells[3:5]
        for o in c.outputs
    )
    assert "all good" in setup_out
    runs = next(c for c in nb.cells if c.source.startswith("%runctl runs")).outputs[0]["data"][
        "text/plain"
    ]
    assert "first-aws-run" in runs and "succeeded" in runs
    [run_dir] = list((home / "runs").iterdir())
    target = json.loads((run_dir / "aws.json").read_text())
    assert target["instance_type"] == "t3.micro" and target["spot"] is False
    import re

    fitted = re.search(r"fitted w=([0-9.]+) b=([0-9.]+)", (run_dir / "stdout.log").read_text())
    assert fitted and abs(float(fitted[1]) - 3.0) < 0.1 and abs(float(fitted[2]) - 0.5) < 0.1


def test_the_aws_example_is_committed_without_outputs():
    nb = json.loads(EXAMPLE.read_text())
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
