"""The /runctl/api/ endpoints, through a real jupyter_server (pytest-jupyter's
jp_fetch) over a real store: run folders written as the launcher and the agent
write them (spec.json, events.jsonl through the agent's own EventWriter), and
real local runs where a live agent is needed (stop, record)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

from runctl_jupyter.events import EventWriter
from runctl_jupyter.store import Store

pytest_plugins = ["pytest_jupyter.jupyter_server"]


# ---- fixtures ---------------------------------------------------------------------


@pytest.fixture
def runctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "runctl-home"
    home.mkdir()
    monkeypatch.setenv("RUNCTL_HOME", str(home))
    return home


@pytest.fixture
def jp_server_config(runctl_home: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"runctl_jupyter": True}}}


def write_run(
    home: Path,
    run_id: str,
    *,
    experiment: str = "exp",
    name: str | None = None,
    created: float | None = None,
    steps: int = 5,
    status: str | None = "succeeded",
    backend: str = "local",
    cost: tuple[float, float] | None = None,
    store: Store | None = None,
    **spec_fields: object,
) -> None:
    """A run folder as the launcher writes it, and its events as the agent writes them;
    `status=None` leaves it running (with a fresh heartbeat)."""
    run_dir = home / "runs" / run_id
    run_dir.mkdir(parents=True)
    spec = {
        "format": 1,
        "run_id": run_id,
        "name": name or run_id,
        "experiment": experiment,
        "project": "default",
        "kind": "cell",
        "entry": "code.py",
        "params": {"lr": 0.1},
        "backend": backend,
        "created": created if created is not None else time.time(),
        **spec_fields,
    }
    (run_dir / "spec.json").write_text(json.dumps(spec))
    writer = EventWriter(run_dir, attempt=1)
    t0 = time.time() - steps - 1
    writer.write("status", t=t0, status="running", format=1)
    for step in range(steps):
        writer.write("metric", t=t0 + step, step=step, values={"loss": 1.0 / (step + 1), "acc": step / steps})  # fmt: skip
    if cost is not None:
        writer.write("cost", dollars=cost[0], rate=cost[1])
    if status is None:
        writer.write("heartbeat", pid=0)
    else:
        writer.write("exit", status=status, reason=None, exit_code=0, error=None, duration=float(steps))  # fmt: skip
    writer.close()
    (store or Store(home)).add_run(spec)


async def get_json(jp_fetch, *parts: str, **params: str) -> dict:
    response = await jp_fetch("runctl", "api", *parts, params=params or None)
    assert response.code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return json.loads(response.body)


async def error_of(jp_fetch, *parts: str, method: str = "GET", **kwargs) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("runctl", "api", *parts, method=method, **kwargs)
    return info.value.code, json.loads(info.value.response.body)


def start_local_run(code: str, name: str) -> str:
    """A real run on the local backend (real agent process), detached."""
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    session = Session(Runctl(grace_seconds=2.0))
    return session.train(code=code, name=name, experiment="live", detach=True).id


async def wait_status(jp_fetch, run_id: str, want: set[str], timeout: float = 30.0) -> dict:
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        run = await get_json(jp_fetch, "runs", run_id)
        if run["status"] in want:
            return run
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']}"
        await asyncio.sleep(0.2)


# ---- runs -------------------------------------------------------------------------


async def test_runs_are_listed_newest_first_with_last_metrics_and_a_sparkline(jp_fetch, runctl_home):  # fmt: skip
    write_run(runctl_home, "older", created=1000.0, steps=60)
    write_run(runctl_home, "newer", created=2000.0)
    page = await get_json(jp_fetch, "runs")
    assert [r["id"] for r in page["runs"]] == ["newer", "older"]
    older = page["runs"][1]
    assert older["status"] == "succeeded" and older["experiment"] == "exp"
    assert older["metrics"] == {"loss": pytest.approx(1 / 60), "acc": pytest.approx(59 / 60)}
    assert older["spark"]["metric"] == "loss"
    assert 2 <= len(older["spark"]["values"]) <= 40
    assert older["spark"]["values"][0] == 1.0  # the spike at the start is kept
    assert older["cost"] == 0.0 and older["active"] is False
    assert page["next_offset"] is None


async def test_runs_filter_by_experiment_and_status(jp_fetch, runctl_home):
    store = Store(runctl_home)
    write_run(runctl_home, "a1", experiment="a", store=store)
    write_run(runctl_home, "a2", experiment="a", status="failed", store=store)
    write_run(runctl_home, "b1", experiment="b", store=store)
    write_run(runctl_home, "b2", experiment="b", status=None, store=store)
    ids = lambda page: sorted(r["id"] for r in page["runs"])  # noqa: E731
    assert ids(await get_json(jp_fetch, "runs", experiment="a")) == ["a1", "a2"]
    assert ids(await get_json(jp_fetch, "runs", status="failed")) == ["a2"]
    assert ids(await get_json(jp_fetch, "runs", experiment="b", status="succeeded")) == ["b1"]
    assert ids(await get_json(jp_fetch, "runs", status="active")) == ["b2"]


async def test_runs_paginate_with_limit_and_offset(jp_fetch, runctl_home):
    store = Store(runctl_home)
    for i in range(7):
        write_run(runctl_home, f"r{i}", created=100.0 + i, steps=1, store=store)
    first = await get_json(jp_fetch, "runs", limit="3")
    assert [r["id"] for r in first["runs"]] == ["r6", "r5", "r4"]
    assert first["next_offset"] == 3
    last = await get_json(jp_fetch, "runs", limit="3", offset="6")
    assert [r["id"] for r in last["runs"]] == ["r0"]
    assert last["next_offset"] is None


async def test_a_bad_page_argument_is_a_400_that_says_why(jp_fetch, runctl_home):
    code, body = await error_of(jp_fetch, "runs", params={"limit": "lots"})
    assert code == 400 and body["error"] == "BadRequest"
    assert "limit must be a whole number" in body["message"]
    code, body = await error_of(jp_fetch, "runs", params={"status": "sleeping"})
    assert code == 400 and "unknown status 'sleeping'" in body["message"]


async def test_run_text_comes_back_as_data_not_markup(jp_fetch, runctl_home):
    write_run(runctl_home, "x1", name="<script>alert(1)</script>", experiment="</table>")
    run = (await get_json(jp_fetch, "runs"))["runs"][0]
    assert run["name"] == "<script>alert(1)</script>" and run["experiment"] == "</table>"


# ---- one run ----------------------------------------------------------------------


async def test_run_detail_has_params_and_downsampled_metrics(jp_fetch, runctl_home):
    write_run(runctl_home, "long", steps=3000)
    run = await get_json(jp_fetch, "runs", "long", max_points="100")
    assert run["params"] == {"lr": 0.1}
    loss = run["series"]["loss"]
    assert loss["count"] == 3000
    assert len(loss["steps"]) == len(loss["values"]) <= 100
    assert max(loss["values"]) == 1.0 and min(loss["values"]) == pytest.approx(1 / 3000)


async def test_a_run_is_found_by_name_or_id_prefix(jp_fetch, runctl_home):
    write_run(runctl_home, "abc123", name="my-run")
    assert (await get_json(jp_fetch, "runs", "my-run"))["id"] == "abc123"
    assert (await get_json(jp_fetch, "runs", "abc"))["id"] == "abc123"


async def test_an_unknown_run_is_a_404_json(jp_fetch, runctl_home):
    code, body = await error_of(jp_fetch, "runs", "nope")
    assert code == 404
    assert body["error"] == "RunNotFound" and "no run 'nope'" in body["message"]


async def test_an_ambiguous_prefix_is_a_400_listing_the_candidates(jp_fetch, runctl_home):
    store = Store(runctl_home)
    write_run(runctl_home, "dup1", store=store)
    write_run(runctl_home, "dup2", store=store)
    code, body = await error_of(jp_fetch, "runs", "dup")
    assert code == 400 and body["error"] == "AmbiguousRun"
    assert "dup1" in body["message"] and "dup2" in body["message"]


# ---- stop -------------------------------------------------------------------------


async def test_stop_stops_a_live_local_run(jp_fetch, runctl_home):
    run_id = start_local_run(
        "import time\nfor i in range(600):\n    runctl.log(step=i, x=i)\n    time.sleep(0.1)\n",
        name="forever",
    )
    await wait_status(jp_fetch, run_id, {"running"})
    response = await jp_fetch(
        "runctl", "api", "runs", run_id, "stop", method="POST", body=json.dumps({})
    )
    assert response.code == 202
    assert json.loads(response.body)["stopping"] is True
    run = await wait_status(jp_fetch, run_id, {"stopped", "failed", "succeeded"})
    assert run["status"] == "stopped" and run["reason"] == "user"


async def test_stopping_an_ended_run_is_a_409(jp_fetch, runctl_home):
    write_run(runctl_home, "done")
    code, body = await error_of(jp_fetch, "runs", "done", "stop", method="POST", body="{}")
    assert code == 409 and body["error"] == "RunNotActive"
    assert "succeeded, not running" in body["message"]


async def test_stop_refuses_a_body_that_is_not_json(jp_fetch, runctl_home):
    write_run(runctl_home, "live", status=None)
    code, body = await error_of(jp_fetch, "runs", "live", "stop", method="POST", body="force")
    assert code == 400 and "must be JSON" in body["message"]


# ---- records ----------------------------------------------------------------------


async def test_open_record_copies_it_into_the_server_root(jp_fetch, runctl_home, jp_root_dir):
    run_id = start_local_run("runctl.log(step=0, loss=0.5)\nprint('hello')\n", name="tiny")
    await wait_status(jp_fetch, run_id, {"succeeded"})
    response = await jp_fetch("runctl", "api", "runs", run_id, "open-record", method="POST", body="")  # fmt: skip
    answer = json.loads(response.body)
    assert answer["copied"] is True
    assert answer["path"] == f"runctl-records/tiny-{run_id}.ipynb"
    copy = json.loads((Path(jp_root_dir) / answer["path"]).read_text())
    original = json.loads((runctl_home / "runs" / run_id / "record.ipynb").read_text())
    text = lambda nb: ["".join(c["source"]) for c in nb["cells"]]  # noqa: E731
    assert text(copy) == text(original) and "Run tiny" in text(copy)[0]


async def test_a_run_without_a_record_yet_is_a_409(jp_fetch, runctl_home):
    write_run(runctl_home, "busy", status=None)
    code, body = await error_of(jp_fetch, "runs", "busy", "open-record", method="POST", body="")
    assert code == 409 and "written when the run ends" in body["message"]


# ---- summary, resources, cost -------------------------------------------------------


async def test_summary_counts_live_runs_and_their_burn_rate(jp_fetch, runctl_home):
    store = Store(runctl_home)
    write_run(runctl_home, "c1", status=None, backend="aws", cost=(0.5, 1.0), store=store)
    write_run(runctl_home, "c2", status=None, backend="aws", cost=(0.2, 0.24), store=store)
    write_run(runctl_home, "c3", backend="aws", cost=(3.0, 1.0), store=store)
    summary = await get_json(jp_fetch, "summary")
    assert summary["running"] == 2 and summary["active"] == 2
    assert summary["rate"] == pytest.approx(1.24)


async def test_cost_sums_run_costs_and_local_runs_cost_nothing(jp_fetch, runctl_home):
    store = Store(runctl_home)
    write_run(runctl_home, "l1", experiment="e1", store=store)
    write_run(runctl_home, "a1", experiment="e1", backend="aws", cost=(1.5, 0.9), store=store)
    write_run(runctl_home, "a2", experiment="e2", backend="aws", cost=(0.25, 0.9), store=store)
    cost = await get_json(jp_fetch, "cost")
    assert cost["total"] == pytest.approx(1.75)
    assert cost["by_backend"] == {"local": 0.0, "aws": pytest.approx(1.75)}
    assert cost["by_experiment"] == {"e1": pytest.approx(1.5), "e2": pytest.approx(0.25)}
    assert cost["runs"] == 3 and cost["rate"] == 0.0


async def test_resources_without_aws_runs_is_an_empty_list_with_a_note(jp_fetch, runctl_home):
    resources = await get_json(jp_fetch, "resources")
    assert resources["resources"] == []
    assert "No AWS runs" in resources["note"]


# ---- authentication ----------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "runs"),
        ("GET", "runs/r1"),
        ("POST", "runs/r1/stop"),
        ("POST", "runs/r1/open-record"),
        ("GET", "summary"),
        ("GET", "resources"),
        ("GET", "cost"),
    ],
)
async def test_a_request_without_the_token_is_refused(
    jp_fetch, runctl_home, jp_base_url, jp_http_port, method, path
):
    write_run(runctl_home, "r1", status=None)
    await jp_fetch("runctl", "api", "summary")  # the server is up and the route exists
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}runctl/api/{path}"
    with pytest.raises(HTTPClientError) as info:
        await AsyncHTTPClient().fetch(url, method=method, body="{}" if method == "POST" else None)
    assert info.value.code == 403
    # and nothing was stopped
    assert (await get_json(jp_fetch, "runs", "r1"))["status"] == "running"


# ---- budget -----------------------------------------------------------------------


async def test_a_page_of_50_from_1000_runs_answers_in_under_100_ms(jp_fetch, runctl_home):
    store = Store(runctl_home)
    for i in range(1000):
        write_run(runctl_home, f"run{i:04d}", created=1000.0 + i, steps=20, store=store)
    await get_json(jp_fetch, "runs", limit="50")  # first call: connection, caches
    times = []
    for offset in ("0", "500", "950"):
        start = time.perf_counter()
        page = await get_json(jp_fetch, "runs", limit="50", offset=offset)
        times.append(time.perf_counter() - start)
        assert len(page["runs"]) == 50 and all(r["spark"] for r in page["runs"])
    print(f"runs page of 50 from 1000: {[round(t * 1000, 1) for t in times]} ms", file=sys.stderr)
    assert sorted(times)[1] < 0.1
