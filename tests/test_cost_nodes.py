"""A multi-node run costs M x one instance: in the estimate before launch and live."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_helpers import make_run_dir  # noqa: E402

from runctl_jupyter.agent.cost import CostMeter  # noqa: E402
from runctl_jupyter.config import Runctl  # noqa: E402
from runctl_jupyter.cost.estimate import Estimate  # noqa: E402
from runctl_jupyter.errors import RunctlError  # noqa: E402
from runctl_jupyter.runs.results import RunDetails  # noqa: E402
from runctl_jupyter.session import Session  # noqa: E402

T0 = 1_764_380_000.0
ONE_NODE = {
    "instance_type": "g5.12xlarge",
    "region": "us-east-1",
    "spot": True,
    "rate": 2.0,
    "on_demand": 5.672,
    "ebs_gb": 100,
    "ebs_gb_month": 0.08,
    "source": "bundled table",
}


def test_train_shows_the_estimate_for_every_node_before_anything_is_created(
    tmp_path, monkeypatch, capsys
):
    import datetime as dt
    import json

    # AWS is nowhere reachable: the price comes from today's cache, as the Pricing API left it
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    session = Session(config=Runctl(home=str(tmp_path / "home")))
    day = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    cache = session.store.home / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    entry = {"day": day, "usd": 5.672, "error": None}
    (cache / "prices.json").write_text(
        json.dumps({"on-demand": {"us-east-1/g5.12xlarge": entry}, "spot": {}})
    )
    with pytest.raises(RunctlError, match="add --yes"):
        session.train(
            code="print(1)",
            backend="aws",
            max_hours=2,
            options={"instance_type": "g5.12xlarge", "spot": False, "nodes": 3},
        )
    ebs_hour = 100 * 0.08 / 730.0
    out = capsys.readouterr().out
    assert (
        f"Estimate: 3 x g5.12xlarge on-demand in us-east-1 at ${3 * (5.672 + ebs_hour):.3f}/h"
        in out
    )
    assert f"= ${3 * (5.672 + ebs_hour) * 2:.2f}" in out
    assert session.store.list_runs() == []


def test_the_estimate_of_a_multi_node_run_is_nodes_times_one_instance():
    one = Estimate(ONE_NODE, hours=2.0, basis="--max-hours")
    three = Estimate({**ONE_NODE, "nodes": 3}, hours=2.0, basis="--max-hours")
    assert three.rate == pytest.approx(3 * one.rate)
    assert three.total == pytest.approx(3 * one.total)
    assert str(three).startswith("Estimate: 3 x g5.12xlarge spot in us-east-1 at ")
    assert str(one).startswith("Estimate: g5.12xlarge spot")


class Clock:
    t = T0 + 3600.0

    def __call__(self) -> float:
        return self.t


def test_live_cost_events_count_every_node_and_a_spot_refresh_per_node(tmp_path):
    events: list[tuple[str, dict]] = []

    class Refresher:
        price: float | None = None

        def poll(self) -> float | None:
            return self.price

        def close(self) -> None:
            pass

    refresher = Refresher()
    spec = {"target": {"price": {**ONE_NODE, "nodes": 2, "billing_start": T0}}, "options": {}}
    clock = Clock()
    meter = CostMeter(
        spec,
        tmp_path,
        1,
        lambda kind, **f: events.append((kind, f)),
        lambda reason: None,
        clock=clock,
        refresher=refresher,
    )
    ebs_hour = 100 * 0.08 / 730.0
    assert meter.dollars() == pytest.approx(2 * (2.0 + ebs_hour))  # one hour of two nodes
    meter.tick()
    kind, cost = events[-1]
    assert kind == "cost" and cost["nodes"] == 2
    assert cost["rate"] == pytest.approx(2 * (2.0 + ebs_hour))
    refresher.price = 1.0  # one instance's new spot price: the run pays it twice
    meter.tick()
    clock.t += 3600.0
    assert meter.instance_dollars(clock.t) == pytest.approx(2 * 2.0 + 2 * 1.0)


def test_show_and_the_record_say_how_many_processes(tmp_path):
    from runctl_jupyter.record.cells import summary_markdown
    from runctl_jupyter.record.facts import RunFacts

    plan = {"nproc_per_node": 4, "nodes": 2, "gpus": 4}
    run_dir = make_run_dir(tmp_path, "pass", distributed=plan, backend="aws")
    details = RunDetails(
        {"id": "r1", "name": "r1", "status": "succeeded", "run_dir": str(run_dir)}, {}, []
    )
    assert "processes   8 (2 nodes x 4 per node, one per GPU)" in str(details)
    summary = summary_markdown(RunFacts(run_dir, None))
    assert "Processes" in summary and "8 (2 nodes x 4 per node, one per GPU)" in summary
