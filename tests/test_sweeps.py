"""Sweeps: search spaces, checks before anything runs, and real sweeps of real trial processes."""

from __future__ import annotations

import math
import sys

import pytest

from runctl_jupyter.errors import MissingDependency, RunctlError, RunFailed
from runctl_jupyter.params.search import parse_space
from runctl_jupyter.params.values import BadParam
from runctl_jupyter.sweeps import space as S
from runctl_jupyter.sweeps.api import sweeps
from runctl_jupyter.sweeps.pruning import Pruner, value_at
from runctl_jupyter.sweeps.record import SweepState, all_sweeps, find_sweep, scheduler_alive

QUICK = "runctl.log(step=0, acc=lr * 10)\nrunctl.log(step=1, acc=lr * 20)\n"


@pytest.fixture(autouse=True)
def _no_scheduler_left(session):
    yield
    for state in all_sweeps(session.store.home):  # a failing test must not leave one running
        if scheduler_alive(state.dir):
            (state.dir / "control.json").write_text('{"stop": true}')


# ---------------------------------------------------------------- spaces


def test_a_grid_is_the_cartesian_product_first_key_outermost():
    plan = S.grid_plan({"lr": [0.1, 0.01], "bs": [32, 64, 128]})
    assert len(plan) == S.grid_size({"lr": [0.1, 0.01], "bs": [32, 64, 128]}) == 6
    assert plan[:4] == [
        {"lr": 0.1, "bs": 32},
        {"lr": 0.1, "bs": 64},
        {"lr": 0.1, "bs": 128},
        {"lr": 0.01, "bs": 32},
    ]


def test_random_samples_are_seeded_typed_and_inside_their_distributions():
    space = parse_space(
        [
            "lr=loguniform(1e-4,1e-1)",
            "layers=randint(2,4)",
            "dropout=uniform(0,0.5)",
            "width=quniform(32,256,32)",
            "act=choice(relu,tanh)",
        ]
    )
    plan = S.random_plan(space, {"bs": [32, 64]}, n=200, seed=7)
    assert plan == S.random_plan(space, {"bs": [32, 64]}, n=200, seed=7)
    assert plan != S.random_plan(space, {"bs": [32, 64]}, n=200, seed=8)
    assert all(1e-4 <= p["lr"] <= 1e-1 for p in plan)
    assert {p["layers"] for p in plan} == {2, 3, 4}
    assert all(0 <= p["dropout"] <= 0.5 for p in plan)
    assert all(p["width"] % 32 == 0 and isinstance(p["width"], int) for p in plan)
    assert {p["act"] for p in plan} == {"relu", "tanh"} and {p["bs"] for p in plan} == {32, 64}
    # loguniform: about as many draws below 1e-2.5 as above
    low = sum(p["lr"] < 10**-2.5 for p in plan)
    assert 60 < low < 140


def test_the_python_api_takes_distributions_as_text():
    assert S.normalize_space({"lr": "loguniform(1e-4, 1e-1)"}) == {
        "lr": {"dist": "loguniform", "args": [1e-4, 1e-1]}
    }
    with pytest.raises(BadParam, match="unknown distribution"):
        S.normalize_space({"lr": "gaussian(0,1)"})
    with pytest.raises(RunctlError, match="must be a distribution"):
        S.normalize_space({"lr": 3})


def test_optuna_distributions_map_and_normal_is_refused():
    dists = S.optuna_distributions(
        parse_space(["lr=loguniform(1e-4,1e-1)", "n=randint(1,5)", "act=choice(a,b)"]),
        {"bs": [32, 64]},
    )
    assert dists["lr"].log and (dists["n"].low, dists["n"].high) == (1, 5)
    assert dists["bs"].choices == (32, 64)
    with pytest.raises(RunctlError, match="not available with --search optuna"):
        S.optuna_distributions(parse_space(["x=normal(0,1)"]), {})


def test_missing_optuna_says_which_pip_install_fixes_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    with pytest.raises(MissingDependency, match=r"pip install 'runctl-jupyter\[optuna\]'"):
        S.optuna_distributions(parse_space(["lr=uniform(0,1)"]), {})


