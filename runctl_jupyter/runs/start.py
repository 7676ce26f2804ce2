"""Starting a run: a cell, a script, a rerun of a run or record, a whole notebook.
Everything is checked and written to a new run folder before any process starts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from ..store.folders import create_run, new_run_id, read_spec
from .capture import Shipment
from .control import RunControl
from .debugging import check_debugger, without_debugger
from .image import copy_context, copy_image_folder, image_options
from .results import Run

# Train options the parser knows that are not built yet: refused, never silently ignored.
NOT_YET: dict[str, int] = {}
CLOUD_ONLY = (
    "ami",
    "data",
    "data_size",
    "fallback",
    "idle_minutes",
    "instance",
    "instance_type",
    "keep",
    "persistent",
    "pip",
    "prewarm",
    "region",
    "requirements",
    "spot",
    "sync",
    "validate_data",
    "volume",
    "volume_name",
)


def _text(path: str | None) -> str | None:
    try:
        return Path(path).read_text() if path else None
    except (OSError, UnicodeDecodeError):
        return None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(options: dict[str, Any], backend: str) -> None:
    """Refuse options that would be ignored: a typo'd intent must never cost a run."""
    # spot=False is `--on-demand`: given, though falsy
    given = {
        k: v
        for k, v in options.items()
        if v is not None and (v is not False or k == "spot") and v != ()
    }
    for name, issue in NOT_YET.items():
        if name in given:
            raise RunctlError(
                f"{_flag(name)} is not available in this version yet (issue {issue}); drop it"
            )
    if given.get("prewarm") and backend != "local" and not (
        given.get("volume") or given.get("data_size")
    ):
        raise RunctlError(
            "--prewarm reads a data volume: add --volume NAME|VOL_ID (or --data-size GB), "
            "or drop --prewarm"
        )
    if backend == "local":
        for name in CLOUD_ONLY:
            if name in given:
                raise RunctlError(
                    f"{_flag(name)} is for cloud runs: add --backend aws, or drop it for a local run"
                )
    from ..distributed import plan

    # --gpus/--nproc-per-node/--nodes that cannot work (issue 10); --debug's rank and port
    check_debugger(options, plan(options, backend), backend)


