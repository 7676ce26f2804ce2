"""The team store from the notebook side (docs/teams.md): where this home publishes
(`c.Runctl.team`, the runctl bucket), the pull that keeps teammates' runs in the
index (at most every `PULL_EVERY` seconds, a listing waits for it at most
`PULL_WAIT`), and `owner/prefix` run references made local mirrors on demand.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from ..errors import AmbiguousRun, RunctlError, RunNotFound

PULL_EVERY = 5.0
PULL_WAIT = 2.0


class Team:
    """One per RunControl: the team settings, resolved once, and the pull thread."""

    def __init__(self, control: Any):
        self.control = control
        self._settings: dict | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._last = 0.0
        self.last_report: Any = None
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return str(self.control.config.team or "")

    def _aws(self) -> tuple[Any, str]:
        aws = self.control.backend("aws")
        try:
            clients = aws.clients
            return clients, aws._bucket(clients)
        except Exception as exc:  # noqa: BLE001 - credentials, STS: said in one line
            from ..aws.errors import explain, is_aws

            why = explain(exc) if is_aws(exc) else str(exc)
            raise RunctlError(f"team {self.name!r}: cannot reach the runctl bucket: {why}") from exc

    def settings(self) -> dict | None:
        """spec["team"] for a new run: None without a team; checked before anything
        is written (a bad owner name, no credentials: one line)."""
        if not self.name:
            return None
        if self._settings is None or self._settings["team"] != self.name:
            from ..team_keys import check_name

            owner = self.control.run_owner()  # the IAM identity (runs/identity.py)
            try:
                check_name(owner, "owner (your IAM identity, or c.Runctl.owner)")
            except ValueError as exc:
                raise RunctlError(str(exc)) from None
            clients, bucket = self._aws()
            self._settings = {
                "team": self.name,
                "owner": owner,
                "bucket": bucket,
                "region": clients.region,
                "profile": self.control.backend("aws").profile or None,  # the agent's chain
                "beat_seconds": float(self.control.config.team_beat_seconds),
            }
        return dict(self._settings)

    # -- the pull ---------------------------------------------------------------
    def pull(self, wait: float = PULL_WAIT, force: bool = False) -> Any:
        """Start a pull unless one ran in the last PULL_EVERY seconds; wait for it at
        most `wait` seconds (a listing shows what is indexed, the pull goes on)."""
        if not self.name:
            return None
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
            if not running and (force or time.monotonic() - self._last >= PULL_EVERY):
                self._last = time.monotonic()
                self._thread = threading.Thread(
                    target=self._pull, name="runctl-team-pull", daemon=True
                )
                self._thread.start()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=max(0.0, wait))
        return self.last_report

    def _pull(self) -> None:
        from ..aws.team_pull import pull

        store = self.control.store
        try:
            clients, bucket = self._aws()
            self.last_report = pull(clients.s3, bucket, self.name, store.connection())
            self.last_error = None
        except Exception as exc:  # noqa: BLE001 - a listing never fails for a pull
            from ..aws.errors import explain, is_aws

            self.last_error = explain(exc) if is_aws(exc) else f"{type(exc).__name__}: {exc}"
            print(f"[runctl] team pull failed: {self.last_error}", file=sys.stderr, flush=True)
        finally:
            store.close()  # this thread's connection

    # -- references -------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """`owner/prefix`: this home's run when it is here, else the teammate's run
        made a local mirror (spec and event chunks fetched, then only new chunks)."""
        owner, _, prefix = ref.partition("/")
        store = self.control.store
        if not self.name:
            raise RunNotFound(f"no run {ref!r}: owner/RUN needs a team (c.Runctl.team)")
        if owner == self.control.config.owner:
            try:
                return store.resolve(prefix)
            except RunNotFound:
                pass
        from ..store.team import team_row

        found = team_row(store.connection(), owner, prefix)
        if not found:
            self.pull(force=True)
            found = team_row(store.connection(), owner, prefix)
        if not found:
            raise RunNotFound(
                f"no run {ref!r} in team {self.name!r}: see `runctl runs --owner {owner}`"
            )
        if len(found) > 1:
            shown = ", ".join(rid for rid, _ in found[:10])
            raise AmbiguousRun(f"run prefix {ref!r} is ambiguous: {shown}; give more of the id")
        run_id, events = found[0]
        self.fetch(owner, run_id, events)
        return run_id

    def fetch(self, owner: str, run_id: str, events: str) -> None:
        from ..aws.team_pull import mirror

        clients, bucket = self._aws()
        store = self.control.store
        spec = mirror(clients.s3, bucket, self.name, owner, run_id, events, store.run_dir(run_id))
        store.add_run(spec)
        store.refresh(run_id)
