"""env.json: what a run ran with (python, packages, git, OS, GPU, seeds).

Stdlib only, and fast (a run start must not wait on it): packages are read from
the names of `*.dist-info` folders, git answers in three short calls with a
timeout, nvidia-smi is asked only when it exists. Environment variables are
never recorded; credentials are stripped from git remote URLs.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FORMAT = 1
GIT_TIMEOUT = 2.0  # seconds per git call; a slow or hung git is skipped, not waited on
GPU_TIMEOUT = 5.0

_DIST_INFO = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-(?P<version>[0-9][^-]*?)\.dist-info$"
)
_EGG_INFO = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-(?P<version>[0-9][^-]*?)(-py[0-9.]+)?\.egg-info$"
)


def normalize_name(name: str) -> str:
    """PEP 503 name: `Scikit_Learn` -> `scikit-learn`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> dict[str, str]:
    """name -> version of every installed distribution (first on sys.path wins).

    The version is read from the `name-version.dist-info` folder name when it
    has one (no file read); otherwise from the distribution's metadata.
    """
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        path = getattr(dist, "_path", None)
        folder = getattr(path, "name", "")
        match = _DIST_INFO.match(folder) or _EGG_INFO.match(folder)
        if match:
            name, version = match["name"], match["version"]
        else:
            try:
                name, version = dist.metadata["Name"], dist.version
            except Exception:  # noqa: BLE001 - a broken install is skipped, not fatal
                continue
            if not name:
                continue
        packages.setdefault(normalize_name(name), version)
    return dict(sorted(packages.items()))


def strip_credentials(url: str) -> str:
    """A remote URL without user:password@ (or a token) and without a query string."""
    if "://" not in url:
        return url  # scp-like `git@host:org/repo.git`: the user is not a secret
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable remote url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = host
    if parts.scheme in ("ssh", "git+ssh") and parts.username and not parts.password:
        netloc = f"{parts.username}@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _git(args: list[str], cwd: Path, deadline: float) -> str | None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        out = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=min(GIT_TIMEOUT, remaining),
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_info(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """commit, branch, dirty flag and remote of the repo holding `workdir`; None outside one."""
    cwd = Path(workdir)
    if shutil.which("git") is None or not cwd.is_dir():
        return None
    deadline = time.monotonic() + 2 * GIT_TIMEOUT
    head = _git(["rev-parse", "--show-toplevel", "HEAD"], cwd, deadline)
    if head is None:
        # Not a repo, or a repo with no commit yet.
        top = _git(["rev-parse", "--show-toplevel"], cwd, deadline)
        if top is None:
            return None
        lines: list[str | None] = [top.strip(), None]
    else:
        lines = [*head.split()]
    info: dict[str, Any] = {"root": lines[0], "commit": lines[1] if len(lines) > 1 else None}
    status = _git(["status", "--porcelain=v1", "--branch", "--untracked-files=no"], cwd, deadline)
    info["branch"] = None
    info["dirty"] = None
    info["changed"] = []
    if status is not None:
        rows = status.splitlines()
        if rows and rows[0].startswith("## "):
            branch = rows.pop(0)[3:].split("...")[0]
            info["branch"] = None if branch.startswith("HEAD (no branch)") else branch
        info["dirty"] = bool(rows)
        info["changed"] = [row[3:] for row in rows[:50]]
    remote = _git(["remote", "get-url", "origin"], cwd, deadline)
    info["remote"] = strip_credentials(remote.strip()) if remote else None
    return info


def gpus() -> list[dict[str, str]]:
    """[{"name", "memory"}] from nvidia-smi; [] without an NVIDIA GPU or driver."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=GPU_TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    found = []
    for line in out.stdout.splitlines():
        name, _, memory = line.partition(",")
        if name.strip():
            found.append({"name": name.strip(), "memory": memory.strip()})
    return found


def memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _python() -> dict[str, str]:
    return {
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
    }


def _os() -> dict[str, str]:
    return {
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "platform": platform.platform(),
    }


def _now() -> dict[str, Any]:
    now = time.time()
    iso = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(timespec="seconds")
    return {"t": now, "utc": iso}


def host_facts() -> dict[str, Any]:
    """The machine that runs the code (the agent adds this as env["host"])."""
    return {
        "hostname": socket.gethostname(),
        "python": _python(),
        "os": _os(),
        "gpus": gpus(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "time": _now(),
    }


def capture_environment(
    workdir: str | os.PathLike, params: dict, reuse: dict | None = None
) -> dict[str, Any]:
    """Everything env.json holds, captured where the run is launched. `reuse`: a
    capture of the same workdir moments ago (a sweep's trials): its machine, git and
    package facts are kept, the seeds and time are this run's."""
    seeds = {key: value for key, value in (params or {}).items() if "seed" in str(key).lower()}
    if reuse is not None and reuse.get("workdir") == str(workdir):
        return {**reuse, "seeds": seeds, "time": _now()}
    return {
        "format": FORMAT,
        "python": _python(),
        "os": _os(),
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": memory_bytes(),
        "gpus": gpus(),
        "git": git_info(workdir),
        "packages": installed_packages(),
        "seeds": seeds,
        "workdir": str(workdir),
        "time": _now(),
    }
