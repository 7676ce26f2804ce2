"""The runs table: text for the shell, HTML + per-run actions in a notebook."""

from __future__ import annotations

import time

from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from runctl_jupyter.display.runs_table import RunsTable, runs_html, runs_text

EVIL = "<script>alert(1)</script></table>"


def row(rid, status, **kw):
    base = {
        "id": rid,
        "name": f"name-{rid}",
        "experiment": "digits",
        "status": status,
        "backend": "local",
        "started": time.time() - 65,
        "created": time.time() - 70,
        "duration": 65.0 if status != "running" else None,
        "final_metrics": {"loss": 0.123456789, "acc": 0.9, "f1": 0.8, "extra": 1.0},
        "cost": 0.0,
    }
    base.update(kw)
    return base


ROWS = [
    row("aaa111", "running"),
    row("bbb222", "failed", reason="exception"),
    row("ccc333", "succeeded", backend="aws", cost=1.5),
]


def click(button):
    button._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}
    )


def test_text_table_has_a_line_per_run_with_status_metrics_duration_cost():
    lines = runs_text(ROWS).splitlines()
    assert lines[0].split()[:3] == ["RUN", "NAME", "STATUS"]
    assert len(lines) == 4
    assert (
        "aaa111" in lines[1]
        and "running" in lines[1]
        and "loss=0.123457" in lines[1]
        and "$0 (local)" in lines[1]  # the wording of the panel and the one-line result
    )
    assert "failed (exception)" in lines[2] and "1m05s" in lines[2]
    assert "$1.50" in lines[3]
    assert "extra=" not in lines[1], "at most three metrics"


def test_text_table_keeps_one_line_per_run_and_says_when_empty():
    assert runs_text([]) == "no runs"
    assert len(runs_text([row("x", "running", name="a\nb")]).splitlines()) == 2


def test_html_escapes_run_text():
    html = runs_html(
        [row("x", "failed", name=EVIL, experiment=EVIL, reason=EVIL, final_metrics={EVIL: 1.0})]
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert html.count("</table>") == 1


def test_buttons_only_for_active_runs_and_they_call_back(comms):
    InteractiveShell.instance()
    attached, stopped = [], []
    table = RunsTable(ROWS, on_attach=attached.append, on_stop=stopped.append, widgets=True)
    with capture_output() as cap:
        table.show()
    assert (
        "aaa111" in cap.outputs[0].data["text/html"]
        and "ccc333" in cap.outputs[0].data["text/html"]
    )
    assert "application/vnd.jupyter.widget-view+json" in cap.outputs[1].data
    assert list(table.buttons) == ["aaa111"]
    click(table.buttons["aaa111"]["stop"])
    click(table.buttons["aaa111"]["attach"])
    assert stopped == ["aaa111"] and attached == ["aaa111"]
    assert table.buttons["aaa111"]["stop"].disabled


def test_a_failing_action_is_reported_next_to_the_buttons(comms):
    InteractiveShell.instance()

    def broken(run_id):
        raise RuntimeError("no agent")

    table = RunsTable(ROWS, on_attach=None, on_stop=broken, widgets=True)
    with capture_output():
        table.show()
    click(table.buttons["aaa111"]["stop"])
    assert "no agent" in table.message and "no agent" in table._message.value


def test_update_redraws_the_table_in_place(comms):
    InteractiveShell.instance()
    table = RunsTable(ROWS, widgets=False)
    with capture_output() as cap:
        table.show()
        table.update([row("aaa111", "stopped", reason="user")])
    first, last = cap.outputs[0], cap.outputs[-1]
    assert last.update and last.transient["display_id"] == first.transient["display_id"]
    assert "stopped" in last.data["text/html"]
