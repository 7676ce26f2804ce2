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

import html
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError, RunFailed
from ..params import BadParam, check_key, normalize_params, parse_early_stop, parse_objective
from ..results import format_duration, format_metric
from .record import (
    FINAL,
    FORMAT,
    RUN_ENDED,
    SPEC_FILE,
    SweepState,
    all_sweeps,
    find_sweep,
    new_sweep_id,
    request_stop,
    resolve_sweep,
    scheduler_alive,
    sweeps_dir,
    trial_group,
    write_json,
)
from .space import grid_plan, grid_size, normalize_space, optuna_distributions, random_plan

__all__ = ["CONFIRM_TRIALS", "Sweep", "find", "lookup", "show", "sweep", "sweeps", "trial_rows"]

CONFIRM_TRIALS = 100  # a sweep of more trials asks for --yes
WATCH_INTERVAL = 0.1


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
        return one_line(self.state)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


# ---------------------------------------------------------------- facts of a sweep


def _fmt_params(params: dict) -> str:
    return " ".join(
        f"{k}={format_metric(v) if isinstance(v, float) else v}" for k, v in params.items()
    )


def counts_text(state: SweepState) -> str:
    c = state.counts()
    parts = [f"{c['done']} done", f"{c['running']} running", f"{c['queued']} queued"]
    for key in ("failed", "pruned", "stopped"):
        if c[key]:
            parts.append(f"{c[key]} {key}")
    return ", ".join(parts)


def best_text(state: SweepState) -> str:
    best = state.best()
    metric = (state.spec.get("objective") or {}).get("metric")
    if best is None or not metric:
        return ""
    return (
        f"best {metric}={format_metric(best['objective'])} (trial {best['index']}, run "
        f"{best['run_id']}: {_fmt_params(best['params'])})"
    )


def one_line(state: SweepState) -> str:
    status = state.display_status()
    text = f"sweep {state.id} '{state.name}' {status}"
    if state.reason and status != "succeeded":
        text += f" ({state.reason})"
    text += f": {state.n_planned} trials ({counts_text(state)})"
    best = best_text(state)
    if best:
        text += f" · {best}"
    if status == "orphaned":
        text += f" · `%runctl sweep --resume {state.id}` continues it"
    return text


def trial_rows(
    session: Any, state: SweepState, rows: dict | None = None, summaries: dict | None = None
) -> list[dict]:
    """Every trial (planned ones too) with its run's live facts from the store."""
    ids = [t["run_id"] for t in state.trials if t.get("run_id")]
    if rows is None:
        rows = {r["id"]: r for r in session.store.list_runs(sweep_id=state.id, limit=None)}
    if summaries is None:
        summaries = session.store.summaries(ids) if ids else {}
    objective = state.spec.get("objective") or {}
    metric, mode = objective.get("metric"), objective.get("mode") or "max"
    out = []
    for t in state.trials:
        row = rows.get(t.get("run_id")) if t.get("run_id") else None
        summary = summaries.get(t.get("run_id"), {}) if t.get("run_id") else {}
        stats = summary.get(metric) if metric else None
        status, reason = t.get("status"), t.get("reason")
        if row is not None and status not in RUN_ENDED:
            status, reason = row["status"], row.get("reason")
            if status == "queued":  # launched: its agent is booting
                status = "starting"
        best = t.get("objective")
        if best is None and stats:
            best = stats.get("max" if mode == "max" else "min")
        out.append(
            {
                "index": t["index"],
                "run": t.get("run_id"),
                "status": status,
                "reason": reason,
                "group": trial_group({**t, "status": status, "reason": reason}),
                "params": t.get("params") or {},
                "objective": best,
                "current": stats.get("last") if stats else None,
                "step": row.get("last_step") if row else None,
                "duration": row.get("duration") if row else None,
                "cost": row.get("cost") if row else None,
                "backend": row.get("backend") if row else None,
            }
        )
    return out


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
    if cost_limit is not None:
        raise RunctlError(
            "--cost-limit for a sweep is not available in this version yet (issue 6); drop it"
        )
    handle = create(
        session,
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
    from ..session import check_options

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

    objects = None
    object_names: list[str] = []
    if code is not None:
        from ..capture import check_syntax, collect_objects
        from ..capture import ship_objects as pickle_objects

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
        },
        "lost_timeout": session.config.lost_timeout,
        "plan": plan,
    }
    write_json(sweep_dir / SPEC_FILE, spec)
    return Sweep(session, sweep_dir)


# ---------------------------------------------------------------- watching


