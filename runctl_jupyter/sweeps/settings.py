"""A sweep's settings: what the user asked, checked and normalized into the fields of
sweep.json (the search, its trial plan, the objective, early stop, pruning, limits).

Every refusal happens here, before the sweep folder exists: a mistyped sweep
leaves nothing behind and starts nothing.
"""

from __future__ import annotations

import secrets
from typing import Any

from ..errors import RunctlError
from ..params.objectives import parse_early_stop, parse_objective
from ..params.values import BadParam, check_key, normalize_params
from .space import grid_plan, grid_size, normalize_space, optuna_distributions, random_plan

CONFIRM_TRIALS = 100  # a sweep of more trials asks for --yes


def checked_settings(session: Any, kw: dict) -> dict:
    """`create`'s keywords checked: the sweep.json fields they become, plus `backend`,
    `metrics`, `options` and `max_hours` for its runs."""
    from ..runs.start import check_options

    if (kw["code"] is None) == (kw["target"] is None):
        raise RunctlError("sweep needs either cell code or a SCRIPT.py / NOTEBOOK.ipynb (not both)")
    trials = _trial_plan(kw)
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
    return {
        **trials,
        "objective": objective,
        "max_parallel": max_parallel,
        "max_failures": max_failures,
        "prune": prune,
        "early_stop": early,
        "backend": backend_name,
        "metrics": metrics,
        "options": options,
        "max_hours": max_hours,
    }


def _trial_plan(kw: dict) -> dict:
    """The parameters: fixed (-p), swept (--grid, --space), the search over them and its
    plan (every grid point, the random draws; optuna asks as it goes)."""
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
    return {
        "search": search,
        "grid": grid,
        "space": space,
        "fixed": fixed,
        "seed": seed,
        "n_trials": n_trials,
        "plan": plan,
    }


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
