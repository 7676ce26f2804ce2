"""The agent's cost meter: per-second billing arithmetic, cost events, --cost-limit."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from agent_helpers import exit_event, make_run_dir, run_agent  # noqa: E402

from runctl_jupyter.agent.cost import CostMeter, SpotRefresher, previous_cost  # noqa: E402
from runctl_jupyter.events import EventWriter  # noqa: E402

T0 = 1_764_380_000.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def meter(tmp_path: Path, price: dict | None, limit: float | None = None, attempt: int = 1):
    spec = {"target": {"price": price} if price else {}, "options": {"cost_limit": limit}}
    events: list[tuple[str, dict]] = []
    stops: list[str] = []
    clock = Clock()
    m = CostMeter(
        spec,
        tmp_path,
        attempt,
        lambda kind, **f: events.append((kind, f)),
        stops.append,
        clock=clock,
    )
    return m, clock, events, stops


G5_SPOT = {
    "instance_type": "g5.xlarge",
    "region": "us-east-1",
    "spot": True,
    "rate": 0.4123,
    "on_demand": 1.006,
}


def test_an_instance_is_billed_per_second_with_a_one_minute_minimum(tmp_path):
    m, clock, _, _ = meter(tmp_path, {"rate": 1.006, "on_demand": 1.006})
    clock.t = T0 + 10  # 10 s billed as 60 s
    assert m.dollars() == pytest.approx(1.006 * 60 / 3600)
    clock.t = T0 + 42 * 60 + 10  # 42m 10s = 2530 s
    assert round(m.dollars(), 2) == 0.71  # 1.006 * 2530 / 3600 = 0.70699...
    assert m.dollars() == pytest.approx(1.006 * 2530 / 3600, abs=1e-12)


def test_spot_cost_and_what_on_demand_would_have_cost(tmp_path):
    m, clock, events, _ = meter(tmp_path, G5_SPOT)
    clock.t = T0 + 3600 * 2.5
    m.final()
    kind, fields = events[-1]
    assert kind == "cost" and fields["final"] is True and fields["spot"] is True
    assert fields["dollars"] == pytest.approx(0.4123 * 2.5, abs=1e-6)  # $1.03
    assert fields["on_demand_dollars"] == pytest.approx(1.006 * 2.5, abs=1e-6)  # $2.52
    assert fields["rate"] == pytest.approx(0.4123)


def test_ebs_storage_is_billed_per_gb_month_over_730_hours(tmp_path):
    m, clock, _, _ = meter(tmp_path, {"rate": 0.0, "ebs_gb": 100, "ebs_gb_month": 0.08})
    clock.t = T0 + 730 * 3600  # a month of 100 GB gp3 = $8.00
    assert round(m.dollars(), 2) == 8.00


def test_a_refreshed_spot_price_applies_from_then_on(tmp_path):
    m, clock, _, _ = meter(tmp_path, dict(G5_SPOT, rate=0.40))
    clock.t = T0 + 1800
    m.set_rate(0.60)
    clock.t = T0 + 3600
    assert m.dollars() == pytest.approx(0.40 * 0.5 + 0.60 * 0.5)


def test_cost_events_every_30_seconds_not_every_tick(tmp_path):
    m, clock, events, _ = meter(tmp_path, G5_SPOT)
    for s in range(0, 95, 1):
        clock.t = T0 + s
        m.tick()
    assert [round(f["dollars"], 6) for k, f in events if k == "cost"] == [
        round(0.4123 * secs / 3600, 6) for secs in (60, 60, 60, 90)
    ]  # at 0, 30, 60 s (the one-minute minimum), 90 s


def test_a_resumed_attempt_carries_the_earlier_attempts_dollars(tmp_path):
    w = EventWriter(tmp_path, 1)
    w.write("cost", dollars=1.25, rate=0.4, on_demand_dollars=3.0)
    w.write("exit", status="stopped", reason="user")
    w.close()
    assert previous_cost(tmp_path, 2)[:2] == (1.25, 3.0)
    m, clock, _, _ = meter(tmp_path, {"rate": 3.6, "on_demand": 3.6}, attempt=2)
    clock.t = T0 + 100
    assert m.dollars() == pytest.approx(1.25 + 0.10)


def test_the_limit_warns_at_80_percent_then_stops_at_100(tmp_path):
    m, clock, events, stops = meter(tmp_path, {"rate": 36.0, "on_demand": 36.0}, limit=1.0)
    clock.t = T0 + 70  # $0.70
    m.tick()
    assert stops == [] and not [f for k, f in events if k == "warning"]
    clock.t = T0 + 80  # $0.80
    m.tick()
    warnings = [f for k, f in events if k == "warning"]
    assert [w["code"] for w in warnings] == ["cost-warning"] and stops == []
    clock.t = T0 + 100  # $1.00
    m.tick()
    assert stops == ["cost-limit"]
    assert [f["code"] for k, f in events if k == "warning"] == ["cost-warning", "cost-limit"]
    m.tick()
    assert stops == ["cost-limit"]  # asked once


def test_a_local_run_costs_nothing_and_says_so(tmp_path):
    m, clock, events, _ = meter(tmp_path, None, limit=0.01)
    clock.t = T0 + 86400
    m.tick()
    m.final()
    assert events == [("cost", {"dollars": 0.0, "rate": 0.0, "source": "local"})]


class _FakeEC2:
    """A botocore-shaped answer of DescribeSpotPriceHistory for one zone."""

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def describe_spot_price_history(self, **kwargs):
        import datetime as dt

        self.calls.append(kwargs)
        return {
            "SpotPriceHistory": [
                {"AvailabilityZone": "us-east-1b", "InstanceType": "g5.xlarge",
                 "ProductDescription": "Linux/UNIX", "SpotPrice": "0.398700",
                 "Timestamp": dt.datetime(2026, 11, 29, 1, 0, tzinfo=dt.timezone.utc)},
                {"AvailabilityZone": "us-east-1b", "InstanceType": "g5.xlarge",
                 "ProductDescription": "Linux/UNIX", "SpotPrice": "0.441200",
                 "Timestamp": dt.datetime(2026, 11, 29, 1, 30, tzinfo=dt.timezone.utc)},
            ]
        }  # fmt: skip


def test_the_spot_refresher_reads_the_newest_price_of_its_zone():
    import botocore.session
    from botocore.stub import Stubber

    client = botocore.session.get_session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    answer = _FakeEC2().describe_spot_price_history()
    stub.add_response("describe_spot_price_history", answer)
    with stub:
        r = SpotRefresher(dict(G5_SPOT, zone="us-east-1b"), every=3600, client=client)
        try:  # the first look-up comes at once (the estimate priced the cheapest zone)
            deadline = time.monotonic() + 5
            while (found := r.poll()) is None:
                assert time.monotonic() < deadline, "no look-up at start"
                time.sleep(0.01)
            assert found == 0.4412
        finally:
            r.close()
    stub.assert_no_pending_responses()


def _spend_code() -> str:
    return """
    import time
    while not runctl.should_stop:
        time.sleep(0.05)
    print("stopped cleanly")
    """


def test_the_agent_stops_a_run_at_its_cost_limit_with_that_reason(tmp_path):
    # $36/h (a cent a second), billed since two minutes ago: $1.20 at start
    price = {"rate": 36.0, "on_demand": 36.0, "spot": False, "billing_start": time.time() - 120}
    run_dir = make_run_dir(
        tmp_path,
        _spend_code(),
        backend="aws",
        target={"price": price},
        options={"cost_limit": 1.23},
    )
    events = run_agent(run_dir, timeout=30)
    end = exit_event(events)
    assert (end["status"], end["reason"]) == ("stopped", "cost-limit")
    codes = [e.get("code") for e in events if e["type"] == "warning"]
    assert codes[:2] == ["cost-warning", "cost-limit"]
    costs = [e for e in events if e["type"] == "cost"]
    assert 1.20 <= costs[0]["dollars"] < 1.23
    assert costs[-1].get("final") and costs[-1]["dollars"] >= 1.23
    assert events.index(costs[-1]) < events.index(end)
    assert "stopped cleanly" in (run_dir / "stdout.log").read_text()


def test_a_local_agent_run_records_a_zero_cost_event(tmp_path):
    run_dir = make_run_dir(tmp_path, "print('hi')")
    events = run_agent(run_dir, timeout=30)
    costs = [e for e in events if e["type"] == "cost"]
    assert [(c["dollars"], c["rate"], c["source"]) for c in costs] == [(0.0, 0.0, "local")]
    assert json.loads((run_dir / "spec.json").read_text())["run_id"] == "r1"


# ---------------------------------------------------------------- idle protection


def _agent_json(run_dir: Path, pid: int) -> None:
    from runctl_jupyter.agent.idle import _proc_start

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "agent.json").write_text(json.dumps({"pid": pid, "proc_start": _proc_start(pid)}))


def test_a_kept_instance_is_idle_only_while_no_agent_runs(tmp_path):
    import subprocess

    from runctl_jupyter.agent.idle import Watcher

    marker = tmp_path / "stopped"
    (tmp_path / "idle.json").write_text(json.dumps({"minutes": 1}))
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _agent_json(tmp_path / "runs" / "r1", busy.pid)
        clock = Clock(time.time())
        w = Watcher(tmp_path, action=["touch", str(marker)], clock=clock)
        clock.t += 3600
        assert w.idle_seconds() == 0 and not w.check()  # a live agent: busy
    finally:
        busy.kill()
        busy.wait()
    clock.t += 30
    assert not w.check() and not marker.exists()  # idle 30 s of the 60
    clock.t += 31
    assert w.check() and marker.exists()
    assert "no run for 1.0 min (--idle-minutes 1)" in (tmp_path / "idle.log").read_text()


def test_ensure_starts_one_watcher_for_a_keep_run_that_stops_the_instance(tmp_path, monkeypatch):
    from runctl_jupyter.agent.idle import PID, main, wanted_minutes

    assert wanted_minutes({"options": {"keep": True}}) == 30.0
    assert wanted_minutes({"options": {"idle_minutes": 5}}) == 5.0
    assert wanted_minutes({"options": {}}) is None
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"options": {"keep": True, "idle_minutes": 0.01}}))
    root = tmp_path / "runctl"
    marker = tmp_path / "stopped"
    args = ["ensure", str(root), "--spec", str(spec), "--poll", "0.1", "--", "touch", str(marker)]
    repo = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", repo)  # the daemon imports runctl_jupyter.agent.idle
    assert main(args) == 0
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, (
            (root / "idle.log").read_text() if (root / "idle.log").exists() else "no log"
        )
        time.sleep(0.05)
    assert json.loads((root / "idle.json").read_text()) == {"minutes": 0.01}
    assert (root / PID).exists()
    # a run that is not kept starts nothing
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"options": {}}))
    assert main(["ensure", str(tmp_path / "other"), "--spec", str(plain)]) == 0
    assert not (tmp_path / "other").exists()


def test_a_running_spot_meter_follows_its_zones_price_found_through_imdsv2(tmp_path, monkeypatch):
    import http.server
    import threading

    import botocore.session
    from botocore.stub import Stubber

    class IMDS(http.server.BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - IMDSv2 token
            self._answer(b"tok")

        def do_GET(self):  # noqa: N802
            ok = self.headers.get("X-aws-ec2-metadata-token") == "tok"
            self._answer(
                b"us-east-1b" if ok and self.path.endswith("availability-zone") else b"",
                200 if ok else 401,
            )

        def _answer(self, body: bytes, code: int = 200) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), IMDS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("RUNCTL_IMDS_URL", f"http://127.0.0.1:{server.server_port}")
    client = botocore.session.get_session().create_client(
        "ec2", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    stub = Stubber(client)
    expected = {
        "InstanceTypes": ["g5.xlarge"], "ProductDescriptions": ["Linux/UNIX"],
        "AvailabilityZone": "us-east-1b", "StartTime": stubbed_any(),
    }  # fmt: skip
    stub.add_response(
        "describe_spot_price_history", _FakeEC2().describe_spot_price_history(), expected
    )
    events: list = []
    try:
        with stub:
            refresher = SpotRefresher(dict(G5_SPOT), every=0.05, client=client)
            m = CostMeter(
                {"target": {"price": G5_SPOT}}, tmp_path, 1,
                lambda kind, **f: events.append(f), lambda reason: None, refresher=refresher,
            )  # fmt: skip
            deadline = time.monotonic() + 5
            while m.rate != 0.4412:
                assert time.monotonic() < deadline, "the refreshed price never arrived"
                m.tick()
                time.sleep(0.02)
            refresher.close()
    finally:
        server.shutdown()
    assert m.rate == 0.4412


def stubbed_any():
    from botocore.stub import ANY

    return ANY


def test_a_kept_instance_started_again_watches_its_idleness_from_boot(tmp_path, monkeypatch):
    """A stopped kept instance runs again with no bootstrap (started by hand, or by EC2
    after a spot interruption stopped it): cloud-init's per-boot script starts the
    watcher, which stops it again when nobody uses it."""
    import subprocess

    from runctl_jupyter.agent.idle import BOOT_HOOK, main, watcher_alive

    per_boot = tmp_path / "per-boot"
    per_boot.mkdir()
    monkeypatch.setenv("RUNCTL_PER_BOOT_DIR", str(per_boot))
    repo = str(Path(__file__).resolve().parent.parent)
    monkeypatch.setenv("PYTHONPATH", repo)
    root = tmp_path / "runctl"
    marker = tmp_path / "stopped"
    args = ["ensure", str(root), "--minutes", "0.01", "--poll", "0.1", "--", "touch", str(marker)]
    assert main(args) == 0
    hook = per_boot / BOOT_HOOK
    assert hook.stat().st_mode & 0o111  # cloud-init runs only executable scripts
    text = hook.read_text()
    assert "runctl_jupyter.agent.idle ensure" in text and "--minutes 0.01" in text
    deadline = time.monotonic() + 10
    while not marker.exists():  # the first watcher stops the instance
        assert time.monotonic() < deadline, (root / "idle.log").read_text()
        time.sleep(0.05)
    while watcher_alive(root):  # it returns after its action, as the instance stops
        assert time.monotonic() < deadline, (root / "idle.log").read_text()
        time.sleep(0.05)
    marker.unlink()
    boot = subprocess.run(["sh", str(hook)], env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert boot.returncode == 0
    deadline = time.monotonic() + 10
    while not marker.exists():  # the boot's watcher stops it again
        assert time.monotonic() < deadline, (root / "idle.log").read_text()
        time.sleep(0.05)
    assert (root / "idle.log").read_text().count("idle watcher started") == 2
