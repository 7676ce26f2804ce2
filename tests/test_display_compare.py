"""ComparePanel over a real Store of run folders written with the agent's EventWriter."""

from __future__ import annotations

import json
import time

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from runctl_jupyter.display.compare_panel import ComparePanel
from runctl_jupyter.events import EventWriter
from runctl_jupyter.store import Store

PLOTLY = "application/vnd.plotly.v1+json"
EVIL = "<script>alert(1)</script></table>"


def write_run(
    store: Store,
    run_id: str,
    params: dict,
    curve,
    steps: int = 50,
    *,
    name=None,
    dollars=None,
    metrics=("loss", "val_acc"),
    t0: float | None = None,
) -> None:
    t0 = time.time() - 100 if t0 is None else t0
    spec = {
        "format": 1,
        "run_id": run_id,
        "name": name or f"run-{run_id}",
        "experiment": "digits",
        "project": "default",
        "kind": "cell",
        "params": params,
        "backend": "local",
        "created": t0,
    }
    run_dir = store.runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    store.add_run(spec)  # as the launcher does
    w = EventWriter(run_dir, 1)
    w.write("status", t=t0, status="starting", format=1)
    w.write("status", t=t0, status="running")
    for s in range(steps):
        values = {m: curve(m, s) for m in metrics}
        w.write("metric", t=t0 + s * 0.01, step=s, values=values, total=steps)
    if dollars is not None:
        w.write("cost", t=t0 + 1, dollars=dollars, rate=1.0)
    w.write(
        "exit",
        t=t0 + 2,
        status="succeeded",
        reason=None,
        exit_code=0,
        error=None,
        duration=2.0 + len(run_id) % 3,
    )
    w.close()


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "home")
    for i, lr in enumerate((0.1, 0.01, 0.001, 0.0001)):
        write_run(
            store,
            f"r{i}",
            {"lr": lr, "batch": 32, "opt": "sgd" if i % 2 else "adam"},
            lambda m, s, i=i: (
                (1.0 / (s + 1) + 0.01 * i)
                if m == "loss"
                else min(0.99, 0.5 + 0.01 * s * (i + 1) / 4)
            ),
        )
    store.refresh()
    return store


IDS = ["r0", "r1", "r2", "r3"]


def test_table_shows_only_params_that_differ_until_all_params(store):
    panel = ComparePanel(store, IDS)
    html = panel.table_html()
    assert ">lr" in html and ">opt" in html and ">batch" not in html
    panel.all_params = True
    assert ">batch" in panel.table_html()


def test_table_has_final_and_best_duration_cost_and_status(store):
    panel = ComparePanel(store, IDS, metric="val_acc")
    rows = {r["run"]: r for r in panel.table()}
    assert rows["r3"]["val_acc_best"] == pytest.approx(0.99)
    assert rows["r0"]["loss_best"] == pytest.approx(1 / 50)
    assert rows["r0"]["status"] == "succeeded" and rows["r0"]["duration"] is not None
    html = panel.table_html()
    assert (
        "val_acc_final" in html and "loss_best" in html and "succeeded" in html and "local" in html
    )


def test_terminal_table_has_the_html_tables_columns_aligned(store):
    lines = str(ComparePanel(store, IDS, metric="val_acc")).splitlines()
    header = lines[0].split()
    assert header[:5] == ["run", "name", "status", "lr", "opt"] and "batch" not in header
    assert header[-2:] == ["duration", "cost"] and "val_acc_best" in header
    at = lines[0].index("val_acc_best")
    assert all(line[at - 2 : at] == "  " and line[at] != " " for line in lines[1:])
    assert len(lines) == 1 + len(IDS)


def test_table_sorts_by_the_chosen_column(store):
    panel = ComparePanel(store, IDS, metric="val_acc")
    assert [r["run"] for r in panel.table()][0] == "r3"  # best accuracy first
    panel.sort_by, panel.descending = "loss_best", False
    assert [r["run"] for r in panel.table()] == ["r0", "r1", "r2", "r3"]
    panel.sort_by, panel.descending = "name", True
    assert [r["run"] for r in panel.table()] == ["r3", "r2", "r1", "r0"]


