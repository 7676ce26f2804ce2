"""The Python API behind the magic and the shell: train, attach, stop, resume, ...

from runctl_jupyter.session import Session
run = Session().train(code="...", params={"lr": 0.1}, detach=True)
run.wait()
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from .backends import backend_class
from .config import Runctl
from .errors import RunctlError, RunFailed
from .events import ACTIVE_STATUSES, FINAL_STATUSES
from .launch import create_run, new_run_id, read_spec, write_spec
from .results import LogText, ResourceTable, Run, RunDetails, RunTable, format_duration, one_line
from .store import Store

ENDED = FINAL_STATUSES | {"lost"}
ENV_REUSE_SECONDS = 5.0  # runs launched this close together share one environment scan

# Train options the parser knows that are not built yet: refused, never silently ignored.
NOT_YET: dict[str, int] = {}
CLOUD_ONLY = (
    "ami",
    "data",
    "fallback",
    "idle_minutes",
    "instance",
    "instance_type",
    "keep",
    "pip",
    "region",
    "requirements",
    "spot",
    "sync",
    "validate_data",
    "volume",
)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_options(options: dict, backend: str) -> None:
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
    if backend == "local":
        for name in CLOUD_ONLY:
            if name in given:
                raise RunctlError(
                    f"{_flag(name)} is for cloud runs: add --backend aws, or drop it for a local run"
                )
    from .distributed import plan

    plan(options, backend)  # --gpus/--nproc-per-node/--nodes that cannot work (issue 10)


class Session:
    """One per kernel (or shell command): settings, the store and the backends."""

    def __init__(self, config: Runctl | None = None, shell: Any = None) -> None:
        self.config = config if config is not None else Runctl()
        self.shell = shell
        home = Path(self.config.home).expanduser()
        self.store = Store(home, lost_timeout=self.config.lost_timeout)
        self._backends: dict[str, Any] = {}
        self._last_env: dict | None = None
        self._last_env_at = -1e9

    # -- helpers -------------------------------------------------------------
    def backend(self, name: str) -> Any:
        if name not in self._backends:
            self._backends[name] = backend_class(name)(parent=self.config)
        return self._backends[name]

    def backend_stop(self, run_id: str, force: bool = False, reason: str = "user") -> None:
        """Ask a run to stop without waiting (the panel's Stop button, a sweep's pruner);
        `reason` ends up in its exit event."""
        run_dir = self.store.run_dir(run_id)
        spec = read_spec(run_dir)
        self.backend(spec.get("backend", "local")).stop(run_dir, spec, force=force, reason=reason)

    def run(self, ref: str) -> Run:
        return Run(self, self.store.resolve(ref))

    def _default_name(self, experiment: str) -> str:
        count = len(self.store.list_runs(experiment=experiment, limit=None))
        return f"{experiment}-{count + 1}"

    def _environment(self, workdir: str, params: dict) -> dict:
        """env.json facts; launches seconds apart (a sweep) share the git and package scan."""
        from .environment import capture_environment

        now = time.monotonic()
        recent = self._last_env if now - self._last_env_at < ENV_REUSE_SECONDS else None
        env = capture_environment(workdir, params, reuse=recent)
        if env is not recent:
            self._last_env, self._last_env_at = env, now
        return env

    # -- train ----------------------------------------------------------------
    def train(
        self,
        *,
        code: str | None = None,
        script: str | None = None,
        args: list[str] | tuple = (),
        params: dict | None = None,
        experiment: str | None = None,
        name: str | None = None,
        project: str | None = None,
        tags: list[str] | tuple = (),
        backend: str | None = None,
        metrics: list[str] | tuple = (),
        detach: bool = False,
        max_hours: float | None = None,
        ship_objects: bool = True,
        user_ns: dict | None = None,
        options: dict | None = None,
        sweep_id: str | None = None,
    ) -> Run:
        """Start a run of a cell's `code` or a `script`; wait for it unless `detach`."""
        if (code is None) == (script is None):
            raise RunctlError("train needs either cell code or a SCRIPT.py (not both)")
        params = dict(params or {})
        objects = None
        object_names: list[str] = []
        if code is not None:
            from .capture import check_syntax, collect_objects
            from .capture import ship_objects as pickle_objects

            check_syntax(code)
            workdir = os.getcwd()
            if ship_objects and self.config.ship_objects and user_ns is not None:
                found = collect_objects(code, user_ns, exclude=set(params))
                if found:
                    objects = pickle_objects(found, workdir)
                    object_names = sorted(found)
        else:
            path = Path(script).expanduser()
            if not path.is_file():
                raise RunctlError(f"no script {script!r} (looked in {Path.cwd()}): check the path")
            script = str(path.resolve())
            workdir = str(path.resolve().parent)
        if max_hours is not None and max_hours <= 0:
            raise RunctlError("--max-hours must be a positive number of hours, e.g. --max-hours 2")
        experiment = experiment or self.config.experiment
        backend_name = backend or self.config.backend
        options = dict(options or {})
        check_options(options, backend_name)
        if backend_name != "local" and self._owner_chosen():
            options.setdefault("owner", self.config.owner)  # else the IAM user name tags resources
        grace = options.pop("grace_seconds", None)
        grace = self.config.grace_seconds if grace is None else grace
        target = self.backend(backend_name)  # an unknown backend fails before anything is written
        from .costs import attach_price, before_launch

        project = project or self.config.project
        price = before_launch(self, backend_name, options, max_hours, experiment, project=project)
        spec = create_run(
            self.store.runs_dir,
            kind="cell" if code is not None else "script",
            code=code,
            script=script,
            args=args,
            params=params,
            objects=objects,
            object_names=object_names,
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
        )
        attach_price(self.store.run_dir(spec["run_id"]), spec, price)
        return self._launch(spec, target, attempt=1, detach=detach)

    def _launch(self, spec: dict, target: Any, attempt: int, detach: bool) -> Run:
        run_id = spec["run_id"]
        if attempt == 1:
            self.store.add_run(spec)
        else:
            self.store.set_status(run_id, "starting")  # not "stopped" while the new agent boots
        run_dir = self.store.run_dir(run_id)
        if hasattr(target, "progress"):  # a cloud launch says where it is: provisioning, starting
            target.progress = lambda state, detail: self._launch_progress(run_id, state, detail)
        try:
            facts = target.start(run_dir, spec, attempt)
            if facts:
                spec["target"] = {**(spec.get("target") or {}), **facts}
                write_spec(run_dir, spec)
        except BaseException as exc:
            self.store.set_status(run_id, "failed", reason="launch")
            if isinstance(exc, RunctlError):
                raise
            raise RunctlError(f"could not start run {run_id}: {exc}") from exc
        run = Run(self, run_id)
        if detach:
            return run
        return self.wait(run)

    def relaunch_whole(self, run_id: str, target: Any, spec: dict) -> bool:
        """A run the backend resumes whole from here (a multi-node AWS run at `resuming`):
        launch its next attempt once, the same path as `resume`. True when launched.
        A failed launch leaves nothing billing and says what to do."""
        wanted = getattr(target, "next_attempt", None)
        run_dir = self.store.run_dir(run_id)
        try:
            attempt = wanted(run_dir, spec) if wanted is not None else None
        except RunctlError as exc:
            print(f"[runctl] {exc}", file=sys.stderr, flush=True)
            return False
        if attempt is None:
            return False
        print(
            f"[runctl] run {run_id} was interrupted: launching attempt {attempt} on new nodes",
            file=sys.stderr,
            flush=True,
        )
        try:
            self._launch(spec, target, attempt=attempt, detach=True)
        except RunctlError as exc:
            print(
                f"[runctl] {exc}; `runctl resume {run_id}` tries again", file=sys.stderr, flush=True
            )
        return True

    def _launch_progress(self, run_id: str, state: str, detail: str) -> None:
        if state in ("provisioning", "starting") and self.store.get(run_id)["status"] != state:
            self.store.set_status(run_id, state)
        print(f"[runctl] {state}: {detail}", file=sys.stderr, flush=True)

    # -- watching ----------------------------------------------------------------
    def wait(self, run: Run, quiet: bool = False) -> Run:
        """Follow a run live until it ends. Interrupt detaches (or stops, per
        c.Runctl.on_interrupt); a failed or lost run raises RunFailed."""
        view = self._live_view(run)
        try:
            row = self._follow(run, view)
        except KeyboardInterrupt:
            if self.config.on_interrupt == "stop":
                self.stop(run.id)
                row = self._follow(run, view)
            else:
                view.detached(run.row)
                message = (
                    f"detached from run {run.id}: it goes on. "
                    f"`%runctl attach {run.id}` shows it again, `%runctl stop {run.id}` stops it."
                )
                print(message, file=sys.stderr)
                return run
        view.finish(row, self.store.metrics(run.id))
        return self._outcome(run, row)

    def _follow(self, run: Run, view: Any) -> dict:
        spec = read_spec(self.store.run_dir(run.id))
        target = self.backend(spec.get("backend", "local"))
        interval = self.config.refresh_interval
        # A panel starts from the whole stream: the events an earlier refresh folded
        # (%runctl runs, attach, a slow first import of the panel) are never new again.
        replay = getattr(view, "replays_history", False)
        while True:
            target.pull(self.store.run_dir(run.id), spec)
            events = self.store.refresh(run.id)
            if replay:
                events, replay = self.store.events(run.id), False
            row = self.store.get(run.id)
            if row["status"] == "resuming" and self.relaunch_whole(run.id, target, spec):
                continue  # the next attempt's nodes are up: follow it
            view.update(row, events)
            if row["status"] in ENDED:
                return row
            view.idle(interval)

    def _outcome(self, run: Run, row: dict) -> Run:
        if self.shell is not None:
            self.shell.user_ns["_runctl_run"] = run
        if row["status"] == "failed":
            error = row.get("error") or {}
            detail = f"{error.get('type', 'Error')}: {error.get('message', '')}".rstrip(": .")
            raise RunFailed(
                run.id,
                f"run {run.id} ({row['name']}) failed: {detail}. `%runctl logs {run.id}` has the output.",
                error.get("traceback"),
            )
        if row["status"] == "lost":
            raise RunFailed(
                run.id,
                f"run {run.id} ({row['name']}) was lost: its agent stopped ({row.get('reason')}). "
                f"`%runctl resume {run.id}` continues from the latest checkpoint.",
            )
        return run

    def _live_view(self, run: Run) -> Any:
        from .liveview import make_view

        return make_view(self, run)

    def attach(self, ref: str) -> Run:
        """Show a run live again (after a detach or a kernel restart)."""
        run = self.run(ref)
        self.store.refresh(run.id)
        if run.row["status"] in ENDED:
            return run
        return self.wait(run)

    # -- control -----------------------------------------------------------------
    def stop(self, ref: str, force: bool = False, wait: float = 5.0) -> Run:
        """Stop a run: SIGTERM, then SIGKILL after the grace period (at once with force)."""
        run = self.run(ref)
        self.store.refresh(run.id)
        row = run.row
        if row["status"] not in ACTIVE_STATUSES:
            raise RunctlError(f"run {run.id} is {row['status']}, not running: nothing to stop")
        self.backend_stop(run.id, force)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.store.refresh(run.id)
            if run.row["status"] in ENDED:
                break
            time.sleep(0.1)
        return run

    def resume(self, ref: str, detach: bool = False) -> Run:
        """Continue a stopped, failed or lost run from its latest checkpoint, same id."""
        run = self.run(ref)
        self.store.refresh(run.id)
        row = run.row
        if row["status"] == "resuming":  # a multi-node run waits for its new nodes
            spec = read_spec(self.store.run_dir(run.id))
            target = self.backend(spec.get("backend", "local"))
            if self.relaunch_whole(run.id, target, spec):
                return run if detach else self.wait(run)
            raise RunctlError(
                f"run {run.id} is resuming: its next attempt starts by itself or is being "
                f"launched already; `%runctl attach {run.id}` follows it"
            )
        if row["status"] not in ("stopped", "failed", "lost"):
            raise RunctlError(
                f"run {run.id} is {row['status']}: only a stopped, failed or lost run can be resumed"
            )
        run_dir = self.store.run_dir(run.id)
        spec = read_spec(run_dir)
        target = self.backend(spec.get("backend", "local"))
        deadline = time.monotonic() + 5  # an agent that just wrote its exit event is finishing up
        while target.is_alive(run_dir, spec) and time.monotonic() < deadline:
            time.sleep(0.05)
        if target.is_alive(run_dir, spec):
            raise RunctlError(
                f"run {run.id}'s agent is still alive: `%runctl stop {run.id}` it first"
            )
        (run_dir / "control.json").unlink(missing_ok=True)
        return self._launch(spec, target, attempt=int(row.get("attempt") or 1) + 1, detach=detach)

    def rerun(self, ref: str, params: dict | None = None, detach: bool = False) -> Run:
        """A fresh run (new id) with the same code and params (overrides allowed).
        `ref` is a run or the path of a record.ipynb (which carries everything)."""
        source = self._rerun_source(ref)
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
                options=spec.get("options"),
                environment=self._environment(workdir, merged),
                rerun_of=spec.get("run_id"),
                script_path=spec.get("script_path"),
            )
        finally:
            if source_file is not None:
                source_file.unlink(missing_ok=True)
        from .costs import attach_price, before_launch

        price = before_launch(
            self,
            backend_name,
            dict(new.get("options") or {}),
            new.get("max_hours"),
            experiment,
            yes=True,
        )
        attach_price(self.store.run_dir(new["run_id"]), new, price)
        return self._launch(new, target, attempt=1, detach=detach)

    def _rerun_source(self, ref: str) -> dict:
        if ref.endswith(".ipynb") and Path(ref).is_file():
            from .record import read_record

            return read_record(Path(ref))
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
        params: dict | None = None,
        experiment: str | None = None,
        name: str | None = None,
        detach: bool = False,
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
        )
        return self._launch(spec, self.backend("local"), attempt=1, detach=detach)

    # -- reading -------------------------------------------------------------------
    def runs(
        self,
        experiment: str | None = None,
        status: str | None = None,
        limit: int | None = 20,
        project: str | None = None,
        sweep: str | None = None,
    ) -> RunTable:
        self.store.refresh()
        if sweep is not None:
            from .sweeps.api import find

            handle = find(self, sweep)
            if handle is None:
                raise RunctlError(f"no sweep {sweep!r}: see `runctl sweeps` for sweep ids")
            sweep = handle.id
        rows = self.store.list_runs(
            experiment=experiment, status=status, project=project, sweep_id=sweep, limit=limit
        )
        filters = {"experiment": experiment, "status": status, "project": project, "sweep": sweep}
        summaries = self.store.summaries([r["id"] for r in rows])
        return RunTable(rows, summaries, session=self, filters=filters)

    def show(self, ref: str) -> Any:
        """A run's details, or a sweep's (sweep ids start with `s`)."""
        from .sweeps.api import lookup
        from .sweeps.api import show as show_sweep

        found = lookup(self, ref)
        if found is not None:
            return show_sweep(self, found.id)
        run = self.run(ref)
        self.store.refresh(run.id)
        return RunDetails(run.row, self.store.metrics(run.id), self.store.checkpoints(run.id))

    def logs(self, ref: str, follow: bool = False, tail: int | None = None) -> LogText | None:
        run = self.run(ref)
        path = self.store.run_dir(run.id) / "stdout.log"
        if follow:
            return self._follow_logs(run, path)
        text = path.read_text(errors="replace") if path.exists() else ""
        if int(run.row.get("attempt") or 1) > 1 and not text.startswith("=== attempt 1"):
            text = "=== attempt 1 ===\n" + text
        if tail:
            text = "".join(text.splitlines(keepends=True)[-tail:])
        return LogText(text)

    def _follow_logs(self, run: Run, path: Path) -> None:
        offset = 0
        while True:
            self.store.refresh(run.id)
            if path.exists():
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
                offset += len(data)
                if data:
                    sys.stdout.write(data.decode("utf-8", "replace"))
                    sys.stdout.flush()
            if run.row["status"] in ENDED:
                return None
            time.sleep(0.2)

    # -- not yet built (their issues are open) --------------------------------------
    def _not_yet(self, what: str, issue: int) -> RunctlError:
        return RunctlError(f"`runctl {what}` is not available in this version yet (issue {issue})")

    def sweep(self, **kwargs: Any) -> Any:
        """Many runs over a search space (runctl_jupyter/sweeps/)."""
        from .sweeps.api import sweep

        return sweep(self, **kwargs)

    def sweeps(self, **kwargs: Any) -> Any:
        from .sweeps.api import sweeps

        return sweeps(self, **kwargs)

    def _run_status(self, run_id: str) -> str | None:
        """For AWS resources: the status of the run a resource belongs to (None: unknown)."""
        try:
            self.store.refresh(run_id)
            return self.store.get(run_id)["status"]
        except RunctlError:
            return None

    def aws(self, action: str, region: str | None = None) -> Any:
        """`runctl aws setup | policy | doctor` (runctl_jupyter/aws/commands.py)."""
        from .aws.commands import aws

        report = aws(action, config=self.backend("aws"), region=region)
        if not report.ok:
            raise RunctlError(
                f"{report}\nfix what is marked above, then run `runctl aws doctor` again"
            )
        return LogText(str(report))

    def resources(self, regions: list[str] | None = None, all_owners: bool = False) -> Any:
        """Every runctl-managed cloud resource with its owner, run, state and $/h."""
        from .aws.commands import resources

        listing = resources(self._run_status, config=self.backend("aws"), regions=regions)
        return ResourceTable(listing, self._resource_costs(listing.resources))

    def _resource_costs(self, found: list) -> dict[str, tuple[float | None, float | None]]:
        """{resource id: ($/h, dollars so far)} for instances: the run's own meter when the
        store knows the run, else the bundled on-demand price x age (an orphan's upper bound)."""
        from .pricing import Prices

        prices = Prices(self.store.home)
        costs: dict[str, tuple[float | None, float | None]] = {}
        for res in found:
            if res.kind != "instance":
                continue
            try:
                row = self.store.get(res.run_id) if res.run_id else None
            except RunctlError:
                row = None
            if row is not None and row.get("rate") is not None:
                costs[res.id] = (row["rate"], row.get("cost"))
                continue
            instance_type = (res.detail or "").split(" ")[0]
            rate = prices.table_on_demand(instance_type, res.region) if instance_type else None
            age = res.age_hours()
            spent = rate * age if rate is not None and age is not None else None
            costs[res.id] = (rate if res.state in ("pending", "running") else 0.0, spent)
        return costs

    def cleanup(self, yes: bool = False, all_owners: bool = False) -> Any:
        """List orphaned resources; delete them with --yes (or after a yes at a terminal)."""
        from .aws.commands import cleanup_orphans

        interactive = self.shell is None and sys.stdin is not None and sys.stdin.isatty()
        confirm = (
            (lambda question: input(f"{question} [y/N] ").strip().lower() in ("y", "yes"))
            if interactive
            else None
        )
        owner = self.config.owner if self._owner_chosen() else None
        text = cleanup_orphans(
            self._run_status,
            owner=owner,
            all_owners=all_owners,
            yes=yes,
            confirm=confirm,
            config=self.backend("aws"),
        )
        return LogText(text)

    def _owner_chosen(self) -> bool:
        """Was c.Runctl.owner set on purpose? (else AWS tags use the IAM user name)"""
        return "owner" in self.config.config.get("Runctl", {})

    def cost(self, **kwargs: Any) -> Any:
        """`runctl cost` (spend report) or `runctl cost price TYPE` (runctl_jupyter/costs.py)."""
        from .costs import cost

        return cost(self, **kwargs)

    def compare(
        self,
        refs: list[str] | tuple = (),
        experiment: str | None = None,
        sweep: str | None = None,
        metric: str | None = None,
    ) -> Any:
        """Runs side by side: curves, the params that differ, cost against objective."""
        from .display.compare_panel import compare

        objective = None
        if sweep is not None:
            from .sweeps.api import find

            handle = find(self, sweep)
            if handle is None:
                raise RunctlError(f"no sweep {sweep!r}: see `runctl sweeps` for sweep ids")
            sweep, objective = handle.id, handle.objective
        if not refs and experiment is None and sweep is None:
            raise RunctlError("compare needs runs: RUN RUN ..., --experiment NAME or --sweep SWEEP")
        self.store.refresh()
        return compare(
            self.store, refs, experiment=experiment, sweep=sweep, metric=metric, objective=objective
        )


__all__ = ["Session", "Run", "format_duration", "one_line"]
