"""Search spaces: the trials of a grid, random samples, and optuna's suggestions.

    grid_plan({"lr": [0.1, 0.01], "bs": [32, 64]})            # 4 trials, first key outermost
    random_plan({"lr": {"dist": "loguniform", "args": [1e-4, 1e-1]}}, grid={}, n=20, seed=0)
    search = OptunaSearch(space, grid, objective, seed, prune="median")   # ask / report / tell

Grid and random plans are fixed when the sweep is created (sweep.json holds every
trial's params), so a resumed sweep runs exactly the trials that are left. With
random or optuna search, --grid keys are sampled as choices.
"""

from __future__ import annotations

import itertools
import math
import random
from typing import Any

from ..errors import MissingDependency, RunctlError
from ..params.search import parse_space

__all__ = ["OptunaSearch", "grid_plan", "grid_size", "normalize_space", "random_plan", "sample"]


def grid_size(grid: dict[str, list]) -> int:
    return math.prod(len(v) for v in grid.values()) if grid else 0


def grid_plan(grid: dict[str, list]) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def normalize_space(space: dict | None) -> dict[str, dict]:
    """Accept the parser's {"lr": {"dist", "args"}} or the Python API's {"lr": "loguniform(1e-4,1e-1)"}."""
    out: dict[str, dict] = {}
    for key, value in (space or {}).items():
        if isinstance(value, str):
            out.update(parse_space([f"{key}={value}"]))
        elif isinstance(value, dict) and "dist" in value:
            out.update(parse_space([f"{key}={value['dist']}({_args_text(value.get('args'))})"]))
        else:
            raise RunctlError(
                f"space[{key!r}] must be a distribution like 'loguniform(1e-4,1e-1)', got {value!r}"
            )
    return out


def _args_text(args: Any) -> str:
    import json

    return ",".join(json.dumps(a) for a in (args or []))


def sample(space: dict[str, dict], rng: random.Random) -> dict[str, Any]:
    """One draw of every key of a space."""
    out: dict[str, Any] = {}
    for key, d in space.items():
        dist, args = d["dist"], d["args"]
        if dist == "uniform":
            value: Any = rng.uniform(args[0], args[1])
        elif dist == "loguniform":
            value = math.exp(rng.uniform(math.log(args[0]), math.log(args[1])))
        elif dist == "randint":
            value = rng.randint(int(args[0]), int(args[1]))
        elif dist == "quniform":
            low, high, q = args
            value = min(max(round(rng.uniform(low, high) / q) * q, low), high)
            value = round(value, 12)
            if all(isinstance(a, int) for a in args):
                value = int(value)
        elif dist == "normal":
            value = rng.gauss(args[0], args[1])
        elif dist == "choice":
            value = rng.choice(args)
        else:  # parse_space refuses unknown ones; this is a hand-made spec
            raise RunctlError(f"unknown distribution {dist!r} for {key}")
        out[key] = value
    return out


def random_plan(space: dict[str, dict], grid: dict[str, list], n: int, seed: int) -> list[dict]:
    """n random trials; --grid keys (if any) are drawn as choices."""
    full = dict(space)
    for key, values in grid.items():
        full[key] = {"dist": "choice", "args": list(values)}
    rng = random.Random(seed)
    return [sample(full, rng) for _ in range(n)]


