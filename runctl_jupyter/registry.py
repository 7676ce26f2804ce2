"""The model registry: versions 1, 2, 3 ... per name, each pointing at a run's
artifact with its lineage, and aliases (`production`, `staging`, any name) with
their history, so a rollback is exact. Files under `$RUNCTL_HOME/models/NAME/`:

    versions/000003.json   one version: run, attempt, artifact, digest, metrics, ...
    aliases.jsonl          every alias move, appended: {alias, version, previous, t}

Standard library only: `runctl.load_model(...)` reads it from inside a run too.
A version is created once (O_EXCL) and never rewritten; an artifact is verified
against its digest before it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import time
from pathlib import Path
from typing import Any

from .errors import RunctlError
from .events import Sha256Writer

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RegistryError(RunctlError):
    """A registry request that cannot be met; its message says what to do."""


def check_name(name: str, what: str = "model name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise RegistryError(
            f"{what} {name!r}: use letters, digits, '.', '_' or '-' (no '/' or spaces), "
            "e.g. digits-mlp"
        )
    return name


def digest_of(path: Path) -> tuple[str, int]:
    """sha256 over a file, or over a folder's files (relative names and contents, in
    order); and the total size in bytes."""
    h = hashlib.sha256()
    size = 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                size += len(block)
    return h.hexdigest(), size


def write_artifact(folder: Path, name: str, obj: Any) -> tuple[Path, int, str | None]:
    """A checkpoint's or a model's file, written atomically: the path of a file or
    folder is copied (as `name/<its name>`), any other object pickled (`name.pkl`).
    Returns where it went, its size in bytes and, for a pickle, the sha256 of its
    bytes (computed as they are written)."""
    sha256 = None
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, (str, os.PathLike)) and Path(obj).exists():
        source = Path(obj)
        target = folder / name
        tmp = folder / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if source.is_dir():
            shutil.copytree(source, tmp / source.name)
        else:
            shutil.copy2(source, tmp / source.name)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    else:
        target = folder / f"{name}.pkl"
        tmp = folder / f".{name}.pkl.tmp"
        with open(tmp, "wb") as f:
            hashing = Sha256Writer(f)
            pickle.dump(obj, hashing, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)  # a crash mid-write never leaves a torn file
        size = target.stat().st_size
        sha256 = hashing.hexdigest()
    return target, size, sha256


class Registry:
    def __init__(self, home: Path | str):
        self.root = Path(home) / "models"

    # -- reading ------------------------------------------------------------------
    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "versions").is_dir())

    def versions(self, name: str) -> list[dict[str, Any]]:
        folder = self.root / check_name(name) / "versions"
        out = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue  # a version being written
        return out

    def alias_history(self, name: str) -> list[dict[str, Any]]:
        try:
            lines = (self.root / check_name(name) / "aliases.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in lines if line.strip()]

    def aliases(self, name: str) -> dict[str, int]:
        """{alias: version} as they stand now."""
        now: dict[str, int] = {}
        for move in self.alias_history(name):
            if move.get("version") is None:
                now.pop(move["alias"], None)
            else:
                now[move["alias"]] = int(move["version"])
        return now

    def get(self, name: str, version: int | None = None, alias: str | None = None) -> dict:
        """One version: by number, by alias, or the newest."""
        found = self.versions(name)
        if not found:
            known = ", ".join(self.names()) or "none yet"
            raise RegistryError(f"no model {name!r} (registered models: {known})")
        if alias is not None:
            at = self.aliases(name).get(alias)
            if at is None:
                have = ", ".join(sorted(self.aliases(name))) or "none"
                raise RegistryError(
                    f"model {name!r} has no alias {alias!r} (its aliases: {have}); "
                    f"set one with `runctl models promote {name} VERSION --alias {alias}`"
                )
            version = at
        if version is None:
            return found[-1]
        for entry in found:
            if entry["version"] == int(version):
                return entry
        raise RegistryError(
            f"model {name!r} has no version {version} (it has 1 to {found[-1]['version']})"
        )

    # -- writing ------------------------------------------------------------------
    def register(self, name: str, artifact: str, digest: str, size: int, **lineage: Any) -> dict:
        """A new version (the next number; two registrations never get the same one)."""
        folder = self.root / check_name(name) / "versions"
        folder.mkdir(parents=True, exist_ok=True)
        number = len(list(folder.glob("*.json"))) + 1
        entry = {"name": name, "artifact": artifact, "digest": digest, "bytes": size}
        entry.update(lineage, created=time.time())
        while True:
            path = folder / f"{number:06d}.json"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1
                continue
            entry["version"] = number
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f, indent=1, default=str)
            return entry

    def promote(self, name: str, version: int, alias: str) -> dict:
        self.get(name, version)  # it must exist
        check_name(alias, "alias")
        previous = self.aliases(name).get(alias)
        move = {"alias": alias, "version": int(version), "previous": previous, "t": time.time()}
        self._append(name, move)
        return move

    def rollback(self, name: str, alias: str) -> dict:
        """The alias back to the version it pointed at before its latest move."""
        history = [m for m in self.alias_history(name) if m["alias"] == alias]
        if not history:
            raise RegistryError(f"model {name!r} has no alias {alias!r} to roll back")
        previous = history[-1].get("previous")
        if previous is None:
            raise RegistryError(
                f"{name!r} {alias!r} has pointed only at version {history[-1]['version']}: "
                "there is nothing to roll back to"
            )
        move = {
            "alias": alias,
            "version": int(previous),
            "previous": history[-1]["version"],
            "t": time.time(),
            "rollback": True,
        }
        self._append(name, move)
        return move

    def _append(self, name: str, move: dict) -> None:
        path = self.root / name / "aliases.jsonl"
        with open(path, "a") as f:
            f.write(json.dumps(move) + "\n")

    # -- loading ------------------------------------------------------------------
    def load(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """The artifact, its digest checked first: a pickled object unpickled, a file
        or folder returned as its Path."""
        entry = self.get(name, version, alias)
        path = Path(entry["artifact"])
        if not path.exists():
            raise RegistryError(
                f"model {name!r} version {entry['version']}: its artifact {path} is gone "
                f"(run {entry.get('run_id')}'s folder was deleted?)"
            )
        digest, _ = digest_of(path)
        if digest != entry["digest"]:
            raise RegistryError(
                f"model {name!r} version {entry['version']}: {path} changed since it was "
                f"registered (sha256 {digest[:12]}..., registered {entry['digest'][:12]}...): "
                "not loaded; register the new file as a new version"
            )
        if path.is_file() and path.suffix == ".pkl":
            with open(path, "rb") as f:
                return pickle.load(f)
        return path


class RunModels:
    """`runctl.register_model` / `runctl.load_model`, mixed into the in-run object
    (runtime.py), whose run folder, rank, step and event writer they use."""

    run_dir: Path | None
    rank: int
    _step: int

    def _write(self, record: dict[str, Any]) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        raise NotImplementedError

    def register_model(self, obj: Any, name: str, **metadata: Any) -> Path | None:
        """Save a model (a picklable object, or the path of a file or folder) as an
        artifact of this run, with its digest; the registry numbers it (`runctl models`)
        once the run is read. Only rank 0 writes. Returns where it went."""
        check_name(name)
        if self.run_dir is None:
            print(f"model {name} (not registered: no runctl run)")
            return None
        if self.rank != 0:
            return None
        folder = self.run_dir / "models" / name
        count = len(list(folder.iterdir())) if folder.is_dir() else 0
        target, _, _ = write_artifact(folder, f"{count + 1:03d}", obj)
        digest, size = digest_of(target)
        rel = target.relative_to(self.run_dir).as_posix()
        record = {"t": time.time(), "type": "model", "name": name, "path": rel}
        record.update(digest=digest, bytes=size, step=max(self._step, 0), metadata=metadata)
        self._write(record)
        self.flush()
        return target

    def load_model(self, name: str, version: int | None = None, alias: str | None = None) -> Any:
        """A registered model (the newest version, or `version`, or `alias`), its digest
        checked: a pickled object, or the Path of a registered file or folder."""
        if self.run_dir is not None:
            home = self.run_dir.parent.parent  # $RUNCTL_HOME/runs/<run id>
        else:
            home = Path(os.environ.get("RUNCTL_HOME") or Path.home() / ".runctl")
        return Registry(home).load(name, version, alias)
