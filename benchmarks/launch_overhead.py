"""launch_overhead: a trivial cell end to end, seconds.

ours: `Session().train(code="x=1")` blocking (what `%%runctl train` calls): run
folder + spec + environment capture, the agent and runner processes, events,
record.ipynb, indexing, until the call returns. Peers: `python -c "x=1"` (the
budget's baseline: within 0.5 s of it) and papermill executing a one-cell
notebook (the kernel start it pays), for reference.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

from .common import Ctx, NotLanded, Result, alternate, fresh_python_env, median, timed

ABOUT = {
    "launch_overhead": (
        'seconds for a trivial cell end to end: `Session().train(code="x=1")` blocking (what '
        "`%%runctl train` calls; run folder, environment capture, agent + runner processes, "
        'record, indexing) vs `python -c "x=1"` (the budget\'s baseline) and papermill '
        "executing a one-cell notebook (its kernel start), for reference."
    )
}


def _notebook(path: str) -> None:
    nb = {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": "c1",
                "metadata": {},
                "outputs": [],
                "source": "x = 1",
            }
        ],
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    with open(path, "w") as f:
        json.dump(nb, f)


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.session: {exc}") from exc

    folder = ctx.scratch("launch")
    home = folder / "home"
    session = Session(config=Runctl(home=str(home)))
    statuses: list[str] = []

    def ours() -> float:
        sink_out, sink_err = io.StringIO(), io.StringIO()

        def go() -> None:
            with contextlib.redirect_stdout(sink_out), contextlib.redirect_stderr(sink_err):
                run = session.train(code="x=1", experiment="launch")
            statuses.append(run.status)

        return timed(go)

    env = fresh_python_env()

    def python_c() -> float:
        return timed(lambda: subprocess.run([sys.executable, "-c", "x=1"], check=True, env=env))

    source = str(folder / "one_cell.ipynb")
    _notebook(source)
    output = str(folder / "one_cell.out.ipynb")

    def papermill() -> float:
        import papermill as pm

        def go() -> None:
            with (
                contextlib.redirect_stdout(io.StringIO()),
                contextlib.redirect_stderr(io.StringIO()),
            ):
                pm.execute_notebook(source, output, progress_bar=False, log_output=False)

        return timed(go)

    contenders = {"ours": ours, "python_c": python_c, "papermill": papermill}
    if not ctx.quick:
        for fn in contenders.values():  # warm-up: imports, page cache
            fn()
    samples = alternate(contenders, ctx.reps)
    bad = [s for s in statuses if s != "succeeded"]
    if bad:
        raise AssertionError(f"trivial runs did not succeed: {bad}")
    meds = {k: median(v) for k, v in samples.items()}
    ours_s = meds.pop("ours")
    return {
        "launch_overhead": Result(
            unit="s",
            better="lower",
            ours=round(ours_s, 3),
            peers={k: round(v, 3) for k, v in meds.items()},
            detail={
                "reps": ctx.reps,
                "samples": {k: [round(x, 3) for x in v] for k, v in samples.items()},
                "ours_minus_python_c": round(ours_s - meds["python_c"], 3),
                "refresh_interval": session.config.refresh_interval,
            },
        )
    }
