"""`%%runctl sweep` and `runctl sweeps`: Session.sweep / Session.sweeps delegate here.

    sweep = Session().sweep(code="...", grid={"lr": [0.1, 0.01]}, objective="val_acc:max",
                            max_parallel=2, detach=True)
    sweep.wait(); sweep.best; sweep.trials(); sweep.run_ids()

A sweep is created here (its folder, with the trial plan), then run by its own
scheduler process (scheduler.py), so it goes on when the notebook closes. The
blocking call watches it (SweepPanel in a kernel, text in a terminal); Kernel >
Interrupt detaches (or stops the sweep with c.Runctl.on_interrupt = "stop").
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

from ..display.text import counts_text, sweep_line
from ..errors import RunctlError
from ..params import BadParam, check_key, normalize_params, parse_early_stop, parse_objective
from .record import (
    FINAL,
    FORMAT,
    SPEC_FILE,
    SweepState,
    all_sweeps,
    find_sweep,
    new_sweep_id,
    request_stop,
    resolve_sweep,
    scheduler_alive,
    sweeps_dir,
    write_json,
)
from .results import SweepDetails, SweepTable, trial_rows
from .space import grid_plan, grid_size, normalize_space, optuna_distributions, random_plan
from .watch import watch

__all__ = [
    "CONFIRM_TRIALS",
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

CONFIRM_TRIALS = 100  # a sweep of more trials asks for --yes


# ---------------------------------------------------------------- the handle


class Sweep:
    """A handle on one sweep; reads its folder and the store, so it is never stale."""

    def __init__(self, session: Any, sweep_dir: Path):
        self.session = session
        self.dir = Path(sweep_dir)
        self.id = self.dir.name

    @property
    def state(self) -> SweepState:
        return SweepState(self.dir)

    @property
    def status(self) -> str:
        return self.state.display_status()

    @property
    def best(self) -> dict | None:
        """The best trial: {index, params, run_id, objective, ...} (None before any)."""
        return self.state.best()

    @property
    def objective(self) -> str | None:
        """`METRIC:max|min`, as `compare(..., objective=...)` takes it (None without one)."""
        obj = self.state.spec.get("objective")
        return f"{obj['metric']}:{obj['mode']}" if obj else None

    def run_ids(self) -> list[str]:
        """The trials' run ids, in trial order (what `compare --sweep` compares)."""
        return [t["run_id"] for t in self.state.trials if t.get("run_id")]

    def trials(self) -> list[dict]:
        """One dict a trial: index, run, status, params, objective, current, step, ..."""
        return trial_rows(self.session, self.state)

    def wait(self) -> Sweep:
        return watch(self.session, self)

    def stop(self) -> Sweep:
        """Stop the sweep: running trials stop, queued ones wait for --resume."""
        request_stop(self.dir)
        return self

    def __repr__(self) -> str:
        return sweep_line(self.state)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


# ---------------------------------------------------------------- sweep


def _as_objective(objective: Any) -> dict | None:
    if objective is None:
        return None
    if isinstance(objective, str):
        return parse_objective(objective)
    if (
        isinstance(objective, dict)
        and objective.get("mode") in ("max", "min")
        and objective.get("metric")
    ):
        return {"metric": str(objective["metric"]), "mode": objective["mode"]}
    raise BadParam(f"objective must be 'METRIC:max' or 'METRIC:min', got {objective!r}")


def _as_early_stop(early_stop: Any, objective: dict | None, metrics: list) -> dict | None:
    if early_stop is None:
        return None
    es = parse_early_stop(early_stop) if isinstance(early_stop, str) else dict(early_stop)
    if not es.get("metric"):
        if objective:
            es["metric"] = objective["metric"]
        elif metrics:
            es["metric"] = metrics[0]
        else:
            raise BadParam(
                "--early-stop needs a metric: write --early-stop val_loss:min,patience=10, "
                "or give --objective METRIC:max|min"
            )
    if not es.get("mode"):
        if objective and es["metric"] == objective["metric"]:
            es["mode"] = objective["mode"]
        else:
            from ..compare import lower_is_better

            es["mode"] = "min" if lower_is_better(es["metric"]) else "max"
    es.setdefault("patience", 10)
    es.setdefault("min_delta", 0.0)
    es.setdefault("warmup", 0)
    return es


