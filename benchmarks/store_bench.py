"""store_list / store_metrics: reading runs back, ours vs MLflow's sqlite store.

The same data on both sides (benchmarks/dataset.py): 10,000 runs in 10
experiments with params and a few metric points each, 100 of which carry 1,000
steps x 3 metrics. Ours: run folders written with the agent's EventWriter and
spec.json, indexed by `Store.reindex()`. MLflow: the same runs logged with
MlflowClient into a sqlite store (built once per size and cached under
benchmarks/.work/).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import dataset
from .common import WORK, Ctx, NotLanded, PeerError, Result, alternate, median, timed

ABOUT = {
    "store_list": (
        "seconds to list every run of a 10,000-run store newest first (with params and final "
        "metrics) plus filter one experiment's failed runs: `Store.refresh()` + "
        "`Store.list_runs(limit=None)` + `Store.list_runs(experiment=..., status='failed')` vs "
        "MLflow sqlite `search_runs` (all experiments, ordered by start time, then "
        "`attributes.status = 'FAILED'` in one experiment)."
    ),
    "store_metrics": (
        "seconds to read the full history of 3 metrics of 100 runs x 1,000 steps "
        "(300,000 points): `Store.metrics(run_id, keys)` per run vs MLflow sqlite "
        "`get_metric_history(run_id, key)` per run and metric."
    ),
}


def _write_run_folders(home: Path, sizes: dataset.Sizes) -> None:
    from runctl_jupyter.events import FORMAT, EventWriter

    runs_dir = home / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    for row in dataset.runs(sizes):
        folder = runs_dir / row.run_id
        folder.mkdir()
        spec = {
            "format": 1,
            "run_id": row.run_id,
            "name": row.name,
            "experiment": row.experiment,
            "project": "default",
            "owner": "bench",
            "tags": [],
            "kind": "cell",
            "entry": "code.py",
            "script_path": None,
            "args": [],
            "params": row.params,
            "objects": [],
            "workdir": str(home),
            "python": "python3",
            "metrics": [],
            "max_hours": None,
            "grace_seconds": 10,
            "heartbeat_seconds": 5,
            "backend": "local",
            "target": {},
            "sync": None,
            "created": row.created,
            "rerun_of": None,
            "sweep_id": None,
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        (folder / "params.json").write_text(json.dumps(row.params))
        writer = EventWriter(folder, attempt=1)
        writer.write("status", t=row.created + 0.5, status="starting", format=FORMAT)
        writer.write("status", t=row.created + 0.9, status="running")
        for step in range(row.steps):
            writer.write(
                "metric",
                t=dataset.point_time(row, step),
                step=step,
                values={m: dataset.value(row.index, step, m) for m in dataset.METRICS},
            )
        reason = {"succeeded": None, "failed": "exception", "stopped": "user"}[row.status]
        writer.write(
            "exit",
            t=row.created + row.duration,
            status=row.status,
            reason=reason,
            exit_code=0 if row.status == "succeeded" else 1,
            error=None,
            duration=row.duration,
        )
        # close() fsyncs every file: right for the agent, pointless for 10,000 fixtures
        writer.flush()
        writer._file.close()


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.store import Store
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.store: {exc}") from exc

    sizes = dataset.Sizes(
        runs=ctx.size(10_000, 200),
        hist_runs=ctx.size(100, 5),
        steps=ctx.size(1_000, 50),
    )
    home = ctx.scratch("store_home")
    build_ours = timed(lambda: _write_run_folders(home, sizes))
    store = Store(home)
    index_ours = timed(store.reindex)
    hist_ids = [row.run_id for row in dataset.runs(sizes) if row.index < sizes.hist_runs]
    expected_filter = dataset.expected_filter_count(sizes)

    counts: dict[str, int] = {}

    def ours_list() -> float:
        def go() -> None:
            store.refresh()
            counts["ours_list"] = len(store.list_runs(limit=None))
            counts["ours_filter"] = len(
                store.list_runs(
                    experiment=dataset.FILTER_EXPERIMENT, status=dataset.FILTER_STATUS, limit=None
                )
            )

        return timed(go)

    def ours_metrics() -> float:
        def go() -> None:
            points = 0
            for rid in hist_ids:
                for series in store.metrics(rid, keys=list(dataset.METRICS)).values():
                    points += len(series)
            counts["ours_points"] = points

        return timed(go)

    list_contenders = {"ours": ours_list}
    metric_contenders = {"ours": ours_metrics}
    notes: list[str] = []
    detail: dict = {
        "sizes": sizes.__dict__,
        "ours_build_seconds": round(build_ours, 2),
        "ours_reindex_seconds": round(index_ours, 2),
    }
    peer = ctx.peer
    if peer is None or not peer.has("mlflow"):
        notes.append(
            "MLflow not measured: no peers venv with mlflow (python -m benchmarks --setup)"
        )
    else:
        db = WORK / f"mlflow-store-{sizes.key()}-{peer.versions['mlflow']}.db"
        info = peer.call("store_build", db=str(db), sizes=sizes.__dict__)
        detail["mlflow_build_seconds"] = round(info["build_seconds"], 1)
        uri = info["uri"]
        exp_ids = list(info["experiments"].values())
        filter_exp = info["experiments"][dataset.FILTER_EXPERIMENT]

        def mlflow_list() -> float | None:
            try:
                answer = peer.call(
                    "store_list", uri=uri, experiment_ids=exp_ids, filter_experiment_id=filter_exp
                )
            except PeerError as exc:
                notes.append(f"mlflow store_list failed: {exc}")
                return None
            counts["mlflow_list"], counts["mlflow_filter"] = answer["n_list"], answer["n_filter"]
            return answer["list"] + answer["filter"]

        def mlflow_metrics() -> float | None:
            try:
                answer = peer.call("store_metrics", uri=uri, run_ids=info["hist_ids"])
            except PeerError as exc:
                notes.append(f"mlflow store_metrics failed: {exc}")
                return None
            counts["mlflow_points"] = answer["points"]
            return answer["seconds"]

        list_contenders["mlflow_sqlite"] = mlflow_list
        metric_contenders["mlflow_sqlite"] = mlflow_metrics

    # one untimed pass each (page cache, connections), then alternate
    if not ctx.quick:
        for fn in (*list_contenders.values(), *metric_contenders.values()):
            fn()
    list_samples = alternate(list_contenders, ctx.reps)
    metric_samples = alternate(metric_contenders, ctx.reps)
    store.close()

    # both sides must have read the same thing, or the comparison means nothing
    expected_points = sizes.hist_runs * sizes.steps * len(dataset.METRICS)
    checks = {
        "list": (sizes.runs, counts.get("ours_list"), counts.get("mlflow_list")),
        "filter": (expected_filter, counts.get("ours_filter"), counts.get("mlflow_filter")),
        "points": (expected_points, counts.get("ours_points"), counts.get("mlflow_points")),
    }
    for what, (want, ours_n, theirs_n) in checks.items():
        if ours_n != want:
            raise AssertionError(f"store {what}: ours read {ours_n}, expected {want}")
        if theirs_n is not None and theirs_n != want:
            raise AssertionError(f"store {what}: mlflow read {theirs_n}, expected {want}")
    detail["counts"] = {k: v[0] for k, v in checks.items()}

    def result(samples: dict[str, list[float]]) -> Result:
        meds = {k: median(v) for k, v in samples.items()}
        ours = meds.pop("ours")
        return Result(
            unit="s",
            better="lower",
            ours=round(ours, 4),
            peers={k: round(v, 4) for k, v in meds.items()},
            detail={
                **detail,
                "reps": ctx.reps,
                "samples": {k: [round(x, 4) for x in v] for k, v in samples.items()},
                "peer_over_ours": {k: round(v / ours, 2) for k, v in meds.items()},
            },
            notes=list(notes),
        )

    return {"store_list": result(list_samples), "store_metrics": result(metric_samples)}


# -- the team case (docs/teams.md) --------------------------------------------------------

TEAM = "bench"
TEAM_OWNERS = 10
TEAM_LIST_BUDGET = 1.0  # seconds: `runs --owner all` over 10,000 team runs (docs/benchmarks.md)
TEAM_ABOUT = (
    "seconds to list 10,000 teammates' runs (10 owners) newest first plus filter one project, "
    "after a pull of their 10,000 published summaries from a moto S3 on 127.0.0.1: "
    "`Store.list_runs(owner='all', limit=None)` + `Store.list_runs(owner='all', project=...)`. "
    "The detail has the pull: its seconds, ListObjectsV2 and GetObject calls, and a second "
    "pull's (nothing new: no GetObject)."
)


def publish_summaries(s3, bucket: str, n: int, owners: int = TEAM_OWNERS, team: str = TEAM) -> None:  # noqa: ANN001
    """`n` runs' summary rows as their agents publish them (agent/team.py): one index
    entry each, `owners` members, in a thread pool (untimed)."""
    from concurrent.futures import ThreadPoolExecutor

    from runctl_jupyter import team_keys

    t0 = 1_764_380_000.0

    def put(i: int) -> None:
        owner, run_id = f"member{i % owners}", f"{i:010x}"
        row = {
            "id": run_id, "name": f"run-{i}", "owner": owner, "project": f"p{i % 7}",
            "experiment": f"exp-{i % 10}", "kind": "cell", "backend": "local",
            "created": t0 + i, "status": "succeeded" if i % 5 else "running",
            "started": t0 + i + 1, "ended": t0 + i + 60 if i % 5 else None,
            "duration": 59.0, "attempt_started": None if i % 5 else t0 + i + 1,
            "cost": 0.0, "params": {"lr": 0.001 * (i % 10)},
            "final_metrics": {"loss": 1.0 / (i + 1), "acc": (i % 100) / 100},
            "events": team_keys.run_prefix(team, owner, run_id) + "events/",
        }  # fmt: skip
        key = team_keys.index_key(team, owner, int((t0 + i) * 1000), run_id)
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(row).encode())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, range(n)))


def count_calls(s3) -> dict[str, int]:  # noqa: ANN001
    """ListObjectsV2 / GetObject calls of a client, counted by botocore's events."""
    calls: dict[str, int] = {}

    def count(event_name: str, **_: object) -> None:
        name = event_name.rsplit(".", 1)[-1]
        calls[name] = calls.get(name, 0) + 1

    s3.meta.events.register("before-call.s3.*", count)
    return calls