def test_overlaid_curves_one_trace_per_run_for_the_chosen_metric(store):
    panel = ComparePanel(store, IDS, metric="loss")
    fig = panel.curves_bundle()[PLOTLY]
    assert [t["name"] for t in fig["data"]] == ["run-r0", "run-r1", "run-r2", "run-r3"]
    assert fig["data"][0]["y"][0] == pytest.approx(1.0)
    json.dumps(fig, allow_nan=False)


def test_cost_vs_objective_marks_the_pareto_front(tmp_path):
    store = Store(tmp_path / "home")
    # (dollars, final accuracy): c is dominated by b (cheaper and better)
    for rid, dollars, acc in (
        ("a", 1.0, 0.80),
        ("b", 2.0, 0.90),
        ("c", 3.0, 0.85),
        ("d", 4.0, 0.95),
    ):
        write_run(
            store,
            rid,
            {"lr": dollars},
            lambda m, s, acc=acc: acc,
            steps=3,
            metrics=("acc",),
            dollars=dollars,
        )
    store.refresh()
    panel = ComparePanel(store, ["a", "b", "c", "d"], metric="acc")
    bundle = panel.scatter_bundle()
    front = bundle[PLOTLY]["data"][1]
    assert front["x"] == [1.0, 2.0, 4.0] and front["y"] == [0.80, 0.90, 0.95]
    assert bundle[PLOTLY]["layout"]["xaxis"]["title"]["text"] == "cost ($)"
    stars = {r["run"]: r["pareto"] for r in panel.table()}
    assert stars == {"a": True, "b": True, "c": False, "d": True}


def test_local_runs_use_compute_time_as_the_cost(store):
    bundle = ComparePanel(store, IDS, metric="val_acc").scatter_bundle()
    assert bundle[PLOTLY]["layout"]["xaxis"]["title"]["text"] == "duration (s)"


def test_parallel_coordinates_only_for_three_runs_or_more(store):
    assert ComparePanel(store, ["r0", "r1"], metric="val_acc").parcoords_bundle() is None
    fig = ComparePanel(store, IDS, metric="val_acc").parcoords_bundle()[PLOTLY]
    labels = [d["label"] for d in fig["data"][0]["dimensions"]]
    assert labels == ["log10 lr", "opt", "val_acc_best"]
    assert fig["data"][0]["dimensions"][1]["ticktext"] == ["adam", "sgd"]


def test_run_text_is_escaped(tmp_path):
    store = Store(tmp_path / "home")
    for rid in ("a", "b", "c"):
        write_run(
            store,
            rid,
            {EVIL: rid, "k": EVIL + rid},
            lambda m, s: 0.5,
            steps=3,
            name=EVIL,
            metrics=(EVIL,),
        )
    store.refresh()
    panel = ComparePanel(store, ["a", "b", "c"])
    for bundle in panel.outputs():
        text = json.dumps(
            {k: v for k, v in bundle.items() if k != "text/plain"}
        )  # plain text is never HTML
        assert "<script>" not in text and "</table>" not in text.replace("</tbody></table>", "")
    assert "&lt;script&gt;" in panel.table_html()


def test_show_leaves_static_outputs_and_controls_redraw_them(store, comms):
    InteractiveShell.instance()
    panel = ComparePanel(store, IDS, metric="val_acc", widgets=True)
    with capture_output() as cap:
        panel.show()
        panel.w["metric"].value = "loss"
        panel.w["all_params"].value = True
    shown = [o for o in cap.outputs if not o.update]
    assert "application/vnd.jupyter.widget-view+json" in shown[0].data
    assert shown[0].data["text/plain"] == "", "no widget repr left in a saved notebook"
    static = shown[1:]
    assert len(static) == 4 and all("display_id" in o.transient for o in static)
    assert PLOTLY in static[1].data and PLOTLY in static[2].data and PLOTLY in static[3].data
    updates = [o for o in cap.outputs if o.update]
    figures = sum(PLOTLY in o.data for o in updates)
    assert len(updates) == 2 * 4 + figures, "one redraw of every output per control change"
    assert all(
        o.data == {"text/plain": ""} for o, nxt in zip(updates, updates[1:]) if PLOTLY in nxt.data
    )
    last_table = next(
        o.data["text/html"]
        for o in reversed(updates)
        if "runctl-compare" in o.data.get("text/html", "")
    )
    assert "loss_best ↑" in last_table and ">batch" in last_table
    titles = [o.data[PLOTLY]["layout"]["title"]["text"] for o in updates if PLOTLY in o.data]
    assert titles[-3:] == ["loss", "best loss per second", "params → best loss"]
    panel.close()
    assert all(c._closed for c in comms if c.target_name == "jupyter.widget")


