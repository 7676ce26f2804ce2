"""`%%runctl sweep` and `runctl sweeps`: Session.sweep / Session.sweeps delegate here.

    sweep = Session().sweep(code="...", grid={"lr": [0.1, 0.01]}, objective="val_acc:max",
                            max_parallel=2, detach=True)
    sweep.wait(); sweep.best; sweep.trials(); sweep.run_ids()

A sweep is created (create.py: its folder, with the trial plan), then run by its
own scheduler process (scheduler.py), so it goes on when the notebook closes. The
blocking call watches it (SweepPanel in a kernel, text in a terminal); Kernel >
Interrupt detaches (or stops the sweep with c.Runctl.on_interrupt = "stop").
"""

from __future__ import annotations

import os
import time
from typing import Any

from ..display.text import counts_text, sweep_line
from ..errors import RunctlError
from .create import create
from .handle import Sweep
from .record import (
    FINAL,
    SweepState,
    all_sweeps,
    find_sweep,
    resolve_sweep,
    scheduler_alive,
    sweeps_dir,
)
from .results import SweepDetails, SweepTable, trial_rows
from .watch import watch

__all__ = [
    "Sweep",
    "counts_text",
    "find",
    "lookup",
    "sweep_line",
    "show",
    "sweep",
    "sweeps",
    "trial_rows",
    "watch",
]


# ---------------------------------------------------------------- sweep


def sweep(
    session: Any,
    *,
    code: str | None = None,
    target: str | None = None,
    args: list[str] | tuple = (),
    params: dict | None = None,
    grid: dict | None = None,
    space: dict | None = None,
    search: str | None = None,
    trials: int | None = None,
    seed: int | None = None,
    max_parallel: int | None = None,
    objective: Any = None,
    stop_on_failure: bool = False,
    max_failures: int | None = None,
    prune: str | None = None,
    early_stop: Any = None,
    cost_limit: float | None = None,
    resume: str | None = None,
    retry_failed: bool = False,
    experiment: str | None = None,
    name: str | None = None,
    project: str | None = None,
    tags: list[str] | tuple = (),
    backend: str | None = None,
    metrics: list[str] | tuple = (),
    detach: bool = False,
    yes: bool = False,
    max_hours: float | None = None,
    ship_objects: bool = True,
    ship: list[str] | tuple = (),
    user_ns: dict | None = None,
    options: dict | None = None,
) -> Sweep:
    """Run `code` (a cell) or `target` (SCRIPT.py / NOTEBOOK.ipynb) once per trial."""
    from .scheduler import spawn

    if resume:
        if grid or space or trials or code or ship:
            raise RunctlError(
                f"--resume {resume} continues the sweep as it was planned; drop the cell, --grid, --space, --trials and --ship"
            )
        return _resume(session, resume, retry_failed, detach)
    if retry_failed:
        raise RunctlError("--retry-failed goes with --resume SWEEP")
    handle = create(
        session,
        cost_limit=cost_limit,
        code=code,
        target=target,
        args=args,
        params=params,
        grid=grid,
        space=space,
        search=search,
        trials=trials,
        seed=seed,
        max_parallel=max_parallel,
        objective=objective,
        stop_on_failure=stop_on_failure,
        max_failures=max_failures,
        prune=prune,
        early_stop=early_stop,
        experiment=experiment,
        name=name,
        project=project,
        tags=tags,
        backend=backend,
        metrics=metrics,
        yes=yes,
        max_hours=max_hours,
        ship_objects=ship_objects,
        ship=ship,
        user_ns=user_ns,
        options=options,
    )
    spawn(handle.dir)
    if session.shell is not None:
        session.shell.user_ns["_runctl_sweep"] = handle
    return handle if detach else watch(session, handle)


def _resume(session: Any, ref: str, retry_failed: bool, detach: bool) -> Sweep:
    """Continue a sweep: attach to its running scheduler, or start one with --resume."""
    from .scheduler import spawn

    handle = Sweep(session, resolve_sweep(session.store.home, ref))
    deadline = time.monotonic() + 10
    while handle.state.status in FINAL and scheduler_alive(handle.dir):
        if time.monotonic() > deadline:  # a finished scheduler exits right after its last record
            raise RunctlError(
                f"sweep {handle.id}'s scheduler does not exit; see {handle.dir / 'scheduler.log'}"
            )
        time.sleep(0.02)
    if not scheduler_alive(handle.dir):
        if handle.state.status in FINAL and not _resumable(handle.state, retry_failed):
            raise RunctlError(
                f"sweep {handle.id} is {handle.state.status} with nothing left to run"
                + ("" if retry_failed else "; --retry-failed reruns its failed trials")
            )
        (handle.dir / "control.json").unlink(missing_ok=True)
        spawn(handle.dir, resume=True, retry_failed=retry_failed)
    elif retry_failed:
        raise RunctlError(
            f"sweep {handle.id} is running; --retry-failed needs it stopped first "
            f"(it retries failed trials when the sweep continues)"
        )
    return handle if detach else watch(session, handle)


def _resumable(state: SweepState, retry_failed: bool) -> bool:
    counts = state.counts()
    cut = sum(
        1 for t in state.trials if t.get("status") == "stopped" and t.get("reason") == "sweep"
    )
    return bool(counts["queued"] or counts["running"] or cut or (retry_failed and counts["failed"]))


# ---------------------------------------------------------------- sweeps, show


def find(session: Any, ref: str) -> Sweep | None:
    """The sweep `ref` names (id, unique id prefix, or name), or None."""
    found = find_sweep(session.store.home, ref)
    return Sweep(session, found) if found is not None else None


def lookup(session: Any, ref: str) -> Sweep | None:
    """For `show REF` (a run or a sweep): the sweep REF means, or None if it means a run.

    A sweep id or unique sweep-id prefix (they start with `s`, which no run id
    does) is a sweep; otherwise a run (id, prefix, name) wins; otherwise a sweep name.
    """
    from ..errors import RunNotFound

    ref = (ref or "").strip()
    home = session.store.home
    if ref.startswith("s"):
        base = sweeps_dir(home)
        if base.is_dir() and any(e.name.startswith(ref) for e in os.scandir(base)):
            return find(session, ref)  # an ambiguous sweep prefix is an error that lists them
    try:
        session.store.resolve(ref)
        return None
    except RunNotFound:
        pass
    except RunctlError:
        return None  # an ambiguous run prefix: let the run lookup say so
    return find(session, ref)


def show(session: Any, ref: str) -> SweepDetails:
    """`runctl show SWEEP`: the sweep, its trials and the best one."""
    handle = Sweep(session, resolve_sweep(session.store.home, ref))
    session.store.refresh()
    state = handle.state
    return SweepDetails(state, trial_rows(session, state))


def sweeps(session: Any, **_: Any) -> SweepTable:
    """`runctl sweeps`: every sweep, newest first."""
    return SweepTable(all_sweeps(session.store.home))
