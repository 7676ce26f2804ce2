"""Closing widget trees: a widget's Layout and Style are widgets (comms) too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.display import DisplayHandle


def widget_tree(roots: Iterable[Any]) -> list[Any]:
    """Every widget reachable from `roots` through children, layout and style."""
    import ipywidgets as W

    seen: dict[int, object] = {}
    stack = list(roots)
    while stack:
        widget = stack.pop()
        if not isinstance(widget, W.Widget) or id(widget) in seen:
            continue
        seen[id(widget)] = widget
        for attr in ("layout", "style"):
            sub = getattr(widget, attr, None)
            if isinstance(sub, W.Widget):
                stack.append(sub)
        stack.extend(getattr(widget, "children", ()) or ())
    return list(seen.values())


def close_all(roots: Iterable[Any]) -> None:
    for widget in widget_tree(roots):
        try:
            widget.close()
        except Exception:  # a comm already gone is closed enough
            pass


# An output's metadata key marking a widget that lives only as long as its kernel:
# the server extension drops its view from a saved notebook (server/saving.py).
LIVE_WIDGET = "runctl_live_widget"


def display_widget(
    widget: Any,
    text: str,
    display_id: str | None = None,
    handle: DisplayHandle | None = None,
) -> DisplayHandle | None:
    """Display a widget (or, given a display `handle`, put it in that output) with
    `text` as its plain-text fallback, marked as live: a saved notebook keeps only
    `text` there (nothing when it is empty), not a view of a model it does not hold."""
    from IPython.display import display

    bundle = dict(widget._repr_mimebundle_())
    bundle["text/plain"] = text
    metadata = {LIVE_WIDGET: True}
    if handle is not None:
        return handle.update(bundle, raw=True, metadata=metadata)
    if display_id is None:
        return display(bundle, raw=True, metadata=metadata)
    return display(bundle, raw=True, metadata=metadata, display_id=display_id)


def leave_static(
    outputs: list[dict[str, Any]],
    handle: DisplayHandle | None,
    fig_handle: DisplayHandle | None,
    text_mode: bool,
) -> None:
    """Put a finished panel's static outputs where its live views were: the display
    handles of a shown panel, else printed (a terminal) or displayed anew."""
    if handle is not None and fig_handle is not None:
        handle.update(outputs[0], raw=True)
        fig_handle.update(outputs[1] if len(outputs) > 1 else {"text/plain": ""}, raw=True)
    elif text_mode:
        print(outputs[0]["text/plain"], flush=True)
    else:
        from IPython.display import display

        for bundle in outputs:
            display(bundle, raw=True)