def test_hundred_runs_of_thousand_steps_build_in_under_a_second(tmp_path):
    store = Store(tmp_path / "home")
    for i in range(100):
        write_run(
            store,
            f"x{i:03d}",
            {"lr": 10 ** (-1 - i % 4), "seed": i},
            lambda m, s, i=i: 1 / (s + 1 + i),
            steps=1000,
            metrics=("loss", "acc", "lr"),
        )
    store.refresh()
    ids = [f"x{i:03d}" for i in range(100)]
    for rid in ids:  # index the folders first: we time the panel, not the indexing
        store.get(rid)
    start = time.thread_time()  # this thread's CPU: a busy neighbour on 2 cores does not count
    panel = ComparePanel(store, ids, metric="loss")
    outputs = panel.outputs()
    elapsed = time.thread_time() - start
    assert elapsed < 1.0, f"{elapsed:.2f}s"
    assert len(outputs[1][PLOTLY]["data"]) == 100
    assert sum(len(t["x"]) for t in outputs[1][PLOTLY]["data"]) <= 20_000


def test_compare_selects_runs_by_ref_or_experiment(store):
    from runctl_jupyter.display.compare_panel import compare
    from runctl_jupyter.errors import RunctlError

    assert compare(store, ["run-r1", "r2"]).run_ids == ["r1", "r2"]  # a name and an id
    assert compare(store, experiment="digits", metric="loss").run_ids == ["r0", "r1", "r2", "r3"]
    with pytest.raises(RunctlError, match="no runs to compare in experiment 'nope'"):
        compare(store, experiment="nope")


def test_displaying_the_panel_shows_every_output(store, comms):
    from IPython.display import display

    InteractiveShell.instance()
    with capture_output() as cap:
        display(ComparePanel(store, IDS, metric="val_acc", widgets=False))
    assert len(cap.outputs) == 4 and "val_acc_best" in cap.outputs[0].data["text/html"]
    assert "val_acc_best" in str(ComparePanel(store, IDS, metric="val_acc"))


def test_table_as_a_frame_needs_pandas(store):
    from runctl_jupyter.errors import MissingDependency

    panel = ComparePanel(store, IDS, metric="val_acc")
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependency, match="pip install pandas"):
            panel.table(as_frame=True)
    else:
        assert list(panel.table(as_frame=True).index)[0] == "r3"


def test_sorting_by_a_param_column_is_offered(store, comms):
    InteractiveShell.instance()
    panel = ComparePanel(store, IDS, metric="val_acc", widgets=True)
    with capture_output():
        panel.show()
        assert "lr" in panel.w["sort"].options
        panel.w["descending"].value = False
        panel.w["sort"].value = "lr"
    assert [r["run"] for r in panel.table()] == ["r3", "r2", "r1", "r0"]


def test_runs_with_the_same_name_are_told_apart_in_the_legends(tmp_path):
    store = Store(tmp_path / "home")
    for rid, lr in (("a1", 0.5), ("b2", 0.2), ("c3", 0.1)):  # a rerun keeps the name
        name = "other" if rid == "c3" else "quickstart"
        write_run(store, rid, {"lr": lr}, lambda m, s, lr=lr: lr / (s + 1), name=name)
    store.refresh()
    panel = ComparePanel(store, ["a1", "b2", "c3"], metric="loss")
    names = [trace["name"] for trace in panel.curves_bundle()[PLOTLY]["data"]]
    assert sorted(names) == ["other", "quickstart (a1)", "quickstart (b2)"]
    scatter = panel.scatter_bundle()[PLOTLY]["data"][0]
    assert sorted(scatter["text"]) == ["other", "quickstart (a1)", "quickstart (b2)"]


def test_the_order_toggle_says_the_order_shown(store, comms):
    InteractiveShell.instance()
    panel = ComparePanel(store, IDS, metric="loss", widgets=True)
    with capture_output():
        panel.show()
        toggle = panel.w["descending"]
        assert (toggle.value, toggle.description) == (False, "ascending")  # lowest loss first
        toggle.value = True
        assert toggle.description == "descending" and toggle.icon == "sort-amount-desc"
        panel.w["metric"].value = "val_acc"  # highest accuracy first
        assert (toggle.value, toggle.description) == (True, "descending")
