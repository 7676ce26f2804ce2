"""What a saved notebook keeps of runctl's live widgets: their static fallback only.

JupyterLab saves a widget's output as a view of its model, and the model's state
only with "Save Widget State Automatically" (off by default). Reopened without a
kernel, such a view reads "Error displaying widget: model not found". A panel
leaves static outputs in place of its widgets when it ends (display/), but some
widgets live as long as their kernel: `%runctl compare`'s controls, the runs
table's Attach/Stop buttons, a panel whose run is still going. Their outputs carry
the `LIVE_WIDGET` mark; this contents-manager pre-save hook drops the widget view
from each marked output whose model state is not saved with the notebook, and the
output with it when no fallback text is left. The document in the browser is not
touched: the widgets stay live there.
"""

from __future__ import annotations

from typing import Any

from ..display._widgets import LIVE_WIDGET

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def saved_models(notebook: dict) -> set[str]:
    """The ids of the widget models whose state the notebook itself holds."""
    widgets = (notebook.get("metadata") or {}).get("widgets") or {}
    return set(((widgets.get(WIDGET_STATE) or {}).get("state") or {}).keys())


def _blank(value: Any) -> bool:
    """Nothing to show: an empty text (nbformat may keep a text as a list of lines)."""
    return not ("".join(value) if isinstance(value, list) else str(value)).strip()


def _without_live_view(output: dict, saved: set[str]) -> dict | None:
    """The output as it should be saved; None to leave it out."""
    data = output.get("data") or {}
    view = data.get(WIDGET_VIEW)
    if view is None or not (output.get("metadata") or {}).get(LIVE_WIDGET):
        return output
    if isinstance(view, dict) and view.get("model_id") in saved:
        return output  # drawn from the saved state, kernel or not
    rest = {mime: value for mime, value in data.items() if mime != WIDGET_VIEW}
    if all(_blank(value) for value in rest.values()):
        return None
    metadata = {k: v for k, v in output["metadata"].items() if k != LIVE_WIDGET}
    return {**output, "data": rest, "metadata": metadata}


def drop_live_widgets(notebook: dict) -> None:
    """Strip, in place, the live widget views a saved copy could not draw."""
    saved = saved_models(notebook)
    for cell in notebook.get("cells") or []:
        if cell.get("outputs"):
            outputs = (_without_live_view(output, saved) for output in cell["outputs"])
            cell["outputs"] = [output for output in outputs if output is not None]


def pre_save_hook(model: dict, **_: Any) -> None:
    """jupyter_server's pre-save hook signature: the model about to be written."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        drop_live_widgets(model["content"])
