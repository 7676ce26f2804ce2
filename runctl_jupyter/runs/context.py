"""Context memory: what a notebook (in the shell: a working folder) launched with last
(backend, instance type, region, project, experiment, and the instance it kept), so
that a bare `%%runctl train` after one with options does what the user meant.

One small JSON file per notebook under `$RUNCTL_HOME/context/`. Only what the user
typed is remembered, never a configured default; an option typed now always wins,
and `--fresh` ignores the memory for one launch. The line saying what was reused is
printed when it differs from the last one said, so a run of bare cells says it once.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REMEMBERED = ("backend", "instance_type", "region", "project", "experiment")
_CLOUD = ("instance_type", "region", "instance")
_FLAGS = {
    "backend": "--backend",
    "instance_type": "--instance-type",
    "region": "--region",
    "project": "--project",
    "experiment": "--experiment",
    "instance": "--instance",
}


def context_key(user_ns: dict | None = None) -> str:
    """The notebook's path (Jupyter sets JPY_SESSION_NAME in its kernels; VS Code sets
    `__vsc_ipynb_file__`), else the working folder (the shell, a plain IPython)."""
    path = (user_ns or {}).get("__vsc_ipynb_file__") or os.environ.get("JPY_SESSION_NAME")
    return os.path.abspath(path) if path else os.path.abspath(os.getcwd())


class Context:
    """The memory of one notebook or folder."""

    def __init__(self, home: Path, key: str):
        self.key = key
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        self.path = Path(home) / "context" / f"{digest}.json"

    def read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) and data.get("key") == self.key else {}

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**data, "key": self.key}, indent=1))
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    # -- before a launch -----------------------------------------------------------
    def fill(
        self,
        kwargs: dict[str, Any],
        kept_instance: Callable[[str], tuple[str | None, str]],
        one_instance: bool,
    ) -> str | None:
        """Fill what `kwargs` leaves out from the memory; the line to say, if any.

        `kept_instance(run_id)` -> (instance id to reuse or None, why not): the instance
        the last run kept, if it still runs. `one_instance` is False for a sweep (its
        trials run side by side, never all on one instance)."""
        memory = self.read()
        options = kwargs.setdefault("options", {})
        given = {k: kwargs.get(k) for k in ("backend", "project", "experiment")}
        given.update({k: options.get(k) for k in _CLOUD})
        backend = given["backend"] or memory.get("backend")
        reused: dict[str, str] = {}
        for field in REMEMBERED:
            value = memory.get(field)
            if value is None or given.get(field) is not None:
                continue
            if field in _CLOUD and (backend == "local" or given["instance"]):
                continue
            reused[field] = value
        notes = []
        instance_given = given["instance"] or given["instance_type"]
        if one_instance and backend != "local" and not instance_given and memory.get("last_run"):
            instance, why_not = kept_instance(memory["last_run"])
            if instance:
                reused["instance"] = instance
                reused.pop("instance_type", None)  # --instance runs on its own type
            elif why_not:
                notes.append(why_not)
        for field, value in reused.items():
            (kwargs if field in ("backend", "project", "experiment") else options)[field] = value
        line = self._line(reused, notes)
        if line is None or line == memory.get("said"):
            return None
        self._write({**memory, "said": line})
        return line

    def _line(self, reused: dict[str, str], notes: list[str]) -> str | None:
        if not reused and not notes:
            return None
        where = "notebook" if self.key.endswith(".ipynb") else "folder"
        words = " ".join(f"{_FLAGS[k]} {v}" for k, v in reused.items())
        text = f"runctl: as before in this {where}: {words}" if words else "runctl:"
        text += "".join(f"; {note}" for note in notes)
        show = "%runctl context" if where == "notebook" else "runctl context"
        return text + f" (--fresh ignores it; `{show}` shows it)"

    def first_time(self, rule: str) -> bool:
        """True once per notebook for a suggestion rule (and remembers it was shown)."""
        memory = self.read()
        shown = list(memory.get("suggested") or [])
        if rule in shown:
            return False
        self._write({**memory, "suggested": [*shown, rule]})
        return True

    # -- after a launch ------------------------------------------------------------
    def remember(self, kwargs: dict[str, Any], run_id: str | None) -> None:
        """Keep what was typed (or reused) for this launch, and the run it made."""
        memory = self.read()
        options = kwargs.get("options") or {}
        for field in REMEMBERED:
            value = kwargs.get(field) if field in kwargs else options.get(field)
            if value is not None:
                memory[field] = value
        if (kwargs.get("backend") or memory.get("backend")) == "local":
            for field in _CLOUD:
                memory.pop(field, None)
        if run_id is not None:
            memory["last_run"] = run_id
        memory["updated"] = time.time()
        self._write(memory)


def kept_target(store: Any, row: dict[str, Any]) -> tuple[str, str | None] | None:
    """(instance id, region) of the instance a run kept or reused, or None."""
    from ..backends.aws_target import read_target
    from ..store.folders import read_spec

    try:
        run_dir = store.run_dir(row["id"])
        target = read_target(run_dir, read_spec(run_dir))
    except (OSError, ValueError):
        return None
    instance = target.get("instance_id")
    if not instance or not (target.get("keep") or target.get("reused")):
        return None
    return instance, target.get("region")


def idle_kept_instances(
    store: Any,
    state_of: Callable[[str, str | None], str | None],
    now: float | None = None,
    idle_hours: float = 1.0,
    look_at: int = 50,
) -> list[tuple[str, float]]:
    """Kept (or reused) instances of the newest AWS runs whose last run ended over
    `idle_hours` ago and that still run: [(instance id, hours idle)]."""
    from ..events import FINAL_STATUSES

    last_end: dict[str, tuple[float, str | None]] = {}
    busy: set[str] = set()
    for row in store.list_runs(limit=look_at):
        kept = kept_target(store, row) if row.get("backend") == "aws" else None
        if kept is None:
            continue
        instance, region = kept
        if row["status"] not in FINAL_STATUSES:
            busy.add(instance)
        elif (row.get("ended") or 0) > last_end.get(instance, (0.0, None))[0]:
            last_end[instance] = (row.get("ended") or 0.0, region)
    now = time.time() if now is None else now
    return [
        (instance, (now - ended) / 3600)
        for instance, (ended, region) in last_end.items()
        if instance not in busy
        and now - ended > idle_hours * 3600
        and state_of(instance, region) == "running"
    ]
