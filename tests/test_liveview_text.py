"""The terminal view: one line per spot interruption, next to status changes."""

from __future__ import annotations

import io
from types import SimpleNamespace

from runctl_jupyter.runs.liveview import TextView


def test_the_text_view_prints_one_line_per_interruption():
    out, err = io.StringIO(), io.StringIO()
    view = TextView(SimpleNamespace(id="r1"), out=out, err=err)
    row = {"id": "r1", "name": "digits-1", "status": "running"}
    notice = {
        "type": "interrupt",
        "attempt": 1,
        "kind": "spot",
        "action": "terminate",
        "action_time": "2026-11-29T04:00:00Z",
    }
    rebalance = {"type": "interrupt", "attempt": 2, "kind": "rebalance", "action": None}
    view.update(row, [notice])
    view.update({**row, "status": "resuming"}, [])
    view.update(row, [rebalance])
    lines = [line for line in err.getvalue().splitlines() if "notice" in line]
    assert lines == [
        "[runctl] attempt 1: spot interruption notice (terminate at 2026-11-29T04:00:00Z): "
        "saving a checkpoint and stopping",
        "[runctl] attempt 2: rebalance notice: saving a checkpoint and stopping",
    ]
    assert out.getvalue() == ""