def test_median_pruning_compares_with_finished_trials_at_the_same_step():
    pruner = Pruner("median", "max", min_trials=3, warmup_steps=1)
    finished = {i: [(s, 0.1 * s) for s in range(10)] for i in range(3)}
    assert pruner.check(9, [(0, 0.0), (1, 0.1), (2, 0.2)], finished, {}) is None  # on par
    why = pruner.check(9, [(0, 0.0), (1, 0.01), (2, 0.02)], finished, {})
    assert why and "median" in why and "step 2" in why
    assert pruner.check(9, [(0, 0.0), (1, 0.0)], dict(list(finished.items())[:2]), {}) is None


def test_asha_keeps_the_top_third_at_each_rung_and_judges_once_per_rung():
    pruner = Pruner("asha", "min", eta=3, min_step=1)
    assert pruner.rungs(10) == [1, 3, 9]
    others = {i: [(0, 1.0), (1, 0.5 + i * 0.1), (3, 0.4)] for i in range(5)}
    assert pruner.check(0, others[0], {}, others) is None  # the best at rung 1
    bad = [(0, 1.0), (1, 0.95)]
    assert "rung step 1" in pruner.check(7, bad, {}, others)
    assert value_at([(0, 3.0), (2, 1.0), (5, 0.5)], 4, "min") == 1.0


# ---------------------------------------------------------------- checked before anything runs


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"grid": {"lr": []}}, "has no values"),
        ({"grid": {}}, "nothing to sweep"),
        (
            {"grid": {"lr": [1]}, "space": {"lr": "uniform(0,1)"}, "search": "random", "trials": 2},
            "both in --grid and --space",
        ),
        ({"grid": {"lr": [1, 2]}, "params": {"lr": 3}}, "both fixed"),
        ({"space": {"lr": "uniform(0,1)"}}, "how many trials"),
        ({"grid": {"lr": [1, 2]}, "prune": "median"}, "add --objective"),
        ({"grid": {"lr": [1, 2]}, "early_stop": "patience=3"}, "--early-stop needs a metric"),
        ({"grid": {"lr": [1, 2]}, "objective": "acc"}, "METRIC:max or METRIC:min"),
    ],
)
def test_bad_sweeps_are_refused_before_anything_is_written(session, kwargs, message):
    with pytest.raises(RunctlError, match=message):
        session.sweep(code=QUICK, detach=True, **kwargs)
    assert all_sweeps(session.store.home) == [] and session.store.list_runs() == []


def test_a_huge_grid_asks_for_yes_and_says_how_big(session):
    grid = {"a": list(range(100)), "b": list(range(100))}
    with pytest.raises(RunctlError, match=r"10,000 \(the grid 100 x 100\) trials.*--yes"):
        session.sweep(code=QUICK, grid=grid, detach=True)
    assert all_sweeps(session.store.home) == []


def test_a_missing_script_is_an_error_naming_it(session):
    with pytest.raises(RunctlError, match="no file 'nope.py'"):
        session.sweep(target="nope.py", grid={"lr": [1]}, detach=True)


# ---------------------------------------------------------------- real sweeps


def test_a_grid_sweep_runs_every_trial_as_a_run_with_at_most_max_parallel_at_once(session):
    code = (
        "import time\nfor i in range(3):\n    runctl.log(step=i, acc=lr * i)\n    time.sleep(0.1)\n"
    )
    sw = session.sweep(
        code=code,
        grid={"lr": [0.1, 0.2, 0.3, 0.4]},
        params={"fixed": "x"},
        objective="acc:max",
        max_parallel=2,
        name="grid4",
    )
    state = sw.state
    assert state.status == "succeeded" and state.counts()["done"] == 4
    rows = session.store.list_runs(sweep_id=sw.id, limit=None)
    assert len(rows) == 4 and {r["experiment"] for r in rows} == {"grid4"}
    assert sorted(r["name"] for r in rows) == ["grid4-0", "grid4-1", "grid4-2", "grid4-3"]
    assert sorted(r["params"]["lr"] for r in rows) == [0.1, 0.2, 0.3, 0.4]
    assert {r["params"]["fixed"] for r in rows} == {"x"}
    # never more than 2 at once: at each start, count the runs alive
    spans = [(r["started"], r["started"] + r["duration"]) for r in rows]
    for start, _ in spans:
        assert sum(1 for s, e in spans if s <= start < e) <= 2
    best = sw.best
    assert best["params"] == {"lr": 0.4} and math.isclose(best["objective"], 0.8)
    assert sw.run_ids() == [t["run_id"] for t in state.trials]
    listing = str(sweeps(session))
    assert sw.id in listing and "grid4" in listing and "acc=0.8" in listing and "lr=0.4" in listing
    assert find_sweep(session.store.home, "grid4") == sw.dir
    assert find_sweep(session.store.home, sw.id[:4]) == sw.dir


