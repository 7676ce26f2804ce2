"""RunPanel without a browser: widget state, comm messages and display outputs."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from runctl_jupyter.display.run_panel import RunPanel
from runctl_jupyter.display.series import MinMaxDecimator
from runctl_jupyter.display.summary import static_outputs, static_summary

PLOTLY = "application/vnd.plotly.v1+json"
EVIL = "<script>alert(1)</script></table>"


@pytest.fixture
def shell():
    return InteractiveShell.instance()


def make_run(**kw) -> dict:
    run = {
        "id": "3f9a1c2b7d",
        "name": "digits-mlp-3",
        "experiment": "digits",
        "project": "default",
        "backend": "local",
        "status": "running",
        "reason": None,
        "created": time.time() - 12,
        "started": time.time() - 10,
        "ended": None,
        "duration": None,
        "attempt": 1,
        "params": {"lr": 0.05, "epochs": 20},
        "cost": 0.0,
        "rate": 0.0,
    }
    run.update(kw)
    return run


class Events:
    def __init__(self):
        self.seq = 0

    def __call__(self, type_, t=None, **fields):
        self.seq += 1
        return {
            "seq": self.seq,
            "t": time.time() if t is None else t,
            "type": type_,
            "attempt": 1,
            **fields,
        }


def click(button):
    """What the frontend sends when a button is clicked."""
    button._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"event": "click"}}}, "buffers": []}
    )


def test_update_collects_metric_series_and_progress():
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None)
    panel.update(
        make_run(),
        [
            ev("metric", step=s, values={"loss": 1.0 / s, "acc": s / 10}, total=10)
            for s in range(1, 6)
        ],
    )
    assert panel.series["loss"].count == 5
    assert panel.series["acc"].last == 0.5
    assert panel.step == 5 and panel.total == 10
    assert panel.progress_text() == "step 5 / 10 (50%)"


def test_duplicate_events_are_ignored():
    ev = Events()
    events = [
        ev("metric", step=1, values={"loss": 1.0}),
        ev("metric", step=2, values={"loss": 0.5}),
    ]
    panel = RunPanel(make_run(), on_stop=lambda force: None)
    panel.update(make_run(), events)
    panel.update(make_run(), events)
    assert panel.series["loss"].count == 2


def test_total_comes_from_epochs_param_when_not_logged():
    panel = RunPanel(make_run(params={"epochs": 7}), on_stop=lambda force: None)
    assert panel.total == 7


def test_eta_from_recent_step_rate():
    ev = Events()
    t0 = 1000.0
    panel = RunPanel(make_run(), on_stop=lambda force: None)
    panel.update(
        make_run(),
        [ev("metric", t=t0 + s, step=s, values={"loss": 1.0}, total=100) for s in range(0, 11)],
    )
    assert panel.eta() == pytest.approx(90.0)


def test_log_tail_keeps_last_lines_and_marks_stderr():
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, log_tail_lines=3)
    panel.update(
        make_run(),
        [
            ev("log", stream="stdout", text="a\nb\nc\nd\n"),
            ev("log", stream="stderr", text="boom\n"),
        ],
    )
    assert [line for _, line in panel.log_tail] == ["c", "d", "boom"]
    html = panel.log_html()
    assert "! boom" in html and "runctl-stderr" in html and "  a" not in html


def test_decimator_keeps_at_most_max_points_and_the_extremes():
    d = MinMaxDecimator(2000)
    for i in range(200_000):
        d.add(i, 1e6 if i == 123_457 else float(i % 100))
    xs, ys = d.points()
    assert len(xs) <= 2000
    assert max(ys) == 1e6 and 123_457 in xs
    assert xs == sorted(xs)


def test_fast_run_updates_stay_cheap_and_redraws_are_throttled(shell, comms):
    """20,000 steps/s for 10 s, delivered in 0.25 s batches as the wait loop would."""
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output():
        panel.show()
    fig_comm = panel.w["figure"].comm
    before = len(fig_comm.messages)
    t0 = time.time()
    batches = [
        [
            ev(
                "metric",
                t=t0 + (b * 5000 + i) / 20000,
                step=b * 5000 + i,
                values={"loss": 1 / (1 + b * 5000 + i), "acc": 0.5},
            )
            for i in range(5000)
        ]
        for b in range(40)
    ]
    worst = 0.0
    start = time.perf_counter()
    panel.update(make_run(), batches[0])  # the first draws the figure (plotly's one-off imports)
    for batch in batches[1:]:
        t = time.thread_time()  # this thread's CPU: other processes and threads do not count
        panel.update(make_run(), batch)
        worst = max(worst, time.thread_time() - t)
    elapsed = time.perf_counter() - start
    assert worst < 0.2, f"one update took {worst:.3f}s"
    assert panel.redraws <= 1 + elapsed * 4 + 1
    panel.redraw()
    assert all(len(t.x) <= 2000 for t in panel.w["figure"].data)
    assert panel.series["loss"].count == 200_000
    sent = [d for kind, d in fig_comm.messages[before:] if kind == "comm_msg"]
    assert len(sent) <= 8 * (panel.redraws + 1), "figure messages must follow redraws, not events"


def test_widget_panel_shows_header_status_colour_and_updates(shell, comms):
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output() as cap:
        panel.show()
    assert len(cap.outputs) == 2
    assert "application/vnd.jupyter.widget-view+json" in cap.outputs[0].data
    assert cap.outputs[0].data["text/plain"].startswith("runctl run 3f9a1c2b7d: live panel")
    header = panel.w["header"].get_state()["value"]
    assert (
        "3f9a1c2b7d" in header
        and "digits-mlp-3" in header
        and "#1e88e5" in header
        and "local" in header
    )
    panel.update(make_run(status="lost"), [])
    panel.redraw()
    assert "#ad1457" in panel.w["header"].value and ">lost<" in panel.w["header"].value


def test_cost_ticker_shows_dollars_and_rate_on_aws(shell, comms):
    panel = RunPanel(make_run(backend="aws", cost=1.234, rate=0.526), on_stop=lambda force: None)
    assert "$1.23 ($0.526/h)" in panel.header_html()
    local = RunPanel(make_run(), on_stop=lambda f: None).header_html()
    assert "local" in local


def test_live_header_names_the_local_backend_once(shell, comms):
    panel = RunPanel(make_run(params={"steps": 100}), on_stop=lambda f: None)
    panel.update(panel.run, [Events()("metric", step=10, total=100, values={"loss": 1.0})])
    text = re.sub(r"<[^>]+>", "", panel.header_html())
    assert "elapsed" in text and text.count("local") == 1, text


def test_metrics_of_different_scale_get_separate_subplots(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output():
        panel.show()
    panel.update(
        make_run(),
        [
            ev("metric", step=s, values={"loss": 0.5, "acc": 0.9, "lr": 1e-4, "tokens": 5e6})
            for s in range(3)
        ],
    )
    panel.redraw()
    fig = panel.w["figure"]
    axes = {t.name: t.yaxis for t in fig.data}
    assert axes["loss"] == axes["acc"]
    assert len({axes["loss"], axes["lr"], axes["tokens"]}) == 3
    assert fig.layout.yaxis3.domain is not None


def test_stop_button_is_graceful_then_asks_before_a_forced_kill(shell, comms):
    calls = []
    panel = RunPanel(make_run(), on_stop=calls.append, widgets=True)
    with capture_output():
        panel.show()
    click(panel.w["stop"])
    assert calls == [False]
    assert panel.w["confirm"].layout.display == "none"
    click(panel.w["stop"])
    assert calls == [False], "the second press must ask, not kill"
    assert panel.w["confirm"].layout.display == "flex"
    click(panel.w["confirm_yes"])
    assert calls == [False, True]
    assert panel.w["stop"].disabled


def test_stop_failure_is_shown_in_the_panel(shell, comms):
    def broken(force):
        raise RuntimeError("agent unreachable")

    panel = RunPanel(make_run(), on_stop=broken, widgets=True)
    with capture_output():
        panel.show()
    click(panel.w["stop"])
    assert "agent unreachable" in panel.w["message"].value


def test_smoothing_toggle_draws_the_smoothed_series(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output():
        panel.show()
    panel.update(
        make_run(), [ev("metric", step=s, values={"loss": float(s % 2)}) for s in range(50)]
    )
    panel.redraw()
    raw = list(panel.w["figure"].data[0].y)
    panel.w["smooth"].value = True
    smooth = list(panel.w["figure"].data[0].y)
    assert set(raw) == {0.0, 1.0}
    assert 0.2 < smooth[-1] < 0.8


def test_run_text_is_escaped_everywhere(shell, comms):
    ev = Events()
    run = make_run(
        name=EVIL,
        experiment=EVIL,
        params={EVIL: EVIL},
        error={"type": "X", "message": EVIL},
        status="failed",
    )
    panel = RunPanel(run, on_stop=lambda force: None, widgets=True, record_path="/tmp/<b>rec.ipynb")
    with capture_output():
        panel.show()
    panel.update(
        run,
        [
            ev("metric", step=1, values={EVIL: 1.0}),
            ev("log", stream="stderr", text=EVIL + "\n"),
            ev("warning", message=EVIL),
        ],
    )
    panel.redraw()
    texts = [panel.w["header"].value, panel.w["log"].value, panel.live_html(), panel.chart_html()]
    texts += [
        b.get("text/html", "") for b in static_outputs(run, {EVIL: [(1, 1.0)]}, "/tmp/<b>rec.ipynb")
    ]
    texts.append(static_summary(run, {EVIL: [(1, 1.0)]})["text/html"])
    for text in texts:
        assert "<script>" not in text and "</table>" not in text.replace(
            "</table></div>", ""
        ).replace("</tbody></table>", "")
    assert any("&lt;script&gt;" in t for t in texts)
    names = [t.name for t in panel.w["figure"].data]
    assert names and all("<script>" not in n for n in names)


def test_finish_closes_every_widget_and_leaves_the_static_summary(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output() as cap:
        panel.show()
        panel.update(
            make_run(),
            [
                ev("metric", step=s, values={"loss": 1 / (s + 1), "acc": 0.123456789})
                for s in range(100)
            ],
        )
        panel.redraw()
        done = make_run(status="succeeded", ended=time.time(), duration=10.0)
        panel.finish(
            done,
            {
                "loss": [(s, 1 / (s + 1)) for s in range(100)],
                "acc": [(s, 0.123456789) for s in range(100)],
            },
        )
    assert comms, "widgets opened comms"
    assert all(c._closed for c in comms), "a live widget (comm) was left open"
    updates = [o for o in cap.outputs if o.update]
    ids = {o.transient["display_id"] for o in cap.outputs[:2]}
    assert {o.transient["display_id"] for o in updates[-2:]} == ids
    summary, figure = updates[-2].data, updates[-1].data
    assert "0.123457" in summary["text/html"] and "succeeded" in summary["text/html"]
    assert "lr" in summary["text/html"] and "10.0s" in summary["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in summary
    assert PLOTLY in figure and "<svg" in figure["text/html"]
    json.dumps(figure[PLOTLY], allow_nan=False)


def test_html_fallback_updates_through_display_handles(shell, monkeypatch):
    import runctl_jupyter.display.run_panel as rp

    monkeypatch.setattr(rp, "kernel_has_widgets", lambda: True)  # a kernel, but live=False
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=False, redraw_interval=0)
    with capture_output() as cap:
        panel.show()
        panel.update(
            make_run(),
            [ev("metric", step=s, values={"loss": 1.0 / (s + 1)}, total=10) for s in range(5)],
        )
        panel.finish(make_run(status="stopped", reason="user", duration=3.0), {})
    first, updates = cap.outputs[:2], [o for o in cap.outputs if o.update]
    assert "text/html" in first[0].data and "widget-view" not in str(first[0].data)
    assert any("step 4 / 10" in o.data["text/html"] for o in updates)
    assert any("<polyline" in o.data.get("text/html", "") for o in updates)
    assert "stopped" in updates[-2].data["text/html"] and "user" in updates[-2].data["text/html"]


def test_outside_ipython_the_panel_prints_text(monkeypatch, capsys):
    import runctl_jupyter.display.run_panel as rp

    monkeypatch.setattr(rp, "_in_ipython", lambda: False)
    panel = RunPanel(make_run(), on_stop=lambda force: None)
    panel.show()
    panel.finish(make_run(status="succeeded", duration=2.0), {"loss": [(1, 0.25)]})
    out = capsys.readouterr().out
    assert "3f9a1c2b7d" in out and "loss: final 0.25" in out


def test_static_summary_keeps_four_significant_digits_and_small_figures():
    pts = [(s, 0.98765432 - s * 1e-7) for s in range(50_000)]
    bundle = static_summary(
        make_run(status="succeeded", duration=61.5), {"val_loss": pts, "acc": pts}
    )
    html = bundle["text/html"]
    assert "0.987654" in html and "1m01s" in html
    assert set(bundle) == {"text/html", "text/plain", PLOTLY}
    assert all(len(t["x"]) <= 1000 for t in bundle[PLOTLY]["data"])
    assert len(json.dumps(bundle)) < 150_000


def test_best_uses_min_for_losses_and_max_otherwise():
    metrics = {"val_loss": [(1, 0.5), (2, 0.2), (3, 0.3)], "acc": [(1, 0.5), (2, 0.9), (3, 0.8)]}
    text = static_summary(make_run(status="succeeded"), metrics)["text/plain"]
    assert "val_loss: final 0.3 best 0.2↓" in text
    assert "acc: final 0.8 best 0.9↑" in text


def test_static_summary_without_metrics_uses_final_metrics_of_the_row():
    bundle = static_summary(make_run(status="succeeded", final_metrics={"acc": 0.91234567}), {})
    assert "0.912346" in bundle["text/html"] and PLOTLY not in bundle


def test_only_the_bottom_subplot_keeps_the_step_axis_title(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True)
    with capture_output():
        panel.show()
    panel.update(make_run(), [ev("metric", step=0, values={"loss": 2.0})])
    panel.redraw()
    panel.update(make_run(), [ev("metric", step=1, values={"lr": 1e-4})])
    panel.redraw()
    layout = panel.w["figure"].layout
    assert layout.xaxis.title.text == "" and layout.xaxis2.title.text == "step"
    assert layout.xaxis.showticklabels is False


def test_html_outputs_are_not_typeset_as_latex():
    run = make_run(backend="aws", cost=1.0, rate=2.0, status="succeeded", name="$x$ and $y$")
    for bundle in static_outputs(run, {"loss": [(0, 1.0), (1, 0.5)]}):
        assert "tex2jax_ignore" in bundle["text/html"]


def test_record_link_is_relative_below_the_notebook_folder_else_the_path(tmp_path, monkeypatch):
    from runctl_jupyter.display.summary import record_link

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    inside = record_link(str(tmp_path / "runs" / "record.ipynb"), "3f9a1c2b7d")
    assert 'href="runs/record.ipynb"' in inside
    assert 'data-commandlinker-command="runctl:open-record"' in inside
    assert "&quot;run&quot;: &quot;3f9a1c2b7d&quot;" in inside
    outside = record_link("/elsewhere/<b>/record.ipynb")
    assert "href" not in outside and "<code" in outside and "&lt;b&gt;" in outside


def test_display_static_shows_the_table_and_the_figure_as_two_outputs(shell):
    from runctl_jupyter.display.summary import display_static

    with capture_output() as cap:
        display_static(make_run(status="succeeded", duration=3.0), {"loss": [(0, 1.0), (1, 0.5)]})
    assert len(cap.outputs) == 2
    assert (
        "runctl-summary" in cap.outputs[0].data["text/html"] and PLOTLY not in cap.outputs[0].data
    )
    assert PLOTLY in cap.outputs[1].data


def test_epochs_param_is_dropped_as_total_when_steps_count_something_else():
    ev = Events()
    panel = RunPanel(make_run(params={"epochs": 3}), on_stop=lambda force: None)
    panel.update(
        make_run(params={"epochs": 3}),
        [ev("metric", step=s, values={"loss": 1.0}) for s in range(10)],
    )
    assert panel.total is None and panel.progress_text() == "step 9"
    logged = RunPanel(make_run(params={"epochs": 3}), on_stop=lambda force: None)
    logged.update(
        make_run(), [ev("metric", step=s, values={"loss": 1.0}, total=100) for s in range(10)]
    )
    assert logged.total == 100


def test_terminal_ipython_gets_a_few_status_lines_not_a_chart(shell):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, redraw_interval=0)
    with capture_output() as cap:
        panel.show()
        for s in range(50):
            panel.update(make_run(), [ev("metric", step=s, values={"loss": 1.0}, total=50)])
    updates = [o for o in cap.outputs if o.update]
    assert panel.mode == "html" and len(updates) <= 2
    assert all("<polyline" not in o.data.get("text/html", "") for o in updates)
    assert cap.outputs[0].data["text/plain"].startswith("run 3f9a1c2b7d digits-mlp-3 · [running]")


# ---- Open record: a copy under the notebook's folder, made on click ---------------


@pytest.fixture
def outside_record(tmp_path, monkeypatch):
    """A record path in a run folder outside the notebook's working directory."""
    notebook_dir = tmp_path / "notebooks"
    notebook_dir.mkdir()
    monkeypatch.chdir(notebook_dir)
    run_dir = tmp_path / "home" / "runs" / "3f9a1c2b7d"
    run_dir.mkdir(parents=True)
    return run_dir / "record.ipynb"


