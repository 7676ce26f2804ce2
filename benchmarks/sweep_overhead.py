"""sweep_overhead: the sweep scheduler's overhead, as a multiple of the ideal.

200 trivial trials (`x = 1`, a grid over a dummy parameter) with
`max_parallel=2`, through `Session().sweep(...)` blocking (what `%%runctl sweep`
calls). The ideal is the sum of the trials' own times / 2; a trial's time is
what running that one trial takes: from its run's creation (its launch: two
Python start-ups) to its end. ours = sweep wall time / ideal, so what it shows
is the scheduler's own overhead (gaps between trials, lost parallelism). Budget
(issue 5): within 1.15x. The stricter figure, against the agents' own durations
only (launch excluded, so it also counts process start-up), is in the detail.
"""

from __future__ import annotations

import contextlib
import io
import time

from .common import Ctx, NotLanded, Result, median

ABOUT = {
    "sweep_overhead": (
        "sweep wall time / ideal for 200 trivial trials (`x = 1`) with `max_parallel=2` through "
        "`Session().sweep(code=..., grid=..., max_parallel=2)` blocking; ideal = sum of the "
        "trials' own times / 2, a trial's time being its run's creation (launch) to its end. "
        "Measured once (the 200 trials are the repetitions); the stricter variant against the "
        "agents' own durations (launch excluded) is in the detail."
    )
}


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session
        from runctl_jupyter.sweeps import api as _api  # noqa: F401 - the feature exists
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.sweeps: {exc}") from exc

    folder = ctx.scratch("sweep")
    session = Session(config=Runctl(home=str(folder / "home")))
    trials = ctx.size(200, 6)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        handle = session.sweep(
            code="x = 1",
            grid={"trial": list(range(trials))},
            max_parallel=2,
            experiment="sweep-overhead",
            yes=True,
        )
    wall = time.perf_counter() - start
    rows = [session.store.get(rid) for rid in handle.run_ids()]
    if len(rows) != trials or any(r["status"] != "succeeded" for r in rows):
        bad = {r["id"]: r["status"] for r in rows if r["status"] != "succeeded"}
        raise AssertionError(
            f"sweep {handle.id}: {len(rows)} of {trials} trials, not succeeded: {bad}"
        )
    durations = [float(r["duration"]) for r in rows]
    with_launch = [float(r["ended"]) - float(r["created"]) for r in rows]
    ideal = sum(durations) / 2
    ideal_with_launch = sum(with_launch) / 2
    return {
        "sweep_overhead": Result(
            unit="x ideal",
            better="lower",
            ours=round(wall / ideal_with_launch, 3),
            detail={
                "trials": trials,
                "max_parallel": 2,
                "wall_seconds": round(wall, 2),
                "ideal_seconds": round(ideal, 2),
                "trial_seconds_median": round(median(durations), 3),
                "wall_over_ideal_of_agent_durations_only": round(wall / ideal, 3),
                "trial_seconds_with_launch_median": round(median(with_launch), 3),
            },
        )
    }