def test_a_crashing_trial_is_counted_and_the_sweep_goes_on(session):
    code = "if lr == 2:\n    raise ValueError('bad lr')\nrunctl.log(step=0, acc=lr)\n"
    sw = session.sweep(code=code, grid={"lr": [1, 2, 3]}, objective="acc:max")
    state = sw.state
    assert state.status == "succeeded"
    assert state.counts() == {
        "done": 2,
        "running": 0,
        "queued": 0,
        "failed": 1,
        "stopped": 0,
        "pruned": 0,
    }
    assert sw.best["objective"] == 3


def test_stop_on_failure_stops_the_sweep_and_raises_with_the_trials_traceback(session):
    code = "def boom():\n    raise ValueError('bad lr')\nif lr == 1:\n    boom()\nrunctl.log(step=0, acc=lr)\n"
    with pytest.raises(RunFailed) as info:
        session.sweep(code=code, grid={"lr": [1, 2, 3]}, stop_on_failure=True, name="sof")
    assert "stop-on-failure" in str(info.value) and "ValueError: bad lr" in str(info.value)
    assert "in boom" in "\n".join(info.value._render_traceback_())
    state = SweepState(find_sweep(session.store.home, "sof"))
    assert state.status == "failed" and state.reason == "stop-on-failure"
    assert state.counts()["queued"] == 2  # never launched, left for --resume


def test_max_failures_tolerates_k_failures_and_stops_at_the_next(session):
    sw = session.sweep(
        code="raise RuntimeError('always')\n",
        grid={"lr": [1, 2, 3, 4, 5]},
        max_failures=1,
        detach=True,
    )
    with pytest.raises(RunFailed, match="max-failures"):
        sw.wait()
    counts = sw.state.counts()
    assert counts["failed"] == 2 and counts["queued"] == 3


def test_an_objective_no_trial_logs_is_a_warning_not_a_crash(session):
    sw = session.sweep(
        code="runctl.log(step=0, loss=lr)\n", grid={"lr": [1, 2]}, objective="val_acc:max"
    )
    state = sw.state
    assert state.status == "succeeded" and sw.best is None
    assert any("logged no 'val_acc'" in w and "loss" in w for w in state.warnings)
    assert any("no trial logged the objective" in w for w in state.warnings)


def test_early_stop_on_each_trial_counts_as_done_with_its_objective(session):
    code = (
        "import time\nfor step in range(100):\n"
        "    runctl.log(step=step, val_loss=max(1 - step * lr, 0.5))\n"
        "    if runctl.should_stop:\n        break\n    time.sleep(0.02)\n"
    )
    sw = session.sweep(
        code=code,
        grid={"lr": [0.1, 0.25]},
        objective="val_loss:min",
        early_stop="patience=3",
        max_parallel=2,
    )
    trials = sw.trials()
    assert [t["reason"] for t in trials] == ["early-stop", "early-stop"]
    assert sw.state.counts()["done"] == 2 and sw.best["objective"] == 0.5
    assert all(t["step"] < 50 for t in trials)  # of 100: stopped soon after step 8 or 5


def test_median_pruning_stops_a_lagging_trial(session):
    code = (
        "import time\nfor step in range(12 if quality else 200):\n"
        "    runctl.log(step=step, acc=quality * step)\n"
        "    time.sleep(0.01 if quality else 0.03)\n"
    )
    sw = session.sweep(
        code=code,
        grid={"quality": [1.0, 1.0, 1.0, 0.0]},
        objective="acc:max",
        prune="median",
    )
    trials = sw.trials()
    assert [t["group"] for t in trials] == ["done", "done", "done", "pruned"]
    assert trials[3]["reason"] == "pruned" and trials[3]["step"] < 100
    assert any("trial 3 pruned" in w for w in sw.state.warnings)