COPY = "runctl-records/digits-mlp-3-3f9a1c2b7d.ipynb"


def finish_summary(panel) -> str:
    with capture_output() as cap:
        panel.finish(make_run(status="succeeded", ended=time.time(), duration=10.0), {})
    return [o for o in cap.outputs if o.update][-2].data["text/html"]


def test_open_record_copies_it_under_the_notebook_folder_and_links_the_copy(
    shell, comms, outside_record
):
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, record_path=str(outside_record))  # fmt: skip
    with capture_output():
        panel.show()
    button, note = panel.w["open_record"], panel.w["record"]
    assert button.layout.display != "none" and str(outside_record) not in note.value
    click(button)  # the run is still going: no record yet, copied when it ends
    assert (
        f"{COPY}</code> then" in note.value and not (outside_record.parent.parent / COPY).exists()
    )
    outside_record.write_text('{"cells": [], "v": 1}')
    click(button)
    copy = Path.cwd() / COPY
    assert copy.read_text() == '{"cells": [], "v": 1}'
    assert f'href="{COPY}"' in note.value and str(outside_record) not in note.value
    outside_record.write_text('{"cells": [], "v": 2}')  # a resumed run rewrites its record
    summary = finish_summary(panel)
    assert f'href="{COPY}"' in summary and copy.read_text() == '{"cells": [], "v": 2}'
    assert 'data-commandlinker-command="runctl:open-record"' in summary  # the lab's own way too


