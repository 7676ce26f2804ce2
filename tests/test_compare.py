"""compare.py: the plain comparison table, params that differ, best values, Pareto front."""

from __future__ import annotations

import pytest

from runctl_jupyter.compare import (
    compare_table,
    cost_axis,
    differing_params,
    metric_names,
    pareto_front,
    parse_objective,
)
from runctl_jupyter.errors import MissingDependency


def run(rid, params, cost=0.0, duration=10.0, status="succeeded", **kw):
    return {
        "id": rid,
        "name": f"n-{rid}",
        "experiment": "e",
        "status": status,
        "params": params,
        "cost": cost,
        "duration": duration,
        "backend": "aws",
        **kw,
    }


RUNS = [
    run("a", {"lr": 0.1, "batch": 32, "seed": 0}, cost=1.0),
    run("b", {"lr": 0.01, "batch": 32, "seed": 0}, cost=2.0),
    run("c", {"lr": 0.001, "batch": 32, "seed": 0, "warmup": 5}, cost=0.5),
]
SUMMARIES = {
    "a": {
        "val_acc": {"last": 0.90, "min": 0.5, "max": 0.92, "last_step": 9, "count": 10},
        "loss": {"last": 0.30, "min": 0.25, "max": 2.0, "last_step": 9, "count": 10},
    },
    "b": {
        "val_acc": {"last": 0.95, "min": 0.5, "max": 0.95, "last_step": 9, "count": 10},
        "loss": {"last": 0.20, "min": 0.20, "max": 2.0, "last_step": 9, "count": 10},
    },
    "c": {"val_acc": {"last": 0.80, "min": 0.4, "max": 0.81, "last_step": 9, "count": 10}},
}


def test_only_params_that_differ_are_columns():
    assert differing_params(RUNS) == ["lr", "warmup"]
    row = compare_table(RUNS, SUMMARIES)[0]
    assert "lr" in row and "warmup" in row and "batch" not in row and "seed" not in row


def test_all_params_shows_the_equal_ones_too():
    row = compare_table(RUNS, SUMMARIES, all_params=True)[0]
    assert {"lr", "batch", "seed", "warmup"} <= set(row)
    assert row["warmup"] is None


def test_final_and_best_per_metric_follow_the_direction():
    rows = {r["run"]: r for r in compare_table(RUNS, SUMMARIES)}
    assert rows["a"]["val_acc_final"] == 0.90 and rows["a"]["val_acc_best"] == 0.92
    assert rows["a"]["loss_final"] == 0.30 and rows["a"]["loss_best"] == 0.25
    assert rows["c"]["loss_final"] is None and rows["c"]["loss_best"] is None
    flipped = {r["run"]: r for r in compare_table(RUNS, SUMMARIES, directions={"loss": "max"})}
    assert flipped["a"]["loss_best"] == 2.0


def test_rows_carry_duration_cost_and_status():
    row = compare_table(RUNS, SUMMARIES)[1]
    assert (row["run"], row["status"], row["cost"], row["duration"]) == (
        "b",
        "succeeded",
        2.0,
        10.0,
    )


def test_metrics_most_common_first():
    assert metric_names(RUNS, SUMMARIES) == ["val_acc", "loss"]


def test_without_summaries_the_final_metrics_of_the_rows_are_used():
    rows = [
        run("x", {"lr": 1}, final_metrics={"acc": 0.7}),
        run("y", {"lr": 2}, final_metrics='{"acc": 0.8}'),
    ]
    table = compare_table(rows)
    assert [r["acc_final"] for r in table] == [0.7, 0.8]


def test_a_param_named_like_a_column_is_prefixed():
    rows = [run("x", {"cost": 1}), run("y", {"cost": 2})]
    table = compare_table(rows)
    assert table[0]["param_cost"] == 1 and table[0]["cost"] == 0.0


def test_pareto_front_keeps_runs_no_other_beats_on_cost_and_objective():
    table = compare_table(RUNS, SUMMARIES)
    # c: cheapest; a: pricier but better than c; b: priciest and best -> all three on the front
    assert pareto_front(table, "val_acc_best") == ["c", "a", "b"]
    dominated = table + [{"run": "d", "cost": 3.0, "val_acc_best": 0.93}]
    assert "d" not in pareto_front(dominated, "val_acc_best")
    assert pareto_front(table, "loss_best", maximize=False) == ["a", "b"]


def test_cost_axis_falls_back_to_duration_for_free_runs():
    assert cost_axis([{"cost": 0.0}, {"cost": None}]) == "duration"
    assert cost_axis([{"cost": 0.0}, {"cost": 0.3}]) == "cost"


def test_parse_objective():
    assert parse_objective("val_acc:max") == ("val_acc", "max")
    assert parse_objective("loss") == ("loss", None)
    with pytest.raises(ValueError, match="min or max"):
        parse_objective("loss:down")


def test_as_frame_needs_pandas_or_says_how_to_get_it():
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependency, match="pip install pandas"):
            compare_table(RUNS, SUMMARIES, as_frame=True)
    else:
        frame = compare_table(RUNS, SUMMARIES, as_frame=True)
        assert list(frame.index) == ["a", "b", "c"] and frame.loc["b", "val_acc_best"] == 0.95