class RunStarter(RunControl):
    """`train`, `rerun` and `execute`: a new run folder, then its first attempt."""

    # -- train ----------------------------------------------------------------
    def train(
        self,
        *,
        code: str | None = None,
        script: str | None = None,
        args: list[str] | tuple[str, ...] = (),
        params: dict[str, Any] | None = None,
        experiment: str | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: list[str] | tuple[str, ...] = (),
        backend: str | None = None,
        metrics: list[str] | tuple[str, ...] = (),
        detach: bool = False,
        max_hours: float | None = None,
        ship_objects: bool = True,
        ship: list[str] | tuple[str, ...] = (),
        user_ns: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
        sweep_id: str | None = None,
        trigger: dict[str, Any] | None = None,
    ) -> Run:
        """Start a run of a cell's `code` or a `script`; wait for it unless `detach`."""
        if (code is None) == (script is None):
            raise RunctlError("train needs either cell code or a SCRIPT.py (not both)")
        params = dict(params or {})
        script, workdir, shipment = self._what_runs(
            code, script, params, user_ns, ship_objects, ship
        )
        if max_hours is not None and max_hours <= 0:
            raise RunctlError("--max-hours must be a positive number of hours, e.g. --max-hours 2")
        experiment = experiment or self.config.experiment
        backend_name = backend or self.config.backend
        options = dict(options or {})
        check_options(options, backend_name)
        dockerfile = image_options(
            options, backend_name, self.config.container_runtime, self.config.container_network
        )
        if shipment.held_back:  # names only: the runner's NameError says to --ship them
            options["held_back"] = sorted(shipment.held_back)
        if backend_name != "local" and self._owner_chosen():
            options.setdefault("owner", self.config.owner)  # else the IAM user name tags resources
        grace = options.pop("grace_seconds", None)
        grace = self.config.grace_seconds if grace is None else grace
        target = self.backend(backend_name)  # an unknown backend fails before anything is written
        from ..cost.estimate import before_launch
        from ..cost.facts import attach_price
        from ..cost.suggestions import Launch

        project = project or self.config.project
        launch = Launch(
            None, None, code=code if code is not None else _text(script), workdir=Path(workdir)
        )
        price = before_launch(
            self, backend_name, options, max_hours, experiment, project=project, launch=launch
        )
        spec = create_run(
            self.store.runs_dir,
            kind="cell" if code is not None else "script",
            code=code,
            script=script,
            args=args,
            params=params,
            objects=shipment.data,
            object_names=shipment.names,
            experiment=experiment,
            name=name or self._default_name(experiment),
            project=project or self.config.project,
            owner=self.config.owner,
            backend=backend_name,
            workdir=workdir,
            tags=tags,
            metrics=metrics,
            max_hours=max_hours,
            grace_seconds=grace,
            options=options,
            environment=self._environment(workdir, params),
            sweep_id=sweep_id,
            trigger=trigger,
        )
        attach_price(self.store.run_dir(spec["run_id"]), spec, price)
        if dockerfile is not None:  # built by the agent, where the code runs
            copy_context(dockerfile, self.store.run_dir(spec["run_id"]))
        return self._launch(spec, target, attempt=1, detach=detach)

    def _what_runs(
        self,
        code: str | None,
        script: str | None,
        params: dict[str, Any],
        user_ns: dict[str, Any] | None,
        ship_objects: bool,
        ship: list[str] | tuple[str, ...],
    ) -> tuple[str | None, str, Shipment]:
        """What the cell or script brings: the script's full path, the folder the run
        starts in, and the notebook objects a cell reads (pickled, secrets held back)."""
        shipment = Shipment(None, [], {})
        if code is not None:
            from .capture import pack_objects
            from .cell_syntax import check_syntax

            check_syntax(code)
            workdir = os.getcwd()
            if ship_objects and self.config.ship_objects and user_ns is not None:
                shipment = pack_objects(code, user_ns, workdir, exclude=set(params), ship=ship)
        else:
            assert script is not None, "train() takes code or a script"
            path = Path(script).expanduser()
            if not path.is_file():
                raise RunctlError(f"no script {script!r} (looked in {Path.cwd()}): check the path")
            script = str(path.resolve())
            workdir = str(path.resolve().parent)
        return script, workdir, shipment

    def rerun(
        self,
        ref: str,
        params: dict[str, Any] | None = None,
        detach: bool = False,
        trust: bool = False,
    ) -> Run:
        """A fresh run (new id) with the same code and params (overrides allowed).
        `ref` is a run or the path of a record.ipynb (which carries everything); a
        record with pickled objects that this home did not write or trust is refused
        unless `trust` (store/trust.py)."""
        source = self._rerun_source(ref, trust)
        spec, code, objects = source["spec"], source["code"], source["objects"]
        kind = spec.get("kind", "cell")
        merged = {**spec.get("params", {}), **(params or {})}
        workdir = spec.get("workdir") or os.getcwd()
        if not os.path.isdir(workdir):
            workdir = os.getcwd()
        backend_name = spec.get("backend") or self.config.backend
        target = self.backend(backend_name)
        experiment = spec.get("experiment") or self.config.experiment
        source_file = None
        if kind != "cell":  # create_run copies a script or notebook from a file
            suffix = ".ipynb" if kind == "notebook" else ".py"
            source_file = Path(self.store.home) / "tmp" / f"{new_run_id()}{suffix}"
            source_file.parent.mkdir(parents=True, exist_ok=True)
            source_file.write_text(code)
        try:
            new = create_run(
                self.store.runs_dir,
                kind=kind,
                code=code if kind == "cell" else None,
                script=str(source_file) if kind == "script" else None,
                notebook=str(source_file) if kind == "notebook" else None,
                args=spec.get("args", []),
                params=merged,
                objects=objects,
                object_names=spec.get("objects", []),
                experiment=experiment,
                name=spec.get("name") or self._default_name(experiment),
                project=spec.get("project") or self.config.project,
                owner=self.config.owner,
                backend=backend_name,
                workdir=workdir,
                tags=spec.get("tags", []),
                metrics=spec.get("metrics", []),
                max_hours=spec.get("max_hours"),
                grace_seconds=self.config.grace_seconds,
                options=without_debugger(spec.get("options")),  # a rerun never waits
                environment=self._environment(workdir, merged),
                rerun_of=spec.get("run_id"),
                script_path=spec.get("script_path"),
            )
        finally:
            if source_file is not None:
                source_file.unlink(missing_ok=True)
        from ..cost.estimate import before_launch
        from ..cost.facts import attach_price

        price = before_launch(
            self,
            backend_name,
            dict(new.get("options") or {}),
            new.get("max_hours"),
            experiment,
            yes=True,
        )
        attach_price(self.store.run_dir(new["run_id"]), new, price)
        copy_image_folder(self.store.runs_dir / str(spec.get("run_id")), self.store.run_dir(new["run_id"]))
        return self._launch(new, target, attempt=1, detach=detach)

    def _rerun_source(self, ref: str, trust: bool = False) -> dict[str, Any]:
        if ref.endswith(".ipynb") and Path(ref).is_file():
            from ..record import read_record
            from ..store.trust import check_record_trust

            source = read_record(Path(ref))
            check_record_trust(Path(ref), self.store.runs_dir, trust)
            return source
        run_id = self.store.resolve(ref)
        run_dir = self.store.run_dir(run_id)
        spec = read_spec(run_dir)
        objects_path = run_dir / "objects.pkl"
        return {
            "spec": spec,
            "code": (run_dir / spec.get("entry", "code.py")).read_text(),
            "objects": objects_path.read_bytes() if objects_path.exists() else None,
        }

    def execute(
        self,
        notebook: str,
        params: dict[str, Any] | None = None,
        experiment: str | None = None,
        name: str | None = None,
        detach: bool = False,
        trigger: dict[str, Any] | None = None,
    ) -> Run:
        """Run a whole notebook headless (papermill's `parameters` cell) as a run;
        the executed copy is the run's record."""
        path = Path(notebook).expanduser()
        if not path.is_file() or path.suffix != ".ipynb":
            raise RunctlError(f"no notebook {notebook!r}: give the path of an .ipynb file")
        params = dict(params or {})
        experiment = experiment or path.stem
        workdir = str(path.resolve().parent)
        spec = create_run(
            self.store.runs_dir,
            kind="notebook",
            notebook=str(path),
            params=params,
            experiment=experiment,
            name=name or self._default_name(experiment),
            project=self.config.project,
            owner=self.config.owner,
            backend="local",
            workdir=workdir,
            grace_seconds=self.config.grace_seconds,
            environment=self._environment(workdir, params),
            trigger=trigger,
        )
        return self._launch(spec, self.backend("local"), attempt=1, detach=detach)