def test_open_record_clicked_during_the_run_copies_it_when_the_run_ends(
    shell, comms, outside_record
):
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, record_path=str(outside_record))  # fmt: skip
    with capture_output():
        panel.show()
    click(panel.w["open_record"])
    outside_record.write_text("{}")  # the agent writes it as the run ends
    summary = finish_summary(panel)
    assert f'href="{COPY}"' in summary and (Path.cwd() / COPY).read_text() == "{}"


def test_open_record_shows_the_absolute_path_when_no_copy_can_be_made(shell, comms, outside_record):
    (Path.cwd() / "runctl-records").write_text("a file where the folder would go")
    outside_record.write_text("{}")
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, record_path=str(outside_record))  # fmt: skip
    with capture_output():
        panel.show()
    click(panel.w["open_record"])
    note = panel.w["record"].value
    assert (
        "could not copy the record here" in note and "<code" in note and str(outside_record) in note
    )
    summary = finish_summary(panel)
    assert str(outside_record) in summary and "href" not in summary.split("record")[-1]


def test_without_a_click_no_copy_is_made_and_a_record_below_the_folder_is_linked_as_is(
    shell, comms, outside_record
):
    outside_record.write_text("{}")
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, record_path=str(outside_record))  # fmt: skip
    with capture_output():
        panel.show()
    assert str(outside_record) in finish_summary(panel)  # not copied: the path, as before
    assert not (Path.cwd() / "runctl-records").exists()
    inside = Path.cwd() / "runs" / "record.ipynb"
    inside.parent.mkdir()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, record_path=str(inside))
    with capture_output():
        panel.show()
    assert panel.w["open_record"].layout.display == "none"
    assert 'href="runs/record.ipynb"' in panel.w["record"].value


