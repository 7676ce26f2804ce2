"""metric_latency: from `runctl.log` in a local run to the notebook's series, ms.

A detached run (`Session().train(code=..., detach=True)`, local backend) logs a
point every 20 ms whose value is `time.time()` at the call; the harness polls
`store.refresh(run_id)` every `c.Runctl.refresh_interval` (what the live view
does) and records, for every metric event it gets back, now - the logged time.
The path measured: runtime buffer -> its 50 ms flush -> the agent's tail ->
events.jsonl -> the store's refresh. Budget (issue 2): p50 < 250 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .common import Ctx, NotLanded, PeerError, Result, percentile

ABOUT = {
    "metric_latency": (
        "p50 in ms from `runctl.log(step=i, t=time.time())` in a detached local run "
        "(`Session().train(code=..., detach=True)`, one point every 20 ms) to the point "
        "arriving from `store.refresh(run_id)`, polled at `c.Runctl.refresh_interval` as the "
        "live view does (runtime flush -> agent tail -> events.jsonl -> store). Peer: a "
        "separate process calling `mlflow.log_metric` (sqlite store) while the harness polls "
        "`get_metric_history` at the same interval."
    ),
    "metric_latency_p99": "p99 of the same samples as `metric_latency`.",
}

CODE = """
import time
for i in range({n}):
    runctl.log(step=i, t=time.time())
    time.sleep(0.02)
"""


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.session: {exc}") from exc

    folder = ctx.scratch("latency")
    session = Session(config=Runctl(home=str(folder / "home")))
    store = session.store
    interval = session.config.refresh_interval
    n = ctx.size(150, 25)
    runs = ctx.size(ctx.reps, 1)
    notes: list[str] = []

    def ours() -> list[float]:
        run = session.train(code=CODE.format(n=n), experiment="latency", detach=True)
        got: list[float] = []
        deadline = time.time() + 60 + n * 0.1
        while time.time() < deadline:
            events = store.refresh(run.id)
            now = time.time()
            for event in events:
                if event.get("type") == "metric" and "t" in event.get("values", {}):
                    got.append((now - event["values"]["t"]) * 1000)
            if store.get(run.id)["status"] in ("succeeded", "failed", "stopped", "lost"):
                # whatever came with the final refresh was counted above
                break
            time.sleep(interval)
        if len(got) != n:
            raise AssertionError(f"latency run {run.id}: got {len(got)} of {n} points")
        return got

    contenders: dict[str, Callable[[], list[float] | None]] = {"ours": ours}
    peer = ctx.peer
    if peer is not None and peer.has("mlflow"):

        def mlflow_sqlite() -> list[float] | None:
            try:
                return peer.call("latency", dir=str(folder / "mlflow"), n=n, poll=interval)
            except PeerError as exc:
                notes.append(f"mlflow latency failed: {exc}")
                return None

        contenders["mlflow_sqlite"] = mlflow_sqlite
    else:
        notes.append("MLflow not measured: no peers venv with mlflow")

    pooled: dict[str, list[float]] = {name: [] for name in contenders}
    per_run_p50: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(runs):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            if name not in pooled:
                continue
            got = contenders[name]()
            if got is None:
                pooled.pop(name)
                continue
            pooled[name].extend(got)
            per_run_p50[name].append(round(percentile(got, 50), 1))
    p50 = {name: percentile(values, 50) for name, values in pooled.items()}
    p99 = {name: percentile(values, 99) for name, values in pooled.items()}
    detail = {
        "runs_per_contender": runs,
        "points_per_run": n,
        "poll_interval_s": interval,
        "per_run_p50_ms": per_run_p50,
        "max_ms": {name: round(max(values), 1) for name, values in pooled.items()},
    }
    ours50, ours99 = p50.pop("ours"), p99.pop("ours")
    return {
        "metric_latency": Result(
            unit="ms",
            better="lower",
            ours=round(ours50, 1),
            peers={k: round(v, 1) for k, v in p50.items()},
            detail=detail,
            notes=notes,
        ),
        "metric_latency_p99": Result(
            unit="ms",
            better="lower",
            ours=round(ours99, 1),
            peers={k: round(v, 1) for k, v in p99.items()},
            detail=detail,
            notes=notes,
        ),
    }