def _optuna():
    try:
        import optuna
    except ImportError:
        raise MissingDependency("optuna", extra="optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def optuna_distributions(space: dict[str, dict], grid: dict[str, list]) -> dict:
    """Our distributions as optuna's (normal() has no optuna equivalent)."""
    optuna = _optuna()
    D = optuna.distributions
    out: dict = {}
    for key, d in space.items():
        dist, args = d["dist"], d["args"]
        if dist == "uniform":
            out[key] = D.FloatDistribution(args[0], args[1])
        elif dist == "loguniform":
            out[key] = D.FloatDistribution(args[0], args[1], log=True)
        elif dist == "randint":
            out[key] = D.IntDistribution(int(args[0]), int(args[1]))
        elif dist == "quniform":
            low, high, q = args
            if all(isinstance(a, int) for a in args):
                out[key] = D.IntDistribution(low, high, step=q)
            else:
                high = low + math.floor((high - low) / q + 1e-9) * q
                out[key] = D.FloatDistribution(low, high, step=q)
        elif dist == "choice":
            out[key] = D.CategoricalDistribution(_categorical(key, args))
        else:
            raise RunctlError(
                f"--space {key}={dist}(...) is not available with --search optuna; "
                "use uniform, loguniform, randint, quniform or choice"
            )
    for key, values in grid.items():
        out[key] = D.CategoricalDistribution(_categorical(key, values))
    return out


def _categorical(key: str, values: list) -> tuple:
    for v in values:
        if not (v is None or isinstance(v, (bool, int, float, str))):
            raise RunctlError(
                f"{key}: optuna choices must be numbers, strings, bools or None, not {v!r}; "
                "use --search random for list or dict values"
            )
    return tuple(values)


class OptunaSearch:
    """TPE suggestions (seeded), intermediate values to optuna's pruner, results told back.

    The study lives in the scheduler's memory; on a resume it is rebuilt from the
    sweep's finished trials, so nothing but the sweep folder needs to persist.
    """

    def __init__(
        self,
        space: dict[str, dict],
        grid: dict[str, list],
        mode: str,
        seed: int,
        prune: str | None = None,
    ):
        optuna = _optuna()
        self.optuna = optuna
        self.distributions = optuna_distributions(space, grid)
        if prune == "median":
            pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
        elif prune == "asha":
            pruner = optuna.pruners.SuccessiveHalvingPruner()
        else:
            pruner = optuna.pruners.NopPruner()
        self.study = optuna.create_study(
            direction="maximize" if mode == "max" else "minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=pruner,
        )
        self.live: dict[int, Any] = {}  # our trial index -> optuna trial
        self.reported: dict[int, int] = {}  # index -> last step reported

    def replay(self, params: dict, value: float | None, state: str) -> None:
        """Add a trial that ended before this scheduler started (a resume)."""
        FrozenTrial = self.optuna.trial.TrialState
        try:
            dist_params = {k: params[k] for k in self.distributions}
        except KeyError:
            return
        st = {
            "complete": FrozenTrial.COMPLETE,
            "pruned": FrozenTrial.PRUNED,
        }.get(state, FrozenTrial.FAIL)
        if st == FrozenTrial.COMPLETE and value is None:
            st = FrozenTrial.FAIL
        try:
            self.study.add_trial(
                self.optuna.trial.create_trial(
                    params=dist_params,
                    distributions=self.distributions,
                    value=value if st == FrozenTrial.COMPLETE else None,
                    state=st,
                )
            )
        except ValueError:  # params outside today's space: leave it out of the model
            pass

    def ask(self, index: int) -> dict:
        trial = self.study.ask(self.distributions)
        self.live[index] = trial
        return dict(trial.params)

    def adopt(self, index: int, params: dict) -> None:
        """A trial asked by an earlier scheduler that is still running: enqueue its params."""
        self.study.enqueue_trial(params, skip_if_exists=False)
        trial = self.study.ask(self.distributions)
        self.live[index] = trial

    def report(self, index: int, points: list[tuple[int, float]]) -> bool:
        """Feed new intermediate values; True if optuna's pruner says stop."""
        trial = self.live.get(index)
        if trial is None or not points:
            return False
        last = self.reported.get(index, -1)
        for step, value in points:
            if step > last and isinstance(value, (int, float)) and math.isfinite(value):
                trial.report(float(value), step)
                last = step
        self.reported[index] = last
        return bool(trial.should_prune())

    def tell(self, index: int, value: float | None, state: str) -> None:
        trial = self.live.pop(index, None)
        if trial is None:
            return
        S = self.optuna.trial.TrialState
        try:
            if state == "complete" and value is not None:
                self.study.tell(trial, value)
            elif state == "pruned":
                self.study.tell(trial, state=S.PRUNED)
            else:
                self.study.tell(trial, state=S.FAIL)
        except (ValueError, RuntimeError):  # already told
            pass
