"""Cost before launch (estimate, --yes), after (the success line, `runctl cost`), prices."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path

import pytest

from runctl_jupyter import cli
from runctl_jupyter.config import Runctl
from runctl_jupyter.cost.estimate import Estimate, check_confirm, estimate
from runctl_jupyter.cost.report import report
from runctl_jupyter.cost.spent import cost_phrase
from runctl_jupyter.cost.sweep_budget import SweepBudget
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.events import EventWriter
from runctl_jupyter.runs.results import one_line
from runctl_jupyter.session import Session

EBS_100 = 100 * 0.08 / 730  # $/h of the 100 GiB gp3 root volume in us-east-1


@pytest.fixture()
def session(tmp_path, no_aws):
    return Session(config=Runctl(home=str(tmp_path / "home")))


def seed_prices(home: Path, **entries: float) -> None:
    """Today's cache as the Pricing API / spot history would have left it: no call is made."""
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    data: dict = {"on-demand": {}, "spot": {}}
    for key, usd in entries.items():
        kind, region, itype = key.split("__")
        itype = itype.replace("_", ".")
        region = region.replace("_", "-")
        if kind == "od":
            data["on-demand"][f"{region}/{itype}"] = {"day": day, "usd": usd, "error": None}
        else:
            data["spot"][f"{region}/*/{itype}"] = {
                "usd": usd,
                "zone": f"{region}b",
                "t": time.time(),
            }
    (home / "cache").mkdir(parents=True, exist_ok=True)
    (home / "cache" / "prices.json").write_text(json.dumps(data))


def test_the_estimate_totals_max_hours_at_the_on_demand_price_plus_storage(session):
    seed_prices(session.store.home, od__us_east_1__g5_xlarge=1.006)
    from runctl_jupyter.cost.facts import price_facts

    facts = price_facts(session, "aws", {"instance_type": "g5.xlarge", "spot": False})
    assert (
        facts["rate"] == 1.006
        and facts["source"]
        == f"cache (AWS Pricing API, {time.strftime('%Y-%m-%d', time.gmtime())})"
    )
    est = estimate(session, facts, 2.0, "exp")
    assert est.total == pytest.approx((1.006 + EBS_100) * 2)
    text = str(est)
    assert "$1.017/h" in text and "x 2h (--max-hours) = $2.03" in text


def test_a_spot_estimate_uses_the_spot_price_and_keeps_on_demand_for_savings(session):
    seed_prices(
        session.store.home, od__us_east_1__g5_xlarge=1.006, spot__us_east_1__g5_xlarge=0.4123
    )
    from runctl_jupyter.cost.facts import price_facts

    facts = price_facts(session, "aws", {"instance_type": "g5.xlarge"})  # spot by default
    assert (facts["spot"], facts["rate"], facts["on_demand"], facts["zone"]) == (
        True, 0.4123, 1.006, "us-east-1b"
    )  # fmt: skip


def test_above_confirm_above_the_cell_asks_for_yes_and_creates_nothing(session, capsys):
    seed_prices(session.store.home, od__us_east_1__p3_2xlarge=3.06)
    with pytest.raises(RunctlError) as err:
        session.train(
            code="print(1)",
            backend="aws",
            max_hours=3,
            options={"instance_type": "p3.2xlarge", "spot": False},
        )
    message = str(err.value)
    assert "$9.21" in message and "add --yes" in message and "\n" not in message
    assert "Estimate: p3.2xlarge on-demand in us-east-1 at $3.071/h" in capsys.readouterr().out
    assert session.store.list_runs() == [] and not list(session.store.runs_dir.iterdir())


def test_a_cost_limit_below_the_threshold_needs_no_yes():
    est = Estimate({"rate": 3.06, "spot": False}, hours=3.0, basis="--max-hours")
    with pytest.raises(RunctlError):
        check_confirm(est, 5.0, yes=False)
    check_confirm(est, 5.0, yes=False, cost_limit=4.0)  # the limit caps the spend
    check_confirm(est, 5.0, yes=True)


def test_without_a_duration_an_expensive_hour_still_asks_for_yes():
    est = Estimate({"rate": 98.32, "spot": False, "instance_type": "p5.48xlarge"})
    with pytest.raises(RunctlError, match=r"at least \$98.32 an hour"):
        check_confirm(est, 5.0, yes=False)


