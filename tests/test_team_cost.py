"""Cost allocation for a team (issue 18, item 3): `cost --by owner|project|team|experiment`
and `--month` over the stored runs (the teammates' ones as the team store pulls them in),
each grouping adding up to the total; the person and team budgets checked at launch, a
refusal in one line saying who spent what. Real store, real IPython magic, no AWS."""

from __future__ import annotations

import calendar
import time

import pytest

from runctl_jupyter.config import Runctl
from runctl_jupyter.cost.monthly_budget import apply_monthly_budget, month_bounds
from runctl_jupyter.cost.report import report
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.events import EventWriter
from runctl_jupyter.session import Session
from runctl_jupyter.store.folders import create_run


@pytest.fixture()
def session(tmp_path, no_aws):
    return Session(config=Runctl(home=str(tmp_path / "home"), owner="alice"))


def _t(month: str, day: int = 10) -> float:
    year, mon = (int(x) for x in month.split("-"))
    return float(calendar.timegm((year, mon, day, 12, 0, 0, 0, 0, 0)))


def _run(session, run_id, owner, project, team, dollars, t=None, experiment="exp"):
    """A finished AWS run as the store holds it (a teammate's: as the team store pulls it)."""
    spec = create_run(
        session.store.runs_dir, kind="cell", code="pass", params={}, experiment=experiment,
        name=run_id, project=project, owner=owner, backend="aws", workdir=".", run_id=run_id,
        options={"team": team} if team else {},
    )  # fmt: skip
    session.store.add_run(spec)
    t0 = time.time() - 100 if t is None else t
    w = EventWriter(session.store.run_dir(run_id), 1)
    w.write("status", t=t0, status="starting", format=1)
    w.write("status", t=t0, status="running")
    w.write("cost", t=t0 + 50, dollars=dollars, rate=0.5, spot=False,
            on_demand_dollars=dollars, instance_type="g5.xlarge")  # fmt: skip
    w.write("exit", t=t0 + 60, status="succeeded", reason=None, exit_code=0, error=None,
            duration=60.0)  # fmt: skip
    w.close()


def _team_month(session):
    _run(session, "a1", "alice", "detr", "vision", 1.25, _t("2026-11"), "detr-base")
    _run(session, "a2", "alice", "coco", "vision", 0.50, _t("2026-11", 20), "coco-seg")
    _run(session, "b1", "bob", "detr", "vision", 2.75, _t("2026-11", 3), "detr-base")
    _run(session, "c1", "carol", "speech", "audio", 4.00, _t("2026-11", 28), "asr")
    _run(session, "n1", "dan", "misc", "", 0.30, _t("2026-11", 5), "misc")
    _run(session, "old", "alice", "detr", "vision", 9.00, _t("2026-10", 31), "detr-base")


@pytest.mark.parametrize("by", ["owner", "project", "team", "experiment"])
def test_cost_by_each_grouping_adds_up_to_the_months_total(session, by):
    _team_month(session)
    rep = report(session, live=False, by=by, month="2026-11")
    assert rep.total == pytest.approx(1.25 + 0.5 + 2.75 + 4.0 + 0.3)  # October's run is out
    assert list(rep.groups) == [by]
    assert sum(spent for _, spent, _ in rep.groups[by]) == pytest.approx(rep.total)
    expected = {
        "owner": {"alice": 1.75, "bob": 2.75, "carol": 4.0, "dan": 0.3},
        "project": {"detr": 4.0, "coco": 0.5, "speech": 4.0, "misc": 0.3},
        "team": {"vision": 4.5, "audio": 4.0, "(no team)": 0.3},
        "experiment": {"detr-base": 4.0, "coco-seg": 0.5, "asr": 4.0, "misc": 0.3},
    }[by]
    assert {k: pytest.approx(v) for k, v in expected.items()} == {
        k: spent for k, spent, _ in rep.groups[by]
    }
    text = str(rep)
    assert text.startswith("spend in 2026-11: $8.80 over 5 runs") and f"by {by}:" in text


def test_the_default_report_groups_by_team_too_when_a_team_is_set(session):
    _team_month(session)
    session.config.team = "vision"
    rep = report(session, live=False)
    assert list(rep.groups) == ["experiment", "project", "owner", "team", "instance type", "day"]
    for rows in rep.groups.values():
        assert sum(spent for _, spent, _ in rows) == pytest.approx(rep.total)