def _check_grid(grid: dict | None) -> dict[str, list]:
    out: dict[str, list] = {}
    for key, values in (grid or {}).items():
        check_key(key, "--grid")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise BadParam(f"--grid {key} must be a list of values, e.g. [0.1, 0.01]")
        values = list(values)
        if not values:
            raise BadParam(f"--grid {key} has no values; write e.g. --grid {key}=0.001,0.01")
        out[key] = list(normalize_params({key: values}, source="--grid")[key])
    return out


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
    user_ns: dict | None = None,
    options: dict | None = None,
) -> Sweep:
    """Run `code` (a cell) or `target` (SCRIPT.py / NOTEBOOK.ipynb) once per trial."""
    from .scheduler import spawn

    if resume:
        if grid or space or trials or code:
            raise RunctlError(
                f"--resume {resume} continues the sweep as it was planned; drop the cell, --grid, --space and --trials"
            )
        handle = Sweep(session, resolve_sweep(session.store.home, resume))
        deadline = time.monotonic() + 10
        while handle.state.status in FINAL and scheduler_alive(handle.dir):
            if (
                time.monotonic() > deadline
            ):  # a finished scheduler exits right after its last record
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
        user_ns=user_ns,
        options=options,
    )
    spawn(handle.dir)
    if session.shell is not None:
        session.shell.user_ns["_runctl_sweep"] = handle
    return handle if detach else watch(session, handle)


def _resumable(state: SweepState, retry_failed: bool) -> bool:
    counts = state.counts()
    cut = sum(
        1 for t in state.trials if t.get("status") == "stopped" and t.get("reason") == "sweep"
    )
    return bool(counts["queued"] or counts["running"] or cut or (retry_failed and counts["failed"]))


