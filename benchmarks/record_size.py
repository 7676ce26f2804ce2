"""record_size: the size of record.ipynb for a 100,000-step run, KB.

A real local run logs 100,000 steps x 3 metrics and prints a line every 100
steps (1,000 output lines); the agent writes its record.ipynb as it ends. The
size is deterministic, so it is measured once; `write_record` over the same
folder is then timed (median of the repetitions). For reference the run's
events.jsonl (every point, the raw stream) is reported beside it.
"""

from __future__ import annotations

import contextlib
import io
import os

from .common import Ctx, NotLanded, Result, median, timed

ABOUT = {
    "record_size": (
        "KB of `record.ipynb` written by the agent for a real local run of 100,000 steps x 3 "
        "metrics with 1,000 printed lines (long series are downsampled in the record's "
        "figure; the store keeps every point). No peer: the raw events.jsonl size and the "
        "time `write_record` takes are in the detail."
    )
}

CODE = """
for i in range({n}):
    runctl.log(step=i, loss=1.0 / (1 + 0.001 * i), acc=1 - 0.5 / (1 + 0.001 * i), lr=0.1 * 0.99999 ** i)
    if i % 100 == 0:
        print(f"step {{i}} loss {{1.0 / (1 + 0.001 * i):.5f}}")
"""


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.record import RECORD_FILE, write_record
        from runctl_jupyter.session import Session
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.record/session: {exc}") from exc

    folder = ctx.scratch("record")
    session = Session(config=Runctl(home=str(folder / "home")))
    n = ctx.size(100_000, 2_000)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        run_seconds = timed(
            lambda: session.train(code=CODE.format(n=n), experiment="record", name="record-size")
        )
    run = session.run("record-size")
    run_dir = session.store.run_dir(run.id)
    record = run_dir / RECORD_FILE
    if run.status != "succeeded" or not record.exists():
        raise AssertionError(f"record run {run.id}: {run.status}, record exists: {record.exists()}")
    size_kb = os.path.getsize(record) / 1024
    points = sum(len(v) for v in run.history().values())
    if points != 3 * n:
        raise AssertionError(f"record run {run.id}: {points} points in the store, expected {3 * n}")
    write_times = []
    for _ in range(max(ctx.reps, 1)):
        write_times.append(timed(lambda: write_record(run_dir)))
    rewritten_kb = os.path.getsize(record) / 1024
    return {
        "record_size": Result(
            unit="KB",
            better="lower",
            ours=round(size_kb, 1),
            detail={
                "steps": n,
                "metrics": 3,
                "events_jsonl_kb": round(os.path.getsize(run_dir / "events.jsonl") / 1024, 1),
                "rewritten_record_kb": round(rewritten_kb, 1),
                "write_record_seconds_median": round(median(write_times), 3),
                "run_end_to_end_seconds": round(run_seconds, 2),
            },
        )
    }
