"""`runctl dev`: one dev run whose attempts restart on each change (docs/dev.md).

    %runctl dev train.py --watch        # edit train.py or a module it imports: it restarts
    %%runctl dev ...                    # run the cell again: its dev run restarts

A change restarts the run as its next attempt, same id, on the same machine: the
new files go into the run folder (and, on AWS, only the changed ones up to S3, by
content hash: backends/aws_dev.py), then `control.json` asks the agent to restart
(agent/restart.py). An agent that is gone (its wait ran out, a crash) gets the
next attempt through the launch path `resume` uses.

The watcher polls the files' stat every WATCH_SECONDS and hashes a file only when
its stat changed: a handful of files cost microseconds a poll, work on any file
system and need no dependency (a notify library would add one for nothing here).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from ..store.folders import read_spec, write_spec
from .results import Run

DEV_FILE = "dev.json"  # in the run folder: the content hash of every file shipped so far
WATCH_SECONDS = 0.2
SETTLE_SECONDS = 0.05  # an editor's save can take a few writes: wait until the stat holds
ENDED_ON_ITS_OWN = ("succeeded", "failed")
RESTART_TIMEOUT = 120.0  # a restarted attempt shows by then (an SSM command on AWS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def run_files(run_dir: Path, spec: dict) -> dict[str, Path]:
    """What a dev attempt runs, by its name in the bundle: `run/<file>` (the code, its
    params, shipped objects) and `work/<file>` (modules it imports from its folder)."""
    from ..aws.bundle import module_files

    files = {
        f"run/{name}": run_dir / name
        for name in ("code.py", "params.json", "objects.pkl")
        if (run_dir / name).is_file()
    }
    files.update({f"work/{rel}": path for path, rel in module_files(run_dir, spec)})
    return files


def _read_hashes(run_dir: Path) -> dict[str, str]:
    try:
        return dict(json.loads((run_dir / DEV_FILE).read_text()).get("files") or {})
    except (OSError, ValueError):
        return {}


def _write_hashes(run_dir: Path, hashes: dict[str, str]) -> None:
    tmp = run_dir / f"{DEV_FILE}.tmp"
    tmp.write_text(json.dumps({"files": hashes}, indent=1, sort_keys=True))
    os.replace(tmp, run_dir / DEV_FILE)


def changed_files(run_dir: Path, spec: dict) -> dict[str, bytes]:
    """The files whose content differs from what the run has (by sha256), recorded as
    shipped; the first call records everything and returns it all."""
    shipped = _read_hashes(run_dir)
    changed: dict[str, bytes] = {}
    hashes = {}
    for name, path in run_files(run_dir, spec).items():
        data = path.read_bytes()
        hashes[name] = sha256(data)
        if shipped.get(name) != hashes[name]:
            changed[name] = data
    _write_hashes(run_dir, hashes)
    return changed


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def start_dev(
    session: Any,
    *,
    watch: bool = False,
    validate: bool = False,
    smoke_steps: int | None = None,
    smoke_params: dict | None = None,
    **kw: Any,
) -> Run:
    """`Session.dev`: checks and the smoke run first (validate.py), then the dev run
    (or this cell's or script's dev run, restarted), its watcher, and following it."""
    script = kw.get("script")
    if script is not None and not Path(script).expanduser().is_file():
        flag = "--watch " if watch else ""
        raise RunctlError(
            f"dev {flag}{script}: no such file (looked in {Path.cwd()}); check the path"
        )
    if watch and kw.get("detach") and session.shell is None:
        raise RunctlError(
            "dev --watch in a shell watches in the foreground (Ctrl-C ends it): drop --detach"
        )
    if validate or smoke_steps:
        from .validate import validate_before_run

        validate_before_run(session, kw, validate, smoke_steps, dict(smoke_params or {}))
    runs = getattr(session, "_dev_runs", None)
    if runs is None:
        runs = session._dev_runs = DevRuns(session)
    path = Path(script).expanduser().resolve() if script else None
    where = kw.get("backend") or session.config.backend
    key = ("script", str(path), where) if path else ("cell", kw.get("name"), where)
    run, attempt = runs.start(key, kw)
    watching = bool(path and watch)
    if path is not None and watching and run.id not in runs.watchers:
        runs.watch(run.id, path)
    if kw.get("detach"):
        return run
    return runs.follow(run, watching, attempt)


class DevRuns:
    """The dev runs of one Session: which run a cell or script restarts, and how."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.by_key: dict[tuple, str] = {}
        self.watchers: dict[str, Watcher] = {}

    def start(self, key: tuple, train_kwargs: dict) -> tuple[Run, int | None]:
        """A new dev run, or the next attempt of this key's dev run with the new code:
        the run and, for a restart, the attempt it restarted from."""
        session = self.session
        run_id = self.by_key.get(key)
        kw = {k: v for k, v in train_kwargs.items() if k != "detach"}
        if run_id is not None:
            session.store.refresh(run_id)
            attempt = int(session.store.get(run_id).get("attempt") or 1)
            self.restart(run_id, self._new_inputs(run_id, kw), force=True)
            return Run(session, run_id), attempt
        kw["options"] = {**(kw.get("options") or {}), "dev": True}
        run = session.train(**kw, detach=True)
        run_dir = session.store.run_dir(run.id)
        changed_files(run_dir, read_spec(run_dir))  # what it started with
        self.by_key[key] = run.id
        return run, None

    def _new_inputs(self, run_id: str, kw: dict) -> dict[str, bytes]:
        """The run folder files a repeated `dev` line or cell brings: code, params, objects."""
        session = self.session
        script, _, shipment = session._what_runs(
            kw.get("code"), kw.get("script"), dict(kw.get("params") or {}),
            kw.get("user_ns"), kw.get("ship_objects", True), kw.get("ship") or (),
        )  # fmt: skip
        objects = shipment.data
        run_dir = session.store.run_dir(run_id)
        spec = read_spec(run_dir)
        spec["params"] = dict(kw.get("params") or {})
        spec["objects"] = shipment.names
        if shipment.held_back:  # the runner's NameError says to --ship them
            spec.setdefault("options", {})["held_back"] = sorted(shipment.held_back)
        write_spec(run_dir, spec)
        code = Path(script).read_text() if script else kw["code"]
        inputs = {"code.py": code.encode(), "params.json": json.dumps(spec["params"]).encode()}
        if objects is not None or (run_dir / "objects.pkl").exists():
            import pickle

            inputs["objects.pkl"] = objects if objects is not None else pickle.dumps({})
        return inputs

    def restart(self, run_id: str, inputs: dict[str, bytes], force: bool = False) -> list[str]:
        """Put `inputs` (run folder files) in place, ship what changed, restart the run.
        Returns the names of the changed files ([]: nothing changed, nothing done,
        unless `force`: a cell run again restarts its run, changed or not)."""
        session = self.session
        run_dir = session.store.run_dir(run_id)
        spec = read_spec(run_dir)
        for name, data in inputs.items():
            _write_atomic(run_dir / name, data)
        changed = changed_files(run_dir, spec)
        if not changed and not force:
            return []
        names = [self._code_name(spec) if n == "run/code.py" else Path(n).name for n in changed]
        target = session.backend(spec.get("backend", "local"))
        ask = getattr(target, "restart", None)  # optional in the Backend protocol
        if ask is None or not ask(run_dir, spec, changed, names):
            self._relaunch(run_id, spec, target)
        return names

    @staticmethod
    def _code_name(spec: dict) -> str:
        return Path(spec["script_path"]).name if spec.get("script_path") else "the cell"

    def _relaunch(self, run_id: str, spec: dict, target: Any) -> None:
        """The agent is gone: the next attempt through the launch path `resume` takes."""
        session = self.session
        run_dir = session.store.run_dir(run_id)
        session.store.refresh(run_id)
        (run_dir / "control.json").unlink(missing_ok=True)
        facts = spec.get("target") or {}
        if facts.get("instance_id") and (facts.get("keep") or facts.get("reused")):
            spec.setdefault("options", {})["instance"] = facts["instance_id"]  # the warm one
            spec["options"].pop("instance_type", None)
        attempt = int(session.store.get(run_id).get("attempt") or 1) + 1
        session._launch(spec, target, attempt=attempt, detach=True)

    # -- the session in the foreground ------------------------------------------------
    def follow(self, run: Run, watching: bool, restarted_from: int | None = None) -> Run:
        """Follow the dev run live across its attempts: until its attempt ends (no
        watcher), or until Stop or Ctrl-C (a watched script). Either ends the watcher;
        a kept instance stays, as asked (its idle watcher stops it)."""
        session = self.session
        view = session._live_view(run)
        try:
            if restarted_from is not None:
                self._next_attempt(run, view, restarted_from, RESTART_TIMEOUT)
            while True:
                row = session._follow(run, view)
                if not watching:
                    break
                if row["status"] not in ENDED_ON_ITS_OWN:
                    self.end(run.id, row["status"])  # Stop, a limit: the session is over
                    break
                if self._next_attempt(run, view, row.get("attempt") or 1) is None:
                    break
        except KeyboardInterrupt:
            self.end(run.id, "interrupted")
            row = session.store.get(run.id)
            run.interrupted = True  # the shell exits 130 (cli.py)
        self.end(run.id)
        view.finish(row, session.store.metrics(run.id))
        return run if watching else session._outcome(run, row)

    def _next_attempt(
        self, run: Run, view: Any, attempt: int, timeout: float | None = None
    ) -> dict | None:
        """Wait until an attempt after `attempt` shows: for `timeout` seconds, else for
        as long as the run is watched (None: the session ended first)."""
        session = self.session
        run_dir = session.store.run_dir(run.id)
        spec = read_spec(run_dir)
        target = session.backend(spec.get("backend", "local"))
        deadline = time.monotonic() + timeout if timeout else None
        while deadline is not None or run.id in self.watchers:
            target.pull(run_dir, spec)
            session.store.refresh(run.id)
            row = session.store.get(run.id)
            if int(row.get("attempt") or 1) > attempt:
                return row
            if deadline is not None and time.monotonic() > deadline:
                raise RunctlError(
                    f"run {run.id} did not restart within {timeout:.0f} s: "
                    f"`%runctl logs {run.id}` and its agent.log say why"
                )
            view.idle(session.config.refresh_interval)
        return None

    def end(self, run_id: str, why: str | None = None) -> None:
        """End the dev session of `run_id`: the watcher; with `why`, say so (and what
        stays up); `interrupted` (Ctrl-C) stops the run itself."""
        watcher = self.watchers.pop(run_id, None)
        if watcher is not None:
            watcher.stopped.set()
        if why is None:
            return
        session = self.session
        if why == "interrupted":
            try:  # a waiting agent too: its session is over
                session.stop(run_id, wait=session.config.grace_seconds + 5)
            except RunctlError as exc:
                print(f"[runctl] {exc}", file=sys.stderr)
        note = kept_note(read_spec(session.store.run_dir(run_id)))
        print(f"[runctl] dev session of run {run_id} ended ({why}).{note}", file=sys.stderr)

    def watch(self, run_id: str, script: Path) -> Watcher:
        watcher = Watcher(self, run_id, script)
        self.watchers[run_id] = watcher
        watcher.start()
        return watcher