def watch(session: Any, handle: Sweep) -> Sweep:
    """Follow a sweep live until it ends (panel in a kernel, text in a terminal)."""
    view = _make_view(session, handle)
    follower = _Follower(session, handle, view)
    try:
        orphaned = follower.follow()
    except KeyboardInterrupt:
        if session.config.on_interrupt != "stop":
            view.finish(follower.state, trial_rows(session, follower.state))
            print(
                f"detached from sweep {handle.id}: it goes on. `%runctl sweep --resume {handle.id}` "
                f"shows it again; `%runctl sweeps` lists sweeps.",
                file=sys.stderr,
            )
            return handle
        request_stop(handle.dir)  # c.Runctl.on_interrupt = "stop": the same panel shows it stop
        orphaned = follower.follow()
    state = follower.state
    view.finish(state, trial_rows(session, state, follower.rows, follower.summaries))
    if session.shell is not None:
        session.shell.user_ns["_runctl_sweep"] = handle
    if orphaned:
        raise RunctlError(
            f"the scheduler of sweep {handle.id} exited before the sweep ended (see "
            f"{handle.dir / 'scheduler.log'}); `%runctl sweep --resume {handle.id}` continues it"
        )
    if state.status == "failed":
        _raise_failed(session, state)
    return handle


class _Follower:
    """Reads a sweep's log (new lines only) and its trials' rows, and feeds a view."""

    def __init__(self, session: Any, handle: Sweep, view: Any):
        self.session, self.handle, self.view = session, handle, view
        self.state = SweepState(handle.dir)
        self.rows: dict = {}
        self.summaries: dict = {}
        self.last_read = 0.0

    def follow(self) -> bool:
        """Until the sweep ends; True if its scheduler died first (orphaned)."""
        session, state, view = self.session, self.state, self.view
        while True:
            state.refresh()
            now = time.monotonic()
            ended = state.status in FINAL
            if ended or now - self.last_read >= view.read_interval:
                self.last_read = now
                self.rows = {
                    r["id"]: r for r in session.store.list_runs(sweep_id=state.id, limit=None)
                }
                ids = [t["run_id"] for t in state.trials if t.get("run_id")]
                self.summaries = session.store.summaries(ids) if ids else {}
                view.update(state, trial_rows(session, state, self.rows, self.summaries))
            if ended:
                return False
            if not scheduler_alive(self.handle.dir):
                state.refresh()
                if state.status not in FINAL:
                    return True
                continue
            view.idle(WATCH_INTERVAL)


def _raise_failed(session: Any, state: SweepState) -> None:
    failed = [t for t in state.trials if trial_group(t) == "failed" and t.get("run_id")]
    message = f"sweep {state.id} ({state.name}) failed ({state.reason}): {counts_text(state)}."
    if failed:
        first = failed[0]
        try:
            row = session.store.get(first["run_id"])
        except RunctlError:
            row = {}
        error = row.get("error") or {}
        detail = f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": .")
        message += (
            f" Trial {first['index']} (run {first['run_id']}) {row.get('status', 'failed')}: {detail}. "
            f"`%runctl logs {first['run_id']}` has its output."
        )
        raise RunFailed(first["run_id"], message, error.get("traceback"))
    raise RunctlError(message)


class TextSweepView:
    """For the shell: a line per trial that starts or ends, and the best so far."""

    read_interval = 0.25

    def __init__(self, handle: Sweep, out: Any = None):
        self.out = out or sys.stderr
        self.seen: dict[int, str] = {}
        self.status = None

    def update(self, state: SweepState, trials: list[dict]) -> None:
        for t in trials:
            key = f"{t['status']}/{t['reason']}"
            if t["run"] is None or self.seen.get(t["index"]) == key:
                continue
            self.seen[t["index"]] = key
            if t["status"] in ("starting", "running") or t["status"] in RUN_ENDED:
                value = (
                    f" objective={format_metric(t['objective'])}"
                    if t["objective"] is not None and t["status"] in RUN_ENDED
                    else ""
                )
                why = f" ({t['reason']})" if t["reason"] and t["status"] != "succeeded" else ""
                self.out.write(
                    f"[runctl] trial {t['index']} run {t['run']} {t['status']}{why}{value}"
                    f" [{_fmt_params(t['params'])}] · {counts_text(state)}\n"
                )
        if state.status != self.status:
            self.status = state.status
            self.out.write(f"[runctl] sweep {state.id} ({state.name}): {state.status}\n")
        self.out.flush()

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def finish(self, state: SweepState, trials: list[dict]) -> None:
        for warning in state.warnings:
            self.out.write(f"[runctl] warning: {warning}\n")
        self.out.flush()


class PanelSweepView:
    """Adapts display.SweepPanel; widget messages are handled while the cell blocks."""

    read_interval = 0.5

    def __init__(self, session: Any, handle: Sweep):
        from ..display.sweep_panel import SweepPanel
        from ..display.uipoll import process_ui_events

        self.shell = session.shell
        self._poll = process_ui_events
        self.panel = SweepPanel(
            handle.state,
            on_stop_trial=lambda run_id: session.backend_stop(run_id),
            on_stop_sweep=lambda: request_stop(handle.dir),
        )
        self.panel.show()

    def update(self, state: SweepState, trials: list[dict]) -> None:
        self.panel.update(state, trials)

    def idle(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self._poll(self.shell)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.02))

    def finish(self, state: SweepState, trials: list[dict]) -> None:
        self.panel.finish(state, trials)


