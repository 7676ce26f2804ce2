"""record.ipynb as plain JSON (nbformat 4.5): its names, cells and loading.

Stdlib only (shipped to instances with the agent, like every record_* module).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import RunctlError

RECORD_FILE = "record.ipynb"
RECORD_FORMAT = 1
PLOTLY_MIME = "application/vnd.plotly.v1+json"
CODE_TAG = "runctl-code"
SUMMARY_TAG = "runctl-summary"


def markdown_cell(cell_id: str, source: str, tags: list[str] | None = None) -> dict:
    metadata = {"tags": tags} if tags else {}
    return {"cell_type": "markdown", "id": cell_id, "metadata": metadata, "source": source}


def code_cell(
    cell_id: str, source: str, outputs: list | None = None, tags: list | None = None
) -> dict:
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"tags": tags} if tags else {},
        "execution_count": None,
        "outputs": outputs or [],
        "source": source,
    }


def load_notebook(path: Path) -> dict:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunctlError(f"no notebook at {path}: check the path") from exc
    except (OSError, ValueError) as exc:
        raise RunctlError(f"{path} is not a readable notebook ({exc}): check the file") from exc
    if not isinstance(notebook, dict) or not isinstance(notebook.get("metadata", {}), dict):
        raise RunctlError(f"{path} is not a notebook (not a JSON object): check the file")
    return notebook


def cell_tags(cell: dict) -> list:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return tags if isinstance(tags, list) else []


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def clean_json(value: Any) -> Any:
    """Strict JSON: non-finite floats become strings ("nan", "inf") so the notebook stays valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