def test_the_estimate_uses_the_median_duration_of_earlier_runs(session):
    for _ in range(3):
        session.train(code="print(1)", experiment="digits")
    durations = sorted(r["duration"] for r in session.store.list_runs(experiment="digits"))
    est = estimate(session, {"rate": 1.0, "spot": False}, None, "digits")
    assert est.hours == pytest.approx(durations[1] / 3600)
    assert est.basis == "median of 3 earlier runs of digits"
    assert estimate(session, {"rate": 1.0}, None, "never-ran").hours is None


def test_a_sweep_estimate_is_trials_times_a_run_with_max_parallel_wall_time():
    est = Estimate(
        {
            "rate": 0.5,
            "spot": True,
            "instance_type": "g5.xlarge",
            "region": "us-east-1",
            "source": "s",
        },
        hours=1.5,
        basis="--max-hours",
        trials=8,
        parallel=3,
    )
    assert est.total == pytest.approx(6.0) and est.wall_hours == pytest.approx(4.5)
    assert (
        "x 8 trials x 1.5h (--max-hours) = $6.00, about 4.5h of wall time with 3 in parallel"
        in str(est)
    )


def test_a_local_run_prints_no_estimate_and_costs_nothing(session, capsys):
    run = session.train(code="print(1)")
    assert "Estimate" not in capsys.readouterr().out
    assert repr(run).startswith("Training completed in ") and "cost $0 (local)" in repr(run)


def _aws_row(tmp_path: Path, **cost_fields) -> dict:
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    w = EventWriter(run_dir, 1)
    w.write("cost", **cost_fields)
    w.close()
    return {
        "id": "r1", "name": "digits-1", "status": "succeeded", "duration": 2530.0,
        "backend": "aws", "cost": cost_fields["dollars"], "run_dir": str(run_dir),
        "final_metrics": {"val_acc": 0.97},
    }  # fmt: skip


def test_the_success_line_says_what_spot_saved(tmp_path):
    row = _aws_row(tmp_path, dollars=0.3123, rate=0.44, on_demand_dollars=1.0523, spot=True)
    line = one_line(row)
    assert line.startswith(
        "Training completed in 42m 10s — cost $0.31 (spot, saved $0.74 against on-demand)"
    )
    assert "r1" in line and "val_acc=0.97" in line


def test_an_on_demand_run_says_on_demand(tmp_path):
    row = _aws_row(tmp_path, dollars=0.7, rate=1.006, on_demand_dollars=0.7, spot=False)
    assert cost_phrase(row) == "cost $0.70 (on-demand)"


def _stored_run(
    session, run_id, experiment, backend, cost, on_demand=None, itype="g5.xlarge", status="exit"
):
    from runctl_jupyter.store.folders import create_run

    spec = create_run(
        session.store.runs_dir, kind="cell", code="pass", params={}, experiment=experiment,
        name=run_id, project="vision", owner="ann", backend=backend, workdir=".", run_id=run_id,
    )  # fmt: skip
    session.store.add_run(spec)
    w = EventWriter(session.store.run_dir(run_id), 1)
    t0 = time.time() - 100
    w.write("status", t=t0, status="starting", format=1)
    w.write("status", t=t0, status="running")
    if backend != "local":
        w.write("cost", t=t0 + 50, dollars=cost, rate=0.5, spot=on_demand is not None,
                on_demand_dollars=on_demand or cost, instance_type=itype)  # fmt: skip
    if status == "exit":
        w.write("exit", t=t0 + 60, status="succeeded", reason=None, exit_code=0, error=None, duration=60.0)  # fmt: skip
    else:
        w.write("heartbeat", t=time.time(), pid=1)
    w.close()


def test_the_cost_report_sums_by_experiment_type_and_day_with_spot_savings(session):
    _stored_run(session, "a1", "bert", "aws", 1.25, on_demand=3.0)
    _stored_run(session, "a2", "bert", "aws", 0.75, itype="t3.large")
    _stored_run(session, "a3", "resnet", "aws", 2.0, on_demand=5.5, itype="g4dn.xlarge")
    _stored_run(session, "l1", "resnet", "local", 0.0)
    rep = report(session)
    assert rep.total == pytest.approx(4.0) and rep.saved == pytest.approx(1.75 + 3.5)
    assert rep.groups["experiment"] == [("bert", 2.0, 1.75), ("resnet", 2.0, 3.5)]  # ties by name
    types = {k: v for k, v, _ in rep.groups["instance type"]}
    assert types == {"g5.xlarge": 1.25, "t3.large": 0.75, "g4dn.xlarge": 2.0, "local": 0.0}
    assert rep.groups["project"] == [("vision", 4.0, 5.25)]
    text = str(rep)
    assert "spend: $4.00 over 4 runs, spot saved $5.25 against on-demand" in text
    assert "running now: nothing" in text
    fig = rep.figure()
    assert sorted(t.name for t in fig.data) == ["bert", "resnet"]
    assert sum(sum(t.y) for t in fig.data) == pytest.approx(4.0)


