"""Suggestions before a launch (issue 17): each rule on a real estimate (prices from
today's cache, no AWS reachable), shown once per notebook, silenced by config."""

from __future__ import annotations

import pytest
from test_costs import seed_prices

from runctl_jupyter.config import Runctl
from runctl_jupyter.cost.estimate import before_launch
from runctl_jupyter.cost.suggestions import Launch, is_gpu_type
from runctl_jupyter.session import Session

TORCH = "import torch\nmodel = torch.nn.Linear(4, 1)\n"


@pytest.fixture()
def session(tmp_path, no_aws, monkeypatch):
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "nb.ipynb"))
    monkeypatch.chdir(tmp_path)
    s = Session(config=Runctl(home=str(tmp_path / "home"), confirm_above=1000.0))
    seed_prices(
        s.store.home,
        od__us_east_1__g5_xlarge=1.006,
        spot__us_east_1__g5_xlarge=0.40,
        od__us_east_1__c5_xlarge=0.17,
        spot__us_east_1__c5_xlarge=0.07,
    )
    return s


def said(session, capsys, options, hours=None, code=TORCH, trials=1, parallel=1, **launch):
    capsys.readouterr()
    before_launch(
        session,
        launch.pop("backend", "aws"),
        dict(options),
        hours,
        None,
        trials=trials,
        parallel=parallel,
        limit=launch.pop("limit", None),
        launch=Launch(None, None, code=code, workdir=session.store.home.parent, **launch),
    )
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("suggestion")]


def test_on_demand_where_spot_saves_more_than_a_dollar_suggests_spot_once(session, capsys):
    on_demand = {"instance_type": "g5.xlarge", "spot": False}
    assert said(session, capsys, on_demand, hours=1) == []  # saves $0.61: not worth a word
    lines = said(session, capsys, on_demand, hours=5)
    assert len(lines) == 1 and "spot would save about $3.03" in lines[0], lines
    assert "drop --on-demand" in lines[0] and "quiet_suggestions = ['spot-savings']" in lines[0]
    assert said(session, capsys, on_demand, hours=5) == []  # once per notebook


def test_a_long_spot_run_that_never_checkpoints_is_told_to(session, capsys):
    spot = {"instance_type": "g5.xlarge"}
    assert said(session, capsys, spot, hours=0.1) == []  # 6 minutes: a restart is cheap
    assert (
        said(session, capsys, spot, hours=2, code=TORCH + "runctl.save_checkpoint(model)\n") == []
    )
    assert said(session, capsys, {**spot, "checkpoint_every": 100}, hours=2) == []
    lines = said(session, capsys, spot, hours=2)
    assert len(lines) == 1 and "never saves a checkpoint" in lines[0], lines
    assert "120 minutes" in lines[0]


def test_a_gpu_type_for_code_that_imports_no_gpu_library(session, capsys, tmp_path):
    gpu = {"instance_type": "g5.xlarge"}
    assert said(session, capsys, gpu, code=TORCH) == []
    assert said(session, capsys, gpu, code="from jax import numpy as jnp\n") == []
    # a local module may import torch itself: no guess
    (tmp_path / "mymodel.py").write_text("import torch\n")
    assert said(session, capsys, gpu, code="import mymodel\n") == []
    assert said(session, capsys, {"instance_type": "c5.xlarge"}, code="import numpy\n") == []
    lines = said(session, capsys, gpu, code="import numpy as np\nprint(np.ones(3))\n")
    assert len(lines) == 1 and "g5.xlarge is a GPU type" in lines[0], lines
    assert [is_gpu_type(t) for t in ("g4dn.xlarge", "p4d.24xlarge", "c7g.large", "m5.large")] == [
        True,
        True,
        False,
        False,
    ]


def test_a_sweep_whose_parallel_trials_outrun_the_budget_left(session, capsys):
    spot = {"instance_type": "g5.xlarge"}
    kw = {"trials": 10, "grid": True, "max_parallel": 8}
    assert said(session, capsys, spot, parallel=2, limit=2.0, **kw) == []  # $0.80/h
    lines = said(session, capsys, spot, parallel=8, limit=2.0, **kw)
    assert len(lines) == 1 and "8 trials at once cost $3.2" in lines[0], lines
    assert "lower --max-parallel" in lines[0]


def test_a_big_grid_without_max_parallel_even_locally(session, capsys):
    assert said(session, capsys, {}, backend="local", trials=150, grid=True, max_parallel=4) == []
    assert said(session, capsys, {}, backend="local", trials=80, grid=True) == []
    lines = said(session, capsys, {}, backend="local", trials=150, grid=True)
    assert len(lines) == 1 and "this grid has 150 trials and no --max-parallel" in lines[0]


def test_suggestions_are_silenced_all_or_by_rule(session, capsys):
    session.config.quiet_suggestions = ["gpu-unused"]
    assert said(session, capsys, {"instance_type": "g5.xlarge"}, code="import numpy\n") == []
    session.config.suggestions = False
    on_demand = {"instance_type": "g5.xlarge", "spot": False}
    assert said(session, capsys, on_demand, hours=5) == []


def test_each_notebook_is_told_once(session, capsys, monkeypatch, tmp_path):
    on_demand = {"instance_type": "g5.xlarge", "spot": False}
    assert len(said(session, capsys, on_demand, hours=5)) == 1
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "other.ipynb"))
    assert len(said(session, capsys, on_demand, hours=5)) == 1