def test_optuna_search_suggests_trials_in_the_space_and_finds_the_best(session):
    code = "runctl.log(step=0, score=-(x - 0.3) ** 2)\n"
    sw = session.sweep(
        code=code,
        space={"x": "uniform(0,1)"},
        search="optuna",
        trials=5,
        seed=3,
        objective="score:max",
        max_parallel=2,
    )
    state = sw.state
    assert len(state.trials) == 5 and state.counts()["done"] == 5
    assert all(0 <= t["params"]["x"] <= 1 for t in state.trials)
    assert sw.best["objective"] == max(t["objective"] for t in state.trials)


def test_random_search_runs_its_seeded_plan(session):
    sw = session.sweep(
        code="runctl.log(step=0, acc=lr)\n",
        space={"lr": "loguniform(1e-3,1)"},
        trials=3,
        seed=11,
        objective="acc:max",
        max_parallel=3,
    )
    plan = S.random_plan(S.normalize_space({"lr": "loguniform(1e-3,1)"}), {}, 3, 11)
    assert [t["params"] for t in sw.state.trials] == plan


def test_a_script_sweep_passes_params_and_script_args(session, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\nfrom runctl_jupyter.runtime import runctl\n"
        "runctl.log(step=0, acc=runctl.params['lr'] * int(sys.argv[1]))\n"
    )
    sw = session.sweep(target=str(script), args=("10",), grid={"lr": [1, 2]}, objective="acc:max")
    assert sorted(t["objective"] for t in sw.state.trials) == [10, 20]


def test_the_sweep_is_never_confused_with_a_run(session):
    sw = session.sweep(code=QUICK, grid={"lr": [1]}, name="one")
    run_id = sw.run_ids()[0]
    assert sw.id.startswith("s") and "s" not in run_id  # run ids are hex: never a sweep id
    assert find_sweep(session.store.home, run_id) is None


def test_show_tells_a_sweep_from_a_run(session):
    from runctl_jupyter.sweeps.api import lookup, show

    sw = session.sweep(code=QUICK, grid={"lr": [1, 2]}, name="named", objective="acc:max")
    run_id = sw.run_ids()[0]
    assert lookup(session, sw.id).id == sw.id and lookup(session, sw.id[:4]).id == sw.id
    assert lookup(session, "named").id == sw.id
    assert lookup(session, run_id) is None and lookup(session, "named-0") is None  # runs
    assert sw.objective == "acc:max"
    details = show(session, "named")
    text = str(details)
    assert (
        sw.id in text and "acc=40 (trial 1" in text and "best best" not in text and run_id in text
    )
    assert "application/vnd.plotly.v1+json" in details._repr_mimebundle_()


def test_optuna_search_prunes_with_optunas_pruner_fed_the_trials_values(session):
    # Weak trials (small x) run long enough for several prune checks even on a loaded
    # machine; strong ones end fast, so the median of completed trials comes early.
    code = (
        "import time\nfor step in range(30):\n    runctl.log(step=step, acc=x * step)\n"
        "    time.sleep(0.1 if x < 0.4 else 0.02)\n"
    )
    sw = session.sweep(
        code=code,
        space={"x": "uniform(0,1)"},
        search="optuna",
        trials=8,
        seed=1,
        objective="acc:max",
        prune="median",
        max_parallel=2,
    )
    state = sw.state
    pruned = [t for t in state.trials if t["reason"] == "pruned"]
    assert pruned and state.counts()["pruned"] == len(pruned)
    warned = [w for w in state.warnings if "pruned by optuna" in w]
    for t in pruned:  # once each (a trial may also end on its own before the stop arrives)
        assert sum(w.startswith(f"trial {t['index']} pruned") for w in warned) == 1
    assert sw.best["params"]["x"] == max(
        t["params"]["x"] for t in state.trials if t["status"] == "succeeded"
    )