def create(session: Any, **kw: Any) -> Sweep:
    """Check everything, then write the sweep folder (nothing runs yet)."""
    from ..runs.start import check_options

    code, target = kw["code"], kw["target"]
    if (code is None) == (target is None):
        raise RunctlError("sweep needs either cell code or a SCRIPT.py / NOTEBOOK.ipynb (not both)")
    fixed = normalize_params(kw["params"] or {}, source="-p")
    grid = _check_grid(kw["grid"])
    space = normalize_space(kw["space"])
    for key in fixed:
        if key in grid or key in space:
            raise BadParam(f"{key} is both fixed (-p) and swept; drop one of them")
    for key in grid:
        if key in space:
            raise BadParam(f"{key} is both in --grid and --space; drop one of them")
    search = kw["search"] or ("random" if space and not grid else "grid")
    if search not in ("grid", "random", "optuna"):
        raise BadParam(f"unknown search {search!r}: use grid, random or optuna")
    n_trials = kw["trials"]
    seed = kw["seed"] if kw["seed"] is not None else secrets.randbelow(2**31)
    if search == "grid":
        if space:
            raise BadParam(
                "--space is for random or optuna search; add --random N or --search optuna --trials N"
            )
        if not grid:
            raise BadParam(
                "nothing to sweep: give --grid KEY=V1,V2 (repeatable), or --random N --space KEY=DIST(...)"
            )
        n_trials = grid_size(grid)
        plan = grid_plan(grid) if n_trials <= CONFIRM_TRIALS or kw["yes"] else []
    else:
        if not space and not grid:
            raise BadParam(f"--search {search} needs a --space KEY=DIST(...) (or --grid) to search")
        if not n_trials or n_trials < 1:
            raise BadParam(
                f"say how many trials with {'--random N' if search == 'random' else '--trials N'}"
            )
        if search == "optuna":
            optuna_distributions(space, grid)  # optuna installed? every distribution usable?
            plan = []
        else:
            plan = random_plan(space, grid, n_trials, seed)
    if n_trials > CONFIRM_TRIALS and not kw["yes"]:
        size = f"{n_trials:,}" + (
            f" (the grid {' x '.join(str(len(v)) for v in grid.values())})"
            if search == "grid"
            else ""
        )
        raise RunctlError(
            f"this sweep has {size} trials, more than {CONFIRM_TRIALS}: add --yes to run them all, "
            "or make the grid smaller"
        )
    objective = _as_objective(kw["objective"])
    metrics = list(kw["metrics"] or ())
    early = _as_early_stop(kw["early_stop"], objective, metrics)
    prune = kw["prune"]
    if prune is not None:
        if prune not in ("median", "asha"):
            raise BadParam(f"unknown --prune {prune!r}: use median or asha")
        if objective is None:
            raise BadParam(
                "--prune compares trials on the objective: add --objective METRIC:max|min"
            )
    max_parallel = kw["max_parallel"] or 1
    if max_parallel < 1:
        raise BadParam("--max-parallel must be at least 1")
    max_failures = kw["max_failures"]
    if max_failures is not None and max_failures < 0:
        raise BadParam("--max-failures must be 0 or more")
    backend_name = kw["backend"] or session.config.backend
    options = dict(kw["options"] or {})
    check_options(options, backend_name)
    if early is not None:
        options["early_stop"] = early
    session.backend(backend_name)  # an unknown backend fails before anything is written
    max_hours = kw["max_hours"]
    if max_hours is not None and max_hours <= 0:
        raise RunctlError("--max-hours must be a positive number of hours, e.g. --max-hours 2")
    from ..cost.estimate import (
        before_launch,  # the estimate (trials x a run), --yes above the threshold
    )

    price = before_launch(
        session, backend_name, options, max_hours, kw["experiment"] or kw["name"],
        trials=n_trials, parallel=max_parallel, yes=kw["yes"], limit=kw.get("cost_limit"),
        project=kw["project"] or session.config.project,
    )  # fmt: skip

    objects = None
    object_names: list[str] = []
    if code is not None:
        from ..runs.capture import check_syntax, collect_objects
        from ..runs.capture import ship_objects as pickle_objects

        check_syntax(code)
        workdir = os.getcwd()
        kind = "cell"
        swept = set(fixed) | set(grid) | set(space)
        if kw["ship_objects"] and session.config.ship_objects and kw["user_ns"] is not None:
            found = collect_objects(code, kw["user_ns"], exclude=swept)
            if found:
                objects = pickle_objects(found, workdir)
                object_names = sorted(found)
        script = notebook = None
    else:
        path = Path(target).expanduser()
        if not path.is_file():
            raise RunctlError(f"no file {target!r} (looked in {Path.cwd()}): check the path")
        kind = "notebook" if path.suffix == ".ipynb" else "script"
        if kind == "script" and path.suffix != ".py":
            raise RunctlError(f"{target!r}: a sweep runs a .py script or an .ipynb notebook")
        script = str(path.resolve()) if kind == "script" else None
        notebook = str(path.resolve()) if kind == "notebook" else None
        workdir = str(path.resolve().parent)

    from ..environment import capture_environment

    sweep_id = new_sweep_id()
    existing = len(all_sweeps(session.store.home))
    name = kw["name"] or f"sweep-{existing + 1}"
    sweep_dir = sweeps_dir(session.store.home) / sweep_id
    sweep_dir.mkdir(parents=True)
    if code is not None:
        (sweep_dir / "code.py").write_text(code)
    if objects is not None:
        (sweep_dir / "objects.pkl").write_bytes(objects)
    import json

    (sweep_dir / "env.json").write_text(
        json.dumps(capture_environment(workdir, fixed), indent=1, default=str)
    )
    grace = options.pop("grace_seconds", None) or session.config.grace_seconds
    spec = {
        "format": FORMAT,
        "sweep_id": sweep_id,
        "name": name,
        "experiment": kw["experiment"] or name,
        "project": kw["project"] or session.config.project,
        "owner": session.config.owner,
        "created": time.time(),
        "search": search,
        "grid": grid,
        "space": space,
        "fixed": fixed,
        "seed": seed,
        "n_trials": n_trials,
        "objective": objective,
        "max_parallel": max_parallel,
        "stop_on_failure": bool(kw["stop_on_failure"]),
        "max_failures": max_failures,
        "prune": prune,
        "early_stop": early,
        "target": {
            "kind": kind,
            "script": script,
            "notebook": notebook,
            "args": list(kw["args"] or ()),
            "workdir": workdir,
        },
        "run": {
            "backend": backend_name,
            "tags": list(kw["tags"] or ()),
            "metrics": metrics,
            "max_hours": max_hours,
            "grace_seconds": grace,
            "options": options,
            "object_names": object_names,
            "price": price,
        },
        "cost_limit": kw.get("cost_limit"),
        "lost_timeout": session.config.lost_timeout,
        "plan": plan,
    }
    write_json(sweep_dir / SPEC_FILE, spec)
    return Sweep(session, sweep_dir)


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