def team_list(store, project: str = "p3") -> tuple[int, int]:  # noqa: ANN001
    """What `runs --owner all` and `runs --owner all --project P` read."""
    return len(store.list_runs(owner="all", limit=None)), len(
        store.list_runs(owner="all", project=project, limit=None)
    )


def run_team(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.aws.clients import Clients
        from runctl_jupyter.aws.team_pull import pull
        from runctl_jupyter.store import Store
    except ImportError as exc:
        raise NotLanded(f"the team store: {exc}") from exc
    from .aws_api_calls import _moto

    n = ctx.size(10_000, 100)
    home = ctx.scratch("team_home")
    with _moto():
        s3 = Clients(region="us-east-1").s3
        s3.create_bucket(Bucket="bench")
        build = timed(lambda: publish_summaries(s3, "bench", n))
        store = Store(home)
        calls = count_calls(s3)
        found: dict = {}
        first = timed(lambda: found.update(first=pull(s3, "bench", TEAM, store.connection())))
        first_calls = dict(calls)
        calls.clear()
        second = timed(lambda: found.update(second=pull(s3, "bench", TEAM, store.connection())))
        second_calls = dict(calls)
    counts: dict[str, tuple[int, int]] = {}
    samples = alternate(
        {"ours": lambda: timed(lambda: counts.update(n=team_list(store)))}, ctx.reps
    )
    store.close()
    if counts["n"][0] != n or found["first"].rows != n:
        raise AssertionError(
            f"team list: read {counts['n']}, pulled {found['first'].rows}, expected {n}"
        )
    ours = median(samples["ours"])
    return {
        "store_team_list": Result(
            unit="s",
            better="lower",
            ours=round(ours, 4),
            peers={},
            detail={
                "runs": n,
                "owners": TEAM_OWNERS,
                "publish_seconds": round(build, 2),
                "pull_seconds": round(first, 2),
                "pull_calls": first_calls,
                "second_pull_seconds": round(second, 3),
                "second_pull_calls": second_calls,
                "listed": list(counts["n"]),
                "reps": ctx.reps,
                "samples": [round(x, 4) for x in samples["ours"]],
            },
            notes=[f"budget: under {TEAM_LIST_BUDGET} s (as today's local listing of 10,000 runs)"],
        )
    }
