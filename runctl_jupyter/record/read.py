"""Reading a record back: what `rerun` needs, and the shipped objects for a
record's setup cell (`from runctl_jupyter.record import load_shipped_objects`). Stdlib only.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import sys
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from .notebook import (
    CODE_TAG,
    RECORD_FILE,
    RECORD_FORMAT,
    SUMMARY_TAG,
    cell_source,
    cell_tags,
    load_notebook,
)


def read_record(path: str | os.PathLike) -> dict:
    """What a rerun needs, from a record alone: {"spec", "objects", "code", "params"}.

    `code` is the record's code cell (edit it there to rerun changed code); for a
    whole-notebook run it is the notebook (JSON text) without outputs, summary
    or injected parameters. `objects` is the shipped objects.pkl, or None.
    """
    notebook = load_notebook(Path(path))
    meta = notebook.get("metadata", {}).get("runctl")
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise RunctlError(
            f"{path} is not a runctl record (no metadata.runctl): pass a record.ipynb written by runctl"
        )
    if meta.get("format") != RECORD_FORMAT:
        raise RunctlError(
            f"{path} is a runctl record of format {meta.get('format')!r}, this runctl reads "
            f"format {RECORD_FORMAT}: upgrade runctl-jupyter"
        )
    spec = meta["spec"]
    if spec.get("kind") == "notebook":
        code = json.dumps(strip_to_input(notebook), indent=1)
    else:
        cells = [c for c in notebook.get("cells", []) if CODE_TAG in cell_tags(c)]
        if not cells:
            raise RunctlError(
                f"{path} has no cell tagged {CODE_TAG!r}: restore the tag on the code cell"
            )
        code = cell_source(cells[0])
    encoded = meta.get("objects_b64")
    objects = base64.b64decode(encoded) if encoded else None
    return {"spec": spec, "objects": objects, "code": code, "params": dict(spec.get("params", {}))}


def load_shipped_objects(run_id: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The notebook objects shipped with run `run_id`, read from its record.

    Called by a record's setup cell: the record is found at `path`, the notebook
    Jupyter says is open, or `record.ipynb` here, and must be run `run_id`'s. No other
    notebook is searched: whoever runs a record's cells runs its code, and this loads
    the objects of that record only (docs/reliability.md, "Trust").
    """
    candidates = [Path(path)] if path else []
    main = sys.modules.get("__main__")
    for attr in ("__vsc_ipynb_file__", "__session__"):
        value = getattr(main, attr, None)
        if isinstance(value, str) and value.endswith(".ipynb"):
            candidates.append(Path(value))
    session = os.environ.get("JPY_SESSION_NAME", "")  # the notebook's path, set by Jupyter
    if session.endswith(".ipynb"):
        candidates.append(Path(session))
    candidates.append(Path(RECORD_FILE))
    for candidate in candidates:
        try:
            meta = load_notebook(candidate)["metadata"]["runctl"]
        except (RunctlError, KeyError, TypeError):
            continue
        if meta.get("spec", {}).get("run_id") == run_id and meta.get("objects_b64"):
            return pickle.loads(base64.b64decode(meta["objects_b64"]))
    raise RunctlError(
        f"cannot find the record of run {run_id} to load its notebook objects: call "
        f"load_shipped_objects({run_id!r}, 'path/to/record.ipynb') in the setup cell"
    )


def strip_to_input(notebook: dict) -> dict:
    """The notebook as it was before running: no summary, injected parameters or outputs."""
    clean = json.loads(json.dumps(notebook))
    clean["metadata"].pop("runctl", None)
    clean["metadata"].pop("papermill", None)
    cells = []
    for cell in clean.get("cells", []):
        if {SUMMARY_TAG, "injected-parameters"} & set(cell_tags(cell)):
            continue
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    clean["cells"] = cells
    return clean