def test_the_magic_and_the_shell_take_by_and_month_and_refuse_bad_ones(
    session, tmp_path, monkeypatch, capsys
):
    from IPython.core.error import UsageError
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter import cli
    from runctl_jupyter.magics import RunctlMagics

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    _team_month(session)
    shell = InteractiveShell.instance()
    shell.register_magics(RunctlMagics(shell=shell))
    rep = shell.run_line_magic("runctl", "cost --by owner --month 2026-11 --offline")
    assert "by owner:" in str(rep) and "bob" in str(rep) and rep.total == pytest.approx(8.8)
    for bad, said in [
        ("cost --by person", "invalid choice: 'person'"),
        ("cost --month 2026-13", "--month takes YYYY-MM"),
        ("cost --month 11/2026", "--month takes YYYY-MM"),
        ("cost price t3.large --by owner", "--by and --month go with the report"),
    ]:
        with pytest.raises(UsageError) as caught:
            shell.run_line_magic("runctl", bad)
        assert said in str(caught.value) and "\n" not in str(caught.value).strip()
    assert cli.main(["cost", "--by", "team", "--month", "2026-10", "--offline"]) == 0
    out = capsys.readouterr().out
    assert "spend in 2026-10: $9.00 over 1 runs" in out and "vision" in out
    assert cli.main(["cost", "--month", "26-10"]) != 0


def test_month_bounds_are_calendar_months_in_utc():
    assert month_bounds("2026-12") == (_t("2026-12", 1) - 12 * 3600, _t("2027-01", 1) - 12 * 3600)
    start, end = month_bounds(None, now=_t("2026-02", 27))
    assert (end - start) / 86400 == 28


def test_a_person_budget_counts_every_project_and_refuses_saying_who_spent_what(
    session, capsys
):
    _run(session, "a1", "alice", "detr", "vision", 30.0)
    _run(session, "a2", "alice", "coco", "vision", 12.0)
    _run(session, "b1", "bob", "detr", "vision", 45.0)  # bob's spend is not alice's budget
    session.config.person_budget = 50.0
    options: dict = {}
    apply_monthly_budget(session, "detr", options)
    assert options["cost_limit"] == pytest.approx(8.0)
    assert "$42.00 of the $50.00 monthly person budget of alice is spent" in capsys.readouterr().out
    _run(session, "a3", "alice", "speech", "", 9.0)
    with pytest.raises(RunctlError) as caught:
        apply_monthly_budget(session, "detr", {})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("alice's monthly budget ($50.00, c.Runctl.person_budget) is spent")
    assert "alice has spent $51.00 this month (detr $30.00, coco $12.00, speech $9.00)" in message
    assert "raise c.Runctl.person_budget" in message


def test_a_team_budget_counts_every_member_and_refuses_naming_each(session, capsys):
    _run(session, "a1", "alice", "detr", "vision", 35.0)
    _run(session, "b1", "bob", "detr", "vision", 45.0)
    _run(session, "c1", "carol", "asr", "audio", 500.0)  # another team's
    _run(session, "old", "bob", "detr", "vision", 900.0, t=time.time() - 40 * 86400)
    session.config.team = "vision"
    session.config.team_budget = 100.0
    session.config.person_budget = 0.0
    assert session.config.owner == "alice"
    # a team is set: the owner is the IAM identity, asked of STS; here it is alice
    from runctl_jupyter.runs.identity import Caller

    session._team_caller = Caller("arn:aws:iam::123456789012:user/alice")
    options: dict = {"cost_limit": 50.0}
    apply_monthly_budget(session, "detr", options)
    assert options["cost_limit"] == pytest.approx(20.0)
    assert "$80.00 of the $100.00 monthly team budget of 'vision'" in capsys.readouterr().out
    _run(session, "b2", "bob", "detr", "vision", 21.0)
    with pytest.raises(RunctlError) as caught:
        apply_monthly_budget(session, "detr", {})
    message = str(caught.value)
    assert "\n" not in message
    assert "team 'vision''s monthly budget ($100.00, c.Runctl.team_budget) is spent" in message
    assert "$101.00 this month (bob $66.00, alice $35.00)" in message


def test_a_spent_budget_refuses_the_launch_before_anything_is_written(session):
    import datetime as dt
    import json

    _run(session, "a1", "alice", "detr", "", 60.0)
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    prices = {"on-demand": {"us-east-1/t3.large": {"day": day, "usd": 0.0832, "error": None}}}
    cache = session.store.home / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "prices.json").write_text(json.dumps({**prices, "spot": {}}))
    session.config.person_budget = 50.0
    with pytest.raises(RunctlError, match=r"alice's monthly budget \(\$50.00"):
        session.train(code="print(1)", backend="aws", options={"instance_type": "t3.large"})
    assert [r["id"] for r in session.store.list_runs()] == ["a1"]