def test_the_report_shows_what_runs_now_and_its_burn_rate(session):
    _stored_run(session, "live", "bert", "aws", 0.5, on_demand=1.0, status="running")
    rep = report(session)
    assert [r["id"] for r in rep.running] == ["live"]
    assert "running now: 1, burning $0.500/h" in str(rep)


def test_the_report_works_with_no_aws_reachable_and_says_so_in_one_line(session):
    _stored_run(session, "a1", "bert", "aws", 1.25, on_demand=3.0)
    t = time.monotonic()
    rep = report(session)
    assert time.monotonic() - t < 10
    assert rep.note.startswith("live AWS figures unavailable") and "\n" not in rep.note
    assert rep.total == 1.25


def test_a_sweep_budget_warns_at_80_percent_stops_at_100_and_caps_new_trials():
    budget = SweepBudget(10.0)
    assert [budget.check(s) for s in (5.0, 8.0, 9.0, 10.0, 12.0)] == [
        None,
        "warn",
        None,
        "stop",
        None,
    ]
    assert SweepBudget(10.0).trial_limit(None, 7.5) == 2.5
    assert SweepBudget(10.0).trial_limit(1.0, 7.5) == 1.0
    assert SweepBudget(None).trial_limit(3.0, 100) == 3.0


def test_runctl_cost_price_offline_prints_the_price_and_its_source(
    tmp_path, no_aws, monkeypatch, capsys
):
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    assert cli.main(["cost", "price", "g5.xlarge", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "$1.006/h" in out and "bundled table (AWS published prices, 2024-11-01)" in out
    assert (
        cli.main(["cost", "price", "g5.xlarge", "--spot", "--offline", "--region", "eu-west-1"])
        == 0
    )
    out = capsys.readouterr().out
    assert "$1.123/h" in out and "upper bound" in out


def test_runctl_cost_price_without_pricing_access_falls_back_and_says_why(
    tmp_path, no_aws, monkeypatch, capsys
):
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    t = time.monotonic()
    assert cli.main(["cost", "price", "t3.large"]) == 0
    assert time.monotonic() - t < 10
    out = capsys.readouterr().out
    assert "$0.083/h" in out and "Pricing API unavailable" in out


def test_runctl_cost_in_the_shell_prints_the_report(tmp_path, no_aws, monkeypatch, capsys):
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    assert cli.main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "spend: $0.00 over 0 runs" in out and "live AWS figures unavailable" in out


def test_a_sweep_stops_when_its_trials_cost_reaches_its_limit(session, capsys):
    from runctl_jupyter.sweeps.create import create
    from runctl_jupyter.sweeps.record import SweepState, read_json, write_json
    from runctl_jupyter.sweeps.scheduler import spawn

    handle = create(
        session, code="print('trained')\n", target=None, args=(), params={},
        grid={"lr": [1, 2, 3, 4]}, space=None, search=None, trials=None, seed=None,
        max_parallel=1, objective=None, stop_on_failure=False, max_failures=None, prune=None,
        early_stop=None, experiment=None, name="budget", project=None, tags=(), backend=None,
        metrics=(), yes=False, max_hours=None, ship_objects=False, user_ns=None, options={},
        cost_limit=2.0,
    )  # fmt: skip
    # trials metered at $36/h, billed since two minutes ago: at least $1.20 each
    spec = read_json(handle.dir / "sweep.json")
    assert spec["cost_limit"] == 2.0
    spec["run"]["price"] = {"rate": 36.0, "on_demand": 36.0, "billing_start": time.time() - 120}
    write_json(handle.dir / "sweep.json", spec)
    spawn(handle.dir)
    deadline = time.monotonic() + 40
    while SweepState(handle.dir).status not in ("succeeded", "failed", "stopped"):
        assert time.monotonic() < deadline, "the sweep did not end"
        time.sleep(0.1)
    state = SweepState(handle.dir)
    assert (state.status, state.reason) == ("stopped", "cost-limit")
    runs = [t for t in state.trials if t.get("run_id")]
    assert len(runs) == 2 and state.counts()["queued"] == 2  # the last two never launched
    second = session.store.get(runs[1]["run_id"])
    assert second["reason"] == "cost-limit"  # it stopped itself at what the sweep had left
    limits = [
        json.loads((session.store.run_dir(t["run_id"]) / "spec.json").read_text())["options"][
            "cost_limit"
        ]
        for t in runs
    ]
    assert limits[0] == 2.0 and limits[1] == pytest.approx(
        2.0 - session.store.get(runs[0]["run_id"])["cost"]
    )
    from runctl_jupyter.display.sweep_table import header_html
    from runctl_jupyter.sweeps.results import trial_rows

    spent = sum(session.store.get(t["run_id"])["cost"] for t in runs)
    assert spent >= 2.0
    assert f"cost <b>${spent:.2f}</b> of $2.00" in header_html(state, trial_rows(session, state))


def test_an_expensive_sweep_shows_its_estimate_and_asks_for_yes(session, capsys):
    from runctl_jupyter.sweeps.record import all_sweeps

    seed_prices(session.store.home, od__us_east_1__p3_2xlarge=3.06)
    with pytest.raises(RunctlError, match=r"estimate is \$12.28.*add --yes"):
        session.sweep(
            code="print(lr)\n", grid={"lr": [1, 2, 3, 4]}, max_parallel=2, backend="aws",
            max_hours=1.0, options={"instance_type": "p3.2xlarge", "spot": False}, detach=True,
        )  # fmt: skip
    out = capsys.readouterr().out
    assert "x 4 trials x 1h (--max-hours) = $12.28, about 2h of wall time with 2 in parallel" in out
    assert all_sweeps(session.store.home) == [] and session.store.list_runs() == []


def test_a_monthly_budget_warns_from_80_percent_caps_the_run_and_refuses_when_spent(
    session, capsys
):
    from runctl_jupyter.cost.monthly_budget import apply_monthly_budget

    session.config.monthly_budget = 5.0
    session.config.project = "vision"
    _stored_run(session, "m1", "bert", "aws", 4.5)
    options: dict = {"cost_limit": 2.0}
    session.config.owner = "bob"
    apply_monthly_budget(session, "vision", options)  # ann's spend is not bob's budget
    assert options["cost_limit"] == 2.0 and capsys.readouterr().out == ""
    session.config.owner = "ann"
    apply_monthly_budget(session, "vision", options)
    assert options["cost_limit"] == pytest.approx(0.5)  # the run stops where the budget ends
    assert "$4.50 of the $5.00 monthly budget" in capsys.readouterr().out
    _stored_run(session, "m2", "bert", "aws", 0.6)
    seed_prices(session.store.home, od__us_east_1__t3_large=0.0832)
    with pytest.raises(
        RunctlError, match=r"monthly budget .* is spent \(\$5.10\): raise c.Runctl.monthly_budget"
    ):
        session.train(code="print(1)", backend="aws", options={"instance_type": "t3.large"})
    assert [r["id"] for r in session.store.list_runs()] == ["m2", "m1"]


def test_the_magic_prints_a_price_and_shows_the_report_with_its_figure(
    home, no_aws, tmp_path, monkeypatch
):
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter.magics import RunctlMagics

    monkeypatch.chdir(tmp_path)
    shell = InteractiveShell.instance()
    shell.register_magics(RunctlMagics(shell=shell))
    price = shell.run_line_magic("runctl", "cost price g4dn.xlarge --offline")
    assert "g4dn.xlarge on-demand in us-east-1: $0.526/h — bundled table" in str(price)
    magic = shell.magics_manager.registry["RunctlMagics"]
    _stored_run(magic.session, "a1", "bert", "aws", 1.25, on_demand=3.0)
    published: list[dict] = []
    monkeypatch.setattr(shell.display_pub, "publish", lambda data, **kw: published.append(data))
    rep = shell.run_line_magic("runctl", "cost")
    rep._ipython_display_()
    assert "spend: $1.25 over 1 runs" in published[0]["text/plain"]
    figure = published[1]["application/vnd.plotly.v1+json"]
    assert [t["name"] for t in figure["data"]] == ["bert"]


def test_a_type_with_no_price_anywhere_does_not_block_the_launch_unless_limited(session, capsys):
    from runctl_jupyter.cost.estimate import before_launch

    options = {"instance_type": "t3.mirco", "spot": False}
    assert before_launch(session, "aws", dict(options), None, "exp") is None
    assert "Estimate unavailable (no price for t3.mirco in us-east-1" in capsys.readouterr().out
    with pytest.raises(RunctlError, match="--cost-limit needs a price"):
        before_launch(session, "aws", {**options, "cost_limit": 1.0}, None, "exp")
