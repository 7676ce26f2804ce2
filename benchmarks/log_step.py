"""log_step: the cost of one per-step logging call with 3 scalars, in microseconds.

ours: `runctl.log(step=i, loss=..., acc=..., lr=...)` inside a run (the runtime
writes a buffered line to runtime/<attempt>-<pid>.jsonl; a daemon thread flushes
every 50 ms). Peers: the same record written as one JSON line to a buffered file
(the floor), `mlflow.log_metrics` on the file store and on the sqlite store
(synchronous, the default; and sqlite with synchronous=False), and `wandb.log`
offline. Budgets (issue 2): within 2x of the JSON-line write, at least 50x
cheaper than mlflow's file store.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable

from .common import Ctx, PeerError, Result, alternate, median

PEER_KINDS = ("mlflow_file", "mlflow_sqlite", "mlflow_sqlite_async", "wandb_offline")


def _runtime_for(run_dir: str):
    """The package's `runctl` singleton, configured for a run the way the agent
    configures a runner (RUNCTL_RUN_DIR, RUNCTL_ATTEMPT)."""
    saved = {k: os.environ.get(k) for k in ("RUNCTL_RUN_DIR", "RUNCTL_ATTEMPT", "RUNCTL_RUN_ID")}
    os.environ.update(
        {"RUNCTL_RUN_DIR": run_dir, "RUNCTL_ATTEMPT": "1", "RUNCTL_RUN_ID": "benchlogstep"}
    )
    try:
        if "runctl_jupyter.runtime" in sys.modules:
            module = importlib.reload(sys.modules["runctl_jupyter.runtime"])
        else:
            module = importlib.import_module("runctl_jupyter.runtime")
        runctl = module.runctl
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert runctl.active, "runtime did not pick up RUNCTL_RUN_DIR"
    return runctl


def run(ctx: Ctx) -> dict[str, Result]:
    folder = ctx.scratch("log_step")
    run_dir = folder / "run"
    run_dir.mkdir()
    n_fast = ctx.size(20_000, 2_000)

    runctl = _runtime_for(str(run_dir))
    step = {"ours": 0}
    # process CPU time beside wall time: on a loaded machine it is far steadier, and it
    # still counts the runtime's flush thread (same process)
    cpu: dict[str, list[float]] = {"ours": [], "jsonl_buffered": []}

    def ours() -> float:
        log = runctl.log
        i0 = step["ours"]
        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(i0, i0 + n_fast):
            log(step=i, loss=1.0 / (i + 1), acc=0.5, lr=0.001)
        elapsed = time.perf_counter() - start
        cpu["ours"].append((time.process_time() - cpu0) / n_fast * 1e6)
        step["ours"] = i0 + n_fast
        return elapsed / n_fast * 1e6

    jsonl = open(folder / "plain.jsonl", "a", buffering=1 << 16)  # noqa: SIM115 - lives for the run
    step["jsonl"] = 0

    def jsonl_buffered() -> float:
        write, dumps, now = jsonl.write, json.dumps, time.time
        i0 = step["jsonl"]
        cpu0, start = time.process_time(), time.perf_counter()
        for i in range(i0, i0 + n_fast):
            record = {
                "t": now(),
                "type": "metric",
                "step": i,
                "values": {"loss": 1.0 / (i + 1), "acc": 0.5, "lr": 0.001},
            }
            write(dumps(record) + "\n")
        elapsed = time.perf_counter() - start
        cpu["jsonl_buffered"].append((time.process_time() - cpu0) / n_fast * 1e6)
        step["jsonl"] = i0 + n_fast
        return elapsed / n_fast * 1e6

    contenders: dict[str, Callable[[], float | None]] = {
        "ours": ours,
        "jsonl_buffered": jsonl_buffered,
    }
    notes: list[str] = []
    peer = ctx.peer
    sizes = {
        "mlflow_file": ctx.size(1_000, 50),
        "mlflow_sqlite": ctx.size(150, 20),
        "mlflow_sqlite_async": ctx.size(1_000, 50),
        "wandb_offline": ctx.size(2_000, 100),
    }
    if peer is None:
        notes.append("peers not measured: no peers venv (python -m benchmarks --setup)")
    else:
        for kind in PEER_KINDS:
            package = kind.split("_")[0]
            if not peer.has(package):
                notes.append(f"{kind}: {package} is not installed in the peers venv")
                continue
            try:
                peer.call("log_setup", kind=kind, dir=str(folder / kind))
                peer.call("log_step", kind=kind, n=min(20, sizes[kind]))  # warm-up
            except PeerError as exc:
                notes.append(f"{kind}: could not run here ({exc})")
                continue

            def measure(kind: str = kind) -> float | None:
                try:
                    return float(peer.call("log_step", kind=kind, n=sizes[kind]))
                except PeerError as exc:
                    notes.append(f"{kind}: failed mid-run ({exc})")
                    return None

            contenders[kind] = measure

    # warm-up of the in-process contenders (first open, first flush thread start)
    runctl.log(step=-1, loss=0.0)
    jsonl.write("{}\n")
    samples = alternate(contenders, ctx.reps)
    jsonl.close()
    runctl.flush()
    if peer is not None:
        for kind in PEER_KINDS:
            if kind in contenders:
                try:
                    peer.call("log_finish", kind=kind)
                except PeerError:
                    pass

    meds = {name: median(values) for name, values in samples.items()}
    ours_us = meds.pop("ours")
    ratios = {name: value / ours_us for name, value in meds.items()}
    return {
        "log_step": Result(
            unit="us",
            better="lower",
            ours=round(ours_us, 3),
            peers={name: round(value, 3) for name, value in meds.items()},
            detail={
                "calls_per_rep": {"ours": n_fast, "jsonl_buffered": n_fast, **sizes},
                "reps": ctx.reps,
                "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
                "peer_over_ours": {k: round(v, 2) for k, v in ratios.items()},
                "cpu_us": {k: [round(x, 3) for x in v] for k, v in cpu.items()},
                "cpu_us_median": {k: round(median(v), 3) for k, v in cpu.items() if v},
                "cpu_ours_over_jsonl": round(
                    median(cpu["ours"]) / median(cpu["jsonl_buffered"]), 3
                ),
            },
            notes=notes,
        )
    }


ABOUT = {
    "log_step": (
        "microseconds per call of `runctl.log(step=i, loss=..., acc=..., lr=...)` inside a run "
        "(the package's `runctl` object configured by RUNCTL_RUN_DIR/RUNCTL_ATTEMPT as the agent "
        "does), against the same record written as one JSON line to a 64 KiB-buffered file "
        "(`jsonl_buffered`, the floor), `mlflow.log_metrics` on the file store and the sqlite "
        "store (synchronous, mlflow's default) and on sqlite with `synchronous=False`, and "
        "`wandb.log` in offline mode."
    )
}
