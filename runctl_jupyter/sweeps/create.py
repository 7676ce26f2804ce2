"""A new sweep: its settings checked (settings.py) and its cost estimated, then its
folder written: code.py, objects.pkl, env.json and sweep.json with the trial plan.

The folder holds all a trial needs, so the scheduler process starts every trial
with the notebook closed. Nothing runs here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from ..runs.image import image_options
from .handle import Sweep
from .record import FORMAT, SPEC_FILE, all_sweeps, new_sweep_id, sweeps_dir, write_json
from .settings import checked_settings


def create(session: Any, **kw: Any) -> Sweep:
    """Check everything, then write the sweep folder (nothing runs yet)."""
    asked = checked_settings(session, kw)
    from ..cost.estimate import (
        before_launch,  # the estimate (trials x a run), --yes above the threshold
    )
    from ..cost.suggestions import Launch

    target = kw["target"] if kw["code"] is None else None
    code = kw["code"]
    if target and str(target).endswith(".py"):
        try:
            code = Path(target).read_text()
        except OSError:
            code = None  # a missing file is _what_runs' one-line error
    launch = Launch(
        None,
        None,
        code=code,
        workdir=Path.cwd(),
        max_parallel=kw["max_parallel"],
        grid=asked["search"] == "grid",
    )
    _check_image(session, asked)
    price = before_launch(
        session,
        asked["backend"],
        asked["options"],
        asked["max_hours"],
        kw["experiment"] or kw["name"],
        trials=asked["n_trials"],
        parallel=asked["max_parallel"],
        yes=kw["yes"],
        limit=kw.get("cost_limit"),
        project=kw["project"] or session.config.project,
        launch=launch,
    )
    swept = set(asked["fixed"]) | set(asked["grid"]) | set(asked["space"])
    what = _what_runs(session, kw, swept)
    return Sweep(session, _write_folder(session, kw, asked, what, price))


def _what_runs(session: Any, kw: dict, swept: set) -> dict:
    """The cell (its syntax checked, the notebook objects it reads pickled), or the
    SCRIPT.py / NOTEBOOK.ipynb file, and the folder the trials run in."""
    code, target = kw["code"], kw["target"]
    if code is not None:
        from ..runs.capture import Shipment, pack_objects
        from ..runs.cell_syntax import check_syntax

        check_syntax(code)
        workdir = os.getcwd()
        shipment = Shipment(None, [], {})
        if kw["ship_objects"] and session.config.ship_objects and kw["user_ns"] is not None:
            shipment = pack_objects(
                code, kw["user_ns"], workdir, exclude=swept, ship=kw.get("ship") or ()
            )
        return {
            "kind": "cell",
            "script": None,
            "notebook": None,
            "workdir": workdir,
            "objects": shipment.data,
            "object_names": shipment.names,
            "held_back": sorted(shipment.held_back),
        }
    path = Path(target).expanduser()
    if not path.is_file():
        raise RunctlError(f"no file {target!r} (looked in {Path.cwd()}): check the path")
    kind = "notebook" if path.suffix == ".ipynb" else "script"
    if kind == "script" and path.suffix != ".py":
        raise RunctlError(f"{target!r}: a sweep runs a .py script or an .ipynb notebook")
    return {
        "kind": kind,
        "script": str(path.resolve()) if kind == "script" else None,
        "notebook": str(path.resolve()) if kind == "notebook" else None,
        "workdir": str(path.resolve().parent),
        "objects": None,
        "object_names": [],
        "held_back": [],
    }


def _write_folder(session: Any, kw: dict, asked: dict, what: dict, price: Any) -> Path:
    """The sweep's folder: the cell and its objects, env.json, then sweep.json."""
    from ..environment import capture_environment

    sweep_id = new_sweep_id()
    existing = len(all_sweeps(session.store.home))
    name = kw["name"] or f"sweep-{existing + 1}"
    sweep_dir = sweeps_dir(session.store.home) / sweep_id
    sweep_dir.mkdir(parents=True)
    if kw["code"] is not None:
        (sweep_dir / "code.py").write_text(kw["code"])
    if what["objects"] is not None:
        (sweep_dir / "objects.pkl").write_bytes(what["objects"])
    (sweep_dir / "env.json").write_text(
        json.dumps(capture_environment(what["workdir"], asked["fixed"]), indent=1, default=str)
    )
    write_json(sweep_dir / SPEC_FILE, _spec(session, kw, asked, what, price, sweep_id, name))
    return sweep_dir


def _check_image(session: Any, asked: dict) -> None:
    """`--image` checked before the sweep, not in every trial; a Dockerfile by its full
    path (the scheduler runs in the sweep's folder; each trial copies its context)."""
    options = asked["options"]
    if options.get("image"):
        cfg = session.config
        dockerfile = image_options(
            options, asked["backend"], cfg.container_runtime, cfg.container_network
        )
        if dockerfile is not None:
            options["image"] = str(dockerfile)


def _spec(
    session: Any, kw: dict, asked: dict, what: dict, price: Any, sweep_id: str, name: str
) -> dict:
    """sweep.json: the plan and settings the scheduler runs, and what each trial's run gets."""
    options = asked["options"]
    grace = options.pop("grace_seconds", None) or session.config.grace_seconds
    if what["held_back"]:  # names only: a trial's NameError says to --ship them
        options["held_back"] = what["held_back"]
    return {
        "format": FORMAT,
        "sweep_id": sweep_id,
        "name": name,
        "experiment": kw["experiment"] or name,
        "project": kw["project"] or session.config.project,
        "owner": session.config.owner,
        "created": time.time(),
        "search": asked["search"],
        "grid": asked["grid"],
        "space": asked["space"],
        "fixed": asked["fixed"],
        "seed": asked["seed"],
        "n_trials": asked["n_trials"],
        "objective": asked["objective"],
        "max_parallel": asked["max_parallel"],
        "stop_on_failure": bool(kw["stop_on_failure"]),
        "max_failures": asked["max_failures"],
        "prune": asked["prune"],
        "early_stop": asked["early_stop"],
        "target": {
            "kind": what["kind"],
            "script": what["script"],
            "notebook": what["notebook"],
            "args": list(kw["args"] or ()),
            "workdir": what["workdir"],
        },
        "run": {
            "backend": asked["backend"],
            "tags": list(kw["tags"] or ()),
            "metrics": asked["metrics"],
            "max_hours": asked["max_hours"],
            "grace_seconds": grace,
            "options": options,
            "object_names": what["object_names"],
            "price": price,
        },
        "cost_limit": kw.get("cost_limit"),
        "lost_timeout": session.config.lost_timeout,
        "plan": asked["plan"],
    }
