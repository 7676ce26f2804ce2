"""Where a run's agent executes. Backends are found by name through the
`runctl_jupyter.backends` entry point group (docs/architecture.md)."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from ..errors import RunctlError

BUILTIN = {
    "local": "runctl_jupyter.backends.local:LocalBackend",
    "aws": "runctl_jupyter.backends.aws:AWSBackend",
    "team": "runctl_jupyter.backends.team:TeamBackend",  # a teammate's run, mirrored
}


class Backend(Protocol):
    name: str

    def start(self, run_dir: Path, spec: dict, attempt: int) -> dict: ...
    def stop(
        self, run_dir: Path, spec: dict, force: bool = False, reason: str = "user"
    ) -> None: ...
    def pull(self, run_dir: Path, spec: dict) -> None: ...
    def is_alive(self, run_dir: Path, spec: dict) -> bool | None: ...


def backend_class(name: str) -> Any:
    """The backend class registered under `name` (entry points, then the built-ins)."""
    for ep in entry_points(group="runctl_jupyter.backends"):
        if ep.name == name:
            return ep.load()
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        import importlib

        return getattr(importlib.import_module(module), attr)
    known = ", ".join(sorted(BUILTIN))
    raise RunctlError(
        f"unknown backend {name!r}: use one of {known} (c.Runctl.backend or --backend)"
    )