def kept_note(spec: dict) -> str:
    """What is left running after a dev session, and how it stops."""
    target = spec.get("target") or {}
    instance = target.get("instance_id")
    if not instance or not (target.get("keep") or target.get("reused")):
        return ""
    minutes = (spec.get("options") or {}).get("idle_minutes") or 30
    return (
        f" Instance {instance} stays up for the next session (--instance {instance}); "
        f"it stops itself after {minutes:g} idle minutes with no run."
    )


class Watcher(threading.Thread):
    """Polls a script and the modules it imports from its folder; restarts on a change.
    A daemon thread: the kernel (or the shell's follow loop) is never blocked by it."""

    def __init__(self, runs: DevRuns, run_id: str, script: Path) -> None:
        super().__init__(name=f"runctl-dev-{run_id}", daemon=True)
        self.runs, self.run_id, self.script = runs, run_id, script
        self.stopped = threading.Event()
        self.restarts = 0

    def _stats(self) -> dict[Path, tuple[int, int] | None]:
        run_dir = self.runs.session.store.run_dir(self.run_id)
        paths = {self.script, *run_files(run_dir, read_spec(run_dir)).values()}
        stats: dict[Path, tuple[int, int] | None] = {}
        for path in paths:
            if path.parent == run_dir:
                continue  # the run folder's own copies: written by us
            try:
                st = path.stat()
                stats[path] = (st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                stats[path] = None
        return stats

    def run(self) -> None:
        seen = self._stats()
        polls = 0
        while not self.stopped.wait(WATCH_SECONDS):
            polls += 1
            if polls % 5 == 0 and self._session_over():
                self.runs.end(self.run_id)
                return
            now = self._stats()
            if now == seen:
                continue
            time.sleep(SETTLE_SECONDS)
            seen = self._stats()
            try:
                self._changed()
            except Exception as exc:  # noqa: BLE001 - one line; the watcher goes on
                print(f"[runctl] dev: could not restart run {self.run_id}: {exc}", file=sys.stderr)

    def _session_over(self) -> bool:
        """Stopped on purpose (Stop, a limit) or lost: nothing to restart any more."""
        store = self.runs.session.store
        store.refresh(self.run_id)
        return store.get(self.run_id)["status"] in ("stopped", "lost")

    def _changed(self) -> None:
        code = self.script.read_text()
        from .validate import syntax_error

        problem = syntax_error(code, self.script.name)
        if problem:
            print(f"[runctl] dev: {problem}; the run goes on with the code it has", file=sys.stderr)
            return
        if self.runs.restart(self.run_id, {"code.py": code.encode()}):
            self.restarts += 1