def test_the_summary_left_in_the_cell_keeps_the_last_lines_of_output(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(), on_stop=lambda force: None, widgets=True, log_tail_lines=3)
    with capture_output() as cap:
        panel.show()
        lines = [f"epoch {i} <b>x</b>" for i in range(5)]
        panel.update(make_run(), [ev("log", stream="stdout", text="\n".join(lines))])
        panel.update(make_run(), [ev("log", stream="stderr", text="warn")])
        panel.redraw()
        panel.finish(make_run(status="stopped", reason="user", ended=time.time(), duration=3.0))
    summary = [o for o in cap.outputs if o.update][-2].data
    html = summary["text/html"]
    assert "epoch 3 &lt;b&gt;x&lt;/b&gt;" in html and "epoch 4" in html and "! warn" in html
    assert "epoch 2" not in html  # the panel's tail only
    assert "%runctl logs 3f9a1c2b7d has all" in html and "stopped" in html
    assert "epoch 4" not in summary["text/plain"]  # plain text stays the summary


def test_the_widget_panel_shows_a_prewarm_read_as_its_phase_until_the_code_logs(shell, comms):
    ev = Events()
    panel = RunPanel(make_run(status="starting"), on_stop=lambda force: None, widgets=True)
    with capture_output():
        panel.show()
    total = 8 << 30
    panel.update(
        make_run(status="starting"),
        [ev("prewarm", state="reading", device=EVIL, bytes=3 << 30, total=total)],
    )
    panel.redraw()
    text = panel.w["progress_text"].get_state()["value"]
    assert text == "prewarming the data volume: 3.0 GiB of 8.0 GiB read (38%)"
    assert panel.w["progress"].value == 375 and panel.w["progress"].max == 1000
    assert panel.w["progress"].layout.visibility == "visible"
    panel.update(
        make_run(),
        [
            ev("prewarm", state="done", device=EVIL, bytes=total, total=total),
            ev("metric", step=1, values={"loss": 1.0}),
        ],
    )
    panel.redraw()
    assert panel.w["progress_text"].get_state()["value"] == "step 1 / 20 (5%)"
    assert "<script>" not in panel.live_html()
