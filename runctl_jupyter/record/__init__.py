"""record.ipynb: a finished run as an executed notebook anyone can open and rerun.

Stdlib only: the agent writes the record next to the code, on a bare EC2
instance too, just before its `exit` event. The notebook is nbformat 4.5 written
as plain JSON; its `metadata.runctl` carries the spec, a run summary and the
shipped notebook objects, so `runctl rerun record.ipynb` needs nothing else.

Cells: summary (markdown) | parameters (tagged, papermill's convention) | setup
(the `runctl` object and the shipped objects) | the code with its output | the
metrics figure (a plotly mime bundle as plain JSON, with an HTML table fallback)
| the environment (markdown). A whole-notebook run (kind `notebook`) is its
executed `output.ipynb` with the summary inserted first.

Modules: record_notebook (names, cells as JSON), record_facts (the run folder
read once), record_cells (each cell), record_figure (the metrics figure),
record_read (reading a record back for rerun).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .cells import (
    code_outputs,
    environment_markdown,
    metrics_output,
    notebook_record,
    parameters_source,
    s3_location,
    setup_source,
    summary_markdown,
)
from .facts import MAX_OUTPUT_CHARS, MAX_OUTPUT_LINES, RunFacts
from .figure import MAX_POINTS, downsample, metrics_figure
from .notebook import (
    CODE_TAG,
    PLOTLY_MIME,
    RECORD_FILE,
    RECORD_FORMAT,
    SUMMARY_TAG,
    clean_json,
    code_cell,
    markdown_cell,
)
from .read import load_shipped_objects, read_record

__all__ = [
    "CODE_TAG", "MAX_OUTPUT_CHARS", "MAX_OUTPUT_LINES", "MAX_POINTS", "PLOTLY_MIME",
    "RECORD_FILE", "RECORD_FORMAT", "SUMMARY_TAG", "build_record", "downsample",
    "load_shipped_objects", "metrics_figure", "read_record", "s3_location", "write_record",
]  # fmt: skip


def write_record(run_dir: str | os.PathLike, final: dict | None = None) -> Path:
    """Write `record.ipynb` into the run folder atomically; return its path.

    `final` is the `exit` event about to be written (status, reason, exit_code,
    error, duration); without it the last `exit` event of the stream is used.
    """
    run_dir = Path(run_dir)
    notebook = build_record(run_dir, final)
    # No indent: it would put every figure point on its own line (~25% of the size).
    text = json.dumps(notebook, ensure_ascii=False, allow_nan=False) + "\n"
    path = run_dir / RECORD_FILE
    tmp = run_dir / f".{RECORD_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def build_record(run_dir: str | os.PathLike, final: dict | None = None) -> dict:
    """The record notebook (nbformat 4.5) as a JSON-ready dict."""
    facts = RunFacts(Path(run_dir), final)
    if facts.spec.get("kind") == "notebook":
        notebook = notebook_record(facts)
    else:
        cells = [
            markdown_cell("summary", summary_markdown(facts), tags=[SUMMARY_TAG]),
            code_cell("parameters", parameters_source(facts.params), tags=["parameters"]),
            code_cell("setup", setup_source(facts)),
            code_cell("code", facts.code, outputs=code_outputs(facts), tags=[CODE_TAG]),
            code_cell("metrics", "# metrics", outputs=[metrics_output(facts)]),
            markdown_cell("environment", environment_markdown(facts.env)),
        ]
        notebook = {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
            "cells": cells,
        }
    notebook["metadata"]["runctl"] = clean_json(
        {
            "format": RECORD_FORMAT,
            "spec": facts.spec,
            "run": facts.summary(),
            "env": facts.env,
            "objects_b64": facts.objects_b64(),
        }
    )
    return notebook
