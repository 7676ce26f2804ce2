"""The peers' side (mlflow, wandb), run in the benchmarks venv as a long-lived worker.

Protocol: one JSON request a line on stdin ({"op": ..., ...}), one JSON answer a
line ({"ok": true, "value": ...} or {"ok": false, "error": ...}) on the original
stdout; everything the libraries print goes to stderr (the harness logs it).
Each op times itself, so process start and imports never count.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from benchmarks import dataset

_OUT = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
sys.stdout = sys.stderr  # library chatter never corrupts the protocol

_state: dict[str, Any] = {}
_MLFLOW_STATUS = {"succeeded": "FINISHED", "failed": "FAILED", "stopped": "KILLED"}


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def op_versions() -> dict:
    return {
        "mlflow": _version("mlflow"),
        "wandb": _version("wandb"),
        "python": sys.version.split()[0],
    }


# -- per-step logging ------------------------------------------------------------
def op_log_setup(kind: str, dir: str) -> None:
    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    if kind in ("mlflow_file", "mlflow_sqlite", "mlflow_sqlite_async"):
        from mlflow import MlflowClient

        uri = (
            folder.joinpath("mlruns").as_uri()
            if kind == "mlflow_file"
            else "sqlite:///" + str(folder / "mlflow.db")
        )
        import mlflow

        mlflow.set_tracking_uri(uri)
        exp = mlflow.set_experiment("log-step")
        client = MlflowClient(uri)
        run = client.create_run(exp.experiment_id)
        # mlflow.log_metrics is the fluent API users call; bind it to this run.
        _state[kind] = (
            "mlflow",
            uri,
            run.info.run_id,
            not kind.endswith("_async"),
            exp.experiment_id,
        )
    elif kind == "wandb_offline":
        import wandb

        run = wandb.init(mode="offline", project="log-step", dir=str(folder), reinit="create_new")
        _state[kind] = ("wandb", run)
    else:
        raise ValueError(kind)


def op_log_step(kind: str, n: int) -> float:
    """Microseconds per call of the peer's per-step logging with 3 scalars."""
    entry = _state[kind]
    if entry[0] == "mlflow":
        import mlflow

        _, uri, run_id, synchronous, experiment_id = entry
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_run(run_id=run_id):
            step0 = _state.setdefault(kind + ":step", 0)
            log = mlflow.log_metrics
            start = time.perf_counter()
            for i in range(step0, step0 + n):
                log(
                    {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.001},
                    step=i,
                    synchronous=synchronous,
                )
            elapsed = time.perf_counter() - start
            _state[kind + ":step"] = step0 + n
            if not synchronous:
                mlflow.flush_async_logging()  # untimed: the queue drains before the next contender
            # end_run would mark the run finished; start_run(run_id) resumes it next time.
        return elapsed / n * 1e6
    run = entry[1]
    step0 = _state.setdefault(kind + ":step", 0)
    start = time.perf_counter()
    for i in range(step0, step0 + n):
        run.log({"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.001}, step=i)
    elapsed = time.perf_counter() - start
    _state[kind + ":step"] = step0 + n
    return elapsed / n * 1e6


def op_log_finish(kind: str) -> None:
    entry = _state.pop(kind, None)
    if entry and entry[0] == "wandb":
        entry[1].finish()


# -- metric latency (log in one process, poll from another) ----------------------
LOGGER = """
import sys, time
import mlflow
uri, run_id, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
mlflow.set_tracking_uri(uri)
with mlflow.start_run(run_id=run_id):
    for i in range(n):
        mlflow.log_metric("t", time.time(), step=i)
        time.sleep(0.02)
"""


def op_latency(dir: str, n: int, poll: float, timeout: float = 120.0) -> list[float]:
    """A separate process logs `n` points (value = time.time() at the call, one every
    20 ms) with mlflow.log_metric into a sqlite store; this process polls
    get_metric_history every `poll` seconds. Returns each point's latency in ms."""
    import subprocess

    from mlflow import MlflowClient

    folder = Path(dir)
    folder.mkdir(parents=True, exist_ok=True)
    uri = "sqlite:///" + str(folder / "latency.db")
    client = MlflowClient(uri)
    exp_id = client.create_experiment(f"latency-{time.time_ns()}")
    run_id = client.create_run(exp_id).info.run_id
    logger = subprocess.Popen(
        [sys.executable, "-c", LOGGER, uri, run_id, str(n)], stdout=sys.stderr, stderr=sys.stderr
    )
    seen: dict[int, float] = {}
    deadline = time.time() + timeout
    try:
        while len(seen) < n and time.time() < deadline:
            history = client.get_metric_history(run_id, "t")
            now = time.time()
            for m in history:
                if m.step not in seen:
                    seen[m.step] = (now - m.value) * 1000
            if logger.poll() is not None and len(seen) < n and not history:
                break
            time.sleep(poll)
    finally:
        if logger.poll() is None:
            logger.kill()
        logger.wait()
    if len(seen) < n:
        raise RuntimeError(
            f"only {len(seen)} of {n} points arrived (logger exit {logger.returncode})"
        )
    return list(seen.values())


# -- store: list/filter and metric history ---------------------------------------
def op_store_build(db: str, sizes: dict) -> dict:
    """Build an MLflow sqlite store holding the dataset (cached: built once per size)."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    sz = dataset.Sizes(**sizes)
    marker = Path(db + ".done")
    uri = "sqlite:///" + db
    if marker.exists():
        return json.loads(marker.read_text())
    for p in (Path(db), marker):
        p.unlink(missing_ok=True)
    client = MlflowClient(uri)
    exp_ids = {f"exp-{e}": client.create_experiment(f"exp-{e}") for e in range(sz.experiments)}
    start = time.perf_counter()
    hist_ids = []
    for row in dataset.runs(sz):
        run = client.create_run(
            exp_ids[row.experiment],
            start_time=int(row.created * 1000),
            run_name=row.name,
            tags={"runctl.bench": "1"},
        )
        rid = run.info.run_id
        metrics = [
            Metric(m, dataset.value(row.index, s, m), int(dataset.point_time(row, s) * 1000), s)
            for s in range(row.steps)
            for m in dataset.METRICS
        ]
        params = [Param(k, str(v)) for k, v in row.params.items()]
        for chunk in range(0, max(len(metrics), 1), 1000):
            client.log_batch(
                rid,
                metrics=metrics[chunk : chunk + 1000],
                params=params if chunk == 0 else [],
                tags=[RunTag("n", str(row.index))] if chunk == 0 else [],
            )
        client.set_terminated(
            rid, _MLFLOW_STATUS[row.status], end_time=int((row.created + row.duration) * 1000)
        )
        if row.index < sz.hist_runs:
            hist_ids.append(rid)
    info = {
        "uri": uri,
        "experiments": exp_ids,
        "hist_ids": hist_ids,
        "build_seconds": time.perf_counter() - start,
    }
    marker.write_text(json.dumps(info))
    return info


def _client(uri: str):
    key = "client:" + uri
    if key not in _state:
        from mlflow import MlflowClient

        _state[key] = MlflowClient(uri)
    return _state[key]


def op_store_list(uri: str, experiment_ids: list[str], filter_experiment_id: str) -> dict:
    """Seconds to list every run newest first, and to filter one experiment's failed runs."""
    client = _client(uri)
    start = time.perf_counter()
    rows = []
    token = None
    while True:
        page = client.search_runs(
            experiment_ids,
            max_results=50_000,
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        rows.extend(page)
        token = page.token
        if not token:
            break
    listed = time.perf_counter() - start
    start = time.perf_counter()
    found = client.search_runs(
        [filter_experiment_id], filter_string="attributes.status = 'FAILED'", max_results=50_000
    )
    filtered = time.perf_counter() - start
    return {"list": listed, "filter": filtered, "n_list": len(rows), "n_filter": len(found)}


def op_store_metrics(uri: str, run_ids: list[str]) -> dict:
    """Seconds to read the whole history of 3 metrics of each run."""
    client = _client(uri)
    start = time.perf_counter()
    points = 0
    for rid in run_ids:
        for m in dataset.METRICS:
            points += len(client.get_metric_history(rid, m))
    return {"seconds": time.perf_counter() - start, "points": points}


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            _OUT.write(json.dumps({"ok": True, "value": None}) + "\n")
            break
        try:
            value = OPS[op](**request)
            answer = {"ok": True, "value": value}
        except Exception as exc:  # report, keep serving
            traceback.print_exc()
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        _OUT.write(json.dumps(answer) + "\n")
    for kind, entry in list(_state.items()):
        if isinstance(entry, tuple) and entry[0] == "wandb":
            op_log_finish(kind)


if __name__ == "__main__":
    main()