def _make_view(session: Any, handle: Sweep) -> Any:
    from ..liveview import in_kernel

    if in_kernel(session.shell):
        try:
            return PanelSweepView(session, handle)
        except ImportError:  # the panel needs ipywidgets + plotly
            pass
    return TextSweepView(handle)


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


def _table_text(header: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    esc = html.escape
    head = "".join(f"<th style='text-align:left'>{esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td style='text-align:left'>{esc(c)}</td>" for c in r) + "</tr>"
        for r in rows
    )
    return (
        f"<table class='runctl-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


class SweepTable:
    HEADER = [
        "id",
        "name",
        "status",
        "trials",
        "done",
        "running",
        "queued",
        "failed",
        "best",
        "best params",
    ]

    def __init__(self, states: list[SweepState]):
        self.states = states

    def rows(self) -> list[dict]:
        out = []
        for s in self.states:
            best = s.best()
            metric = (s.spec.get("objective") or {}).get("metric")
            out.append(
                {
                    "id": s.id,
                    "name": s.name,
                    "status": s.display_status(),
                    "reason": s.reason,
                    "trials": s.n_planned,
                    **s.counts(),
                    "objective": metric,
                    "best": best["objective"] if best else None,
                    "best_params": best["params"] if best else None,
                    "best_run": best["run_id"] if best else None,
                }
            )
        return out

    def _cells(self) -> list[list[str]]:
        cells = []
        for r in self.rows():
            status = r["status"] + (
                f" ({r['reason']})" if r["reason"] and r["status"] != "succeeded" else ""
            )
            best = f"{r['objective']}={format_metric(r['best'])}" if r["best"] is not None else "-"
            cells.append(
                [
                    r["id"],
                    r["name"],
                    status,
                    str(r["trials"]),
                    str(r["done"]),
                    str(r["running"]),
                    str(r["queued"]),
                    str(r["failed"]),
                    best,
                    _fmt_params(r["best_params"]) if r["best_params"] else "-",
                ]
            )
        return cells

    def __len__(self) -> int:
        return len(self.states)

    def __str__(self) -> str:
        if not self.states:
            return "no sweeps yet: start one with %%runctl sweep --grid KEY=V1,V2 (or `runctl sweep SCRIPT.py ...`)"
        return _table_text(self.HEADER, self._cells())

    __repr__ = __str__

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        if not self.states:
            return f"<p>{html.escape(str(self))}</p>"
        return _table_html(self.HEADER, self._cells())


class SweepDetails:
    """`runctl show SWEEP`."""

    HEADER = ["trial", "run", "status", "objective", "params", "duration"]

    def __init__(self, state: SweepState, trials: list[dict]):
        self.state = state
        self.trial_list = trials

    def _fields(self) -> list[tuple[str, str]]:
        s = self.state
        spec = s.spec
        objective = spec.get("objective") or {}
        fields = [
            ("sweep", f"{s.id} ({s.name})"),
            ("status", s.display_status() + (f" ({s.reason})" if s.reason else "")),
            ("experiment", str(spec.get("experiment"))),
            (
                "search",
                f"{spec.get('search')} · seed {spec.get('seed')} · max parallel {spec.get('max_parallel')}",
            ),
            (
                "objective",
                f"{objective.get('metric')}:{objective.get('mode')}" if objective else "-",
            ),
            ("trials", f"{s.n_planned} ({counts_text(s)})"),
        ]
        if spec.get("grid"):
            fields.append(("grid", " ".join(f"{k}={v}" for k, v in spec["grid"].items())))
        if spec.get("space"):
            fields.append(
                (
                    "space",
                    " ".join(
                        f"{k}={d['dist']}{tuple(d['args'])}" for k, d in spec["space"].items()
                    ),
                )
            )
        if spec.get("fixed"):
            fields.append(("fixed", _fmt_params(spec["fixed"])))
        best = best_text(s)
        if best:
            fields.append(("best", best.removeprefix("best ")))
        for warning in s.warnings[-5:]:
            fields.append(("warning", warning))
        fields.append(("folder", str(s.dir)))
        return fields

    def _trial_cells(self) -> list[list[str]]:
        cells = []
        for t in self.trial_list:
            status = t["status"] + (
                f" ({t['reason']})" if t["reason"] and t["status"] != "succeeded" else ""
            )
            cells.append(
                [
                    str(t["index"]),
                    t["run"] or "-",
                    status,
                    format_metric(t["objective"]) if t["objective"] is not None else "-",
                    _fmt_params(t["params"]),
                    format_duration(t["duration"]),
                ]
            )
        return cells

    def __str__(self) -> str:
        fields = self._fields()
        width = max(len(k) for k, _ in fields)
        head = "\n".join(f"{k.ljust(width)}  {v}" for k, v in fields)
        return head + "\n\n" + _table_text(self.HEADER, self._trial_cells())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        bundle = {"text/plain": str(self)}
        try:
            from ..display.sweep_panel import static_summary

            bundle.update(static_summary(self.state, self.trial_list))
        except ImportError:
            bundle["text/html"] = _table_html(["", ""], [[k, v] for k, v in self._fields()])
        bundle["text/plain"] = str(self)
        return bundle
