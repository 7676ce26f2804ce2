"""A run's life from the notebook side, after it is written: launch an attempt on its
backend, follow it live until it ends, stop it, resume it (the next attempt, same id),
read its output. `RunStarter` (start.py) and `Session` build on this; a sweep's
scheduler drives trials with it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from ..backends import backend_class
from ..config import Runctl
from ..errors import RunctlError, RunFailed
from ..events import ACTIVE_STATUSES, FINAL_STATUSES
from ..store import Store
from ..store.folders import read_spec, write_spec
from .results import LogText, Run
from .team import Team

ENDED = FINAL_STATUSES | {"lost"}
ENV_REUSE_SECONDS = 5.0  # runs launched this close together share one environment scan


class RunControl:
    """Settings, the store and the backends; launching, following and stopping runs."""

    def __init__(self, config: Runctl | None = None, shell: Any = None) -> None:
        self.config = config if config is not None else Runctl()
        self.shell = shell
        home = Path(self.config.home).expanduser()
        self.store = Store(home, lost_timeout=self.config.lost_timeout)
        self._backends: dict[str, Any] = {}
        self._last_env: dict[str, Any] | None = None
        self._last_env_at = -1e9
        self.team = Team(self)  # c.Runctl.team: publishing and pulling (docs/teams.md)

    # -- helpers -------------------------------------------------------------
    def backend(self, name: str) -> Any:
        if name not in self._backends:
            self._backends[name] = backend_class(name)(parent=self.config)
        return self._backends[name]

    def backend_stop(self, run_id: str, force: bool = False, reason: str = "user") -> None:
        """Ask a run to stop without waiting (the panel's Stop button, a sweep's pruner);
        `reason` ends up in its exit event. A teammate's run: only its owner or a team
        admin (runs/identity.py); a sweep's or a budget's own stops are not asked."""
        run_dir = self.store.run_dir(run_id)
        spec = read_spec(run_dir)
        if reason == "user":
            from .identity import check_may_stop

            check_may_stop(self, spec)
        self.backend(spec.get("backend", "local")).stop(run_dir, spec, force=force, reason=reason)

    def run(self, ref: str) -> Run:
        if isinstance(ref, str) and "/" in ref:  # owner/RUN: a teammate's (docs/teams.md)
            return Run(self, self.team.resolve(ref))
        return Run(self, self.store.resolve(ref))

    def _default_name(self, experiment: str) -> str:
        count = len(self.store.list_runs(experiment=experiment, limit=None))
        return f"{experiment}-{count + 1}"

    def _environment(self, workdir: str, params: dict[str, Any]) -> dict[str, Any]:
        """env.json facts; launches seconds apart (a sweep) share the git and package scan."""
        from ..environment import capture_environment

        now = time.monotonic()
        recent = self._last_env if now - self._last_env_at < ENV_REUSE_SECONDS else None
        env = capture_environment(workdir, params, reuse=recent)
        if env is not recent:
            self._last_env, self._last_env_at = env, now
        return env

    def _run_status(self, run_id: str) -> str | None:
        """For AWS resources: the status of the run a resource belongs to (None: unknown)."""
        try:
            self.store.refresh(run_id)
            status: str | None = self.store.get(run_id)["status"]
            return status
        except RunctlError:
            return None

    def run_owner(self) -> str:
        """The owner a new run records (in a team: the IAM identity; runs/identity.py)."""
        from .identity import run_owner

        return run_owner(self)

    def _owner_chosen(self) -> bool:
        """Was c.Runctl.owner set on purpose? (else AWS tags use the IAM user name)"""
        return "owner" in self.config.config.get("Runctl", {})

    def _launch(self, spec: dict[str, Any], target: Any, attempt: int, detach: bool) -> Run:
        run_id = spec["run_id"]
        if attempt == 1:
            team = self.team.settings()
            if team and not spec.get("team"):  # published by its agent's sync
                spec["team"] = team
                write_spec(self.store.run_dir(run_id), spec)
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
            if isinstance(exc, Exception):
                from ..aws.errors import explain, is_aws  # no boto3: class names only

                if is_aws(exc):
                    raise RunctlError(f"could not start run {run_id}: {explain(exc)}") from exc
            raise RunctlError(f"could not start run {run_id}: {exc}") from exc
        run = Run(self, run_id)
        if detach:
            return run
        return self.wait(run)

    def relaunch_whole(self, run_id: str, target: Any, spec: dict[str, Any]) -> bool:
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

    def _follow(self, run: Run, view: Any) -> dict[str, Any]:
        spec = read_spec(self.store.run_dir(run.id))
        target = self.backend(spec.get("backend", "local"))
        interval = self.config.refresh_interval
        # A panel starts from the whole stream: the events an earlier refresh folded
        # (%runctl runs, attach, a slow first import of the panel) are never new again.
        replay = getattr(view, "replays_history", False)
        while True:
            target.pull(self.store.run_dir(run.id), spec)
            events = self.store.refresh(run.id, sign_later=True)
            if replay:
                events, replay = self.store.events(run.id), False
            row = self.store.get(run.id)
            if row["status"] == "resuming" and self.relaunch_whole(run.id, target, spec):
                self.store.sign_pending()
                continue  # the next attempt's nodes are up: follow it
            view.update(row, events)
            self.store.sign_pending()  # after the view showed them (issue 19: first metric)
            if row["status"] in ENDED:
                return row
            view.idle(interval)

    def _outcome(self, run: Run, row: dict[str, Any]) -> Run:
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
        if row["status"] not in ACTIVE_STATUSES and not self._dev_agent_waits(run.id):
            raise RunctlError(f"run {run.id} is {row['status']}, not running: nothing to stop")
        self.backend_stop(run.id, force)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.store.refresh(run.id)
            if run.row["status"] in ENDED:
                break
            time.sleep(0.1)
        return run

    def _dev_agent_waits(self, run_id: str) -> bool:
        """A dev run's agent waits for the next change after an attempt (agent/restart.py)."""
        run_dir = self.store.run_dir(run_id)
        spec = read_spec(run_dir)
        if not (spec.get("options") or {}).get("dev"):
            return False
        return bool(self.backend(spec.get("backend", "local")).is_alive(run_dir, spec))

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

    def logs(self, ref: str, follow: bool = False, tail: int | None = None) -> LogText | None:
        run = self.run(ref)
        path = self.store.run_dir(run.id) / "stdout.log"
        if follow:
            self._follow_logs(run, path)
            return None
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
