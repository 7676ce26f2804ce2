"""One S3 bundle per attempt: the run folder's inputs, the agent, and what to install.

    bundle.tar.gz
      run/        spec.json (sync settings added), code.py, params.json, objects.pkl,
                  env.json, input.ipynb, events.jsonl (a resume goes on from it)
      pkg/runctl_jupyter/   the stdlib-only modules the agent and runner need
      work/                 the run's working folder: local modules the code imports from
                            the notebook's folder, and --sync folders (.gitignore respected)
      requirements.txt      the packages the code imports, pinned to the notebook's versions

Nothing is left to a flag the user must remember: modules the code imports from
the notebook's folder travel as files (and those the shipped objects use travel
inside objects.pkl, cloudpickle by value); `--pip auto` pins every third-party
package the code, the script or the shipped objects import, and refuses, before
anything is launched, an import that resolves to nothing here.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.metadata
import importlib.util
import io
import json
import os
import pickletools
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

from ..errors import RunctlError

# The package's stdlib-only modules: the agent, the in-run client and their helpers
# (tests/test_layers.py checks this is every module they import).
PACKAGE = Path(__file__).resolve().parents[1]
AGENT_MODULES = (
    "__init__.py",
    "_version.py",
    "agent/__init__.py",
    "agent/__main__.py",
    "agent/supervise.py",
    "agent/spawn.py",
    "agent/container.py",  # --image: the child in a docker/podman container
    "agent/ecr.py",  # a Dockerfile's image cached in ECR (c.AWSBackend.ecr_repository)
    "agent/output.py",
    "agent/early_stop.py",
    "agent/stop.py",
    "agent/end.py",
    "agent/runner.py",
    "agent/debugger.py",  # debugpy in a --debug run's process (imports debugpy only then)
    "agent/torchrun.py",  # multi-GPU runs under torchrun (the agent imports it when asked)
    "agent/clients.py",  # boto3 clients for S3 and EC2 on the instance
    "agent/s3.py",
    "agent/service.py",
    "agent/restore.py",  # the run folder made whole from S3 before an attempt
    "agent/volume.py",
    "agent/lease.py",  # renewing and giving back the run's leases (docs/teams.md)
    "agent/data.py",
    "agent/checksums.py",  # --validate-data: sizes and MD5/multipart ETags
    "agent/prewarm.py",  # --prewarm: a restored volume read once before training
    "agent/boot.py",  # which attempt a replacement instance runs
    "agent/fired.py",  # a run an AWS schedule fired: its new id and why
    "agent/models_mirror.py",  # the registry's published models, for load_model
    "agent/cost.py",
    "agent/cluster.py",  # the end of a multi-node run: node 0 terminates every node
    "agent/spot.py",
    "agent/restart.py",  # a dev run's restarts (`runctl dev`)
    "agent/watch.py",
    "agent/idle.py",  # the idle watcher of a --keep instance (docs/cost.md)
    "agent/team.py",  # the run's summary published to its team (docs/teams.md)
    "distributed.py",
    "environment.py",
    "errors.py",
    "events.py",
    "paths.py",  # S3 keys and bundle members as paths inside their folder
    "procs.py",  # the agent's identity in agent.json (pid, boot id, start time)
    "team_keys.py",  # the team store's key layout
    "record/__init__.py",
    "record/cells.py",
    "record/facts.py",
    "record/figure.py",
    "record/notebook.py",
    "record/read.py",
    "runtime.py",
    "registry.py",
)
RUN_FILES = (
    "spec.json",
    "code.py",
    "params.json",
    "objects.pkl",
    "env.json",
    "input.ipynb",
    "events.jsonl",
)
ALWAYS_IGNORED = (
    ".git",
    "__pycache__",
    ".ipynb_checkpoints",
    ".venv",
    "venv",
    "node_modules",
    ".runctl",
)
# The agent's own needs on the instance (boto3 for the S3 sync, cloudpickle for shipped objects).
AGENT_REQUIREMENTS = ("boto3", "cloudpickle")


class BundleError(RunctlError):
    pass


def top_imports(code: str) -> set[str]:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _pickle_modules(data: bytes) -> set[str]:
    """Top-level modules a pickle refers to (what unpickling it will import)."""
    names: set[str] = set()
    strings: list[str] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                names.add(arg.split(" ", 1)[0].split(".")[0])
            elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8") and isinstance(arg, str):  # fmt: skip
                strings.append(arg)
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.add(strings[-2].split(".")[0])
    except Exception:  # noqa: BLE001 - a pickle we cannot walk just pins nothing
        pass
    return names


def imported_modules(run_dir: Path, spec: dict) -> set[str]:
    names: set[str] = set()
    entry = run_dir / spec.get("entry", "code.py")
    if entry.suffix == ".py" and entry.exists():
        names |= top_imports(entry.read_text(errors="replace"))
    elif entry.suffix == ".ipynb" and entry.exists():
        nb = json.loads(entry.read_text())
        for cell in nb.get("cells", []):
            if cell.get("cell_type") == "code":
                src = cell.get("source", "")
                src = "".join(src) if isinstance(src, list) else src
                lines = [ln for ln in src.splitlines() if not ln.lstrip().startswith(("%", "!"))]
                names |= top_imports("\n".join(lines))
    objects = run_dir / "objects.pkl"
    if objects.exists():
        names |= _pickle_modules(objects.read_bytes())
    return names


def pinned_requirements(
    modules: Iterable[str], packages: dict[str, str] | None = None
) -> list[str]:
    """`name==version` for every installed distribution providing one of `modules`.

    Versions come from `packages` (env.json's record of the notebook) when known,
    else from this Python. Stdlib modules, runctl itself and modules without a
    distribution (local files) are skipped.
    """
    return _resolve(modules, packages)[0]


_DISTRIBUTIONS: tuple[tuple, dict] | None = None  # (sys.path folders' mtimes, the mapping)


def _path_stamp() -> tuple[tuple[str, int | None], ...]:
    stamps: list[tuple[str, int | None]] = []
    for folder in sys.path:
        try:
            stamps.append((folder, os.stat(folder or ".").st_mtime_ns))
        except OSError:
            stamps.append((folder, None))
    return tuple(stamps)


def packages_distributions() -> dict:
    """importlib.metadata.packages_distributions(), read again only when a folder of
    sys.path changed (an install adds a dist-info folder): it reads every installed
    distribution's file list, seconds that each launch (and each cell) would pay."""
    global _DISTRIBUTIONS
    stamp = _path_stamp()
    if _DISTRIBUTIONS is None or _DISTRIBUTIONS[0] != stamp:
        _DISTRIBUTIONS = (stamp, dict(importlib.metadata.packages_distributions()))
    return _DISTRIBUTIONS[1]


def _resolve(
    modules: Iterable[str], packages: dict[str, str] | None
) -> tuple[list[str], list[str]]:
    """(pins, modules that no installed distribution provides)."""
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    mapping = packages_distributions()
    known = {k.lower().replace("_", "-"): v for k, v in (packages or {}).items()}
    pins: dict[str, str] = {}
    unresolved: list[str] = []
    for module in sorted(set(modules)):
        if module in stdlib or module.startswith("runctl_jupyter") or module.startswith("_"):
            continue
        if module not in mapping:
            unresolved.append(module)
        for dist in mapping.get(module, []):
            key = dist.lower().replace("_", "-")
            if key in ("runctl-jupyter",):
                continue
            version = known.get(key)
            if version is None:
                try:
                    version = importlib.metadata.version(dist)
                except importlib.metadata.PackageNotFoundError:
                    continue
            pins[key] = version
    return [f"{name}=={version}" for name, version in sorted(pins.items())], unresolved


def local_modules(modules: Iterable[str], workdir: str | os.PathLike | None) -> dict[str, Path]:
    """Imported top-level modules that are files or packages in the notebook's folder."""
    found: dict[str, Path] = {}
    if not workdir or not Path(workdir).is_dir():
        return found
    root = Path(workdir)
    for name in sorted(set(modules)):
        if (root / f"{name}.py").is_file():
            found[name] = root / f"{name}.py"
        elif (root / name / "__init__.py").is_file():
            found[name] = root / name
    return found


def missing_imports(modules: Iterable[str], workdir: str | os.PathLike | None) -> list[str]:
    """Of `modules`, those neither a file in `workdir` nor importable in this Python."""
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    local = local_modules(modules, workdir)
    return sorted(
        m
        for m in set(modules)
        if m not in stdlib and m not in local and importlib.util.find_spec(m) is None
    )


def module_files(run_dir: Path, spec: dict) -> list[tuple[Path, str]]:
    """The modules the code imports from its folder, as files: (path, name under work/)."""
    files: list[tuple[Path, str]] = []
    for name, path in local_modules(imported_modules(run_dir, spec), spec.get("workdir")).items():
        if path.is_file():
            files.append((path, path.name))
        else:
            files += [(file, f"{name}/{rel}") for file, rel in sync_files(path)]
    return files


def requirements_for(run_dir: Path, spec: dict, pip: str | list[str] | None) -> list[str]:
    """What the instance installs: `auto` (pins of what the code imports), a file, a list, or none.
    With `--image` nothing: the image brings the code's packages (the agent's own are apart)."""
    if (spec.get("options") or {}).get("image"):
        return []
    if pip in (None, "auto"):
        env = {}
        try:
            env = json.loads((run_dir / "env.json").read_text())
        except (FileNotFoundError, ValueError):
            pass
        packages = env.get("packages") if isinstance(env.get("packages"), dict) else None
        modules = imported_modules(run_dir, spec)
        if spec.get("distributed") and importlib.util.find_spec("torch") is not None:
            modules.add("torch")  # torchrun comes with PyTorch, imported by the code or not
        if (spec.get("options") or {}).get("debugger") and importlib.util.find_spec("debugpy"):
            modules.add("debugpy")  # `train --debug`: debugpy in the run's process
        pins, unresolved = _resolve(modules, packages)
        missing = missing_imports(unresolved, spec.get("workdir"))
        if missing:
            names = ", ".join(missing)
            raise BundleError(
                f"the code imports {names}, which is neither installed here nor a file in "
                f"{spec.get('workdir')}: install it, or name the package with --pip PKG (or --pip none)"
            )
        return pins
    if pip == "none":
        return []
    if isinstance(pip, str):
        path = Path(pip).expanduser()
        if not path.exists():
            raise BundleError(f"requirements file {pip} not found; check --requirements")
        return [
            ln.strip()
            for ln in path.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")
        ]
    return [str(p) for p in pip]


def _gitignore_patterns(folder: Path) -> list[str]:
    path = folder / ".gitignore"
    if not path.exists():
        return []
    return [
        ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    """gitignore's common forms: `name`, `*.ext`, `dir/`, `/anchored`, `a/b`, `!negated`.

    Ignored folders are pruned while walking, so their files are never visited.
    """
    parts = rel.split("/")
    if any(p in ALWAYS_IGNORED for p in parts):
        return True
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        if pat.endswith("/"):
            if not is_dir:
                continue
            pat = pat.rstrip("/")
        anchored = "/" in pat
        pat = pat.lstrip("/")
        hit = fnmatch.fnmatch(rel, pat) if anchored else fnmatch.fnmatch(parts[-1], pat)
        if hit:
            ignored = not negate
    return ignored


def sync_files(folder: Path) -> list[tuple[Path, str]]:
    """Files of a `--sync` folder, .gitignore respected: (path, relative name)."""
    folder = folder.resolve()
    if not folder.is_dir():
        raise BundleError(f"--sync folder {folder} does not exist")
    patterns = _gitignore_patterns(folder)
    out: list[tuple[Path, str]] = []
    for root, dirs, files in os.walk(folder):
        rel_root = Path(root).relative_to(folder).as_posix()
        rel_root = "" if rel_root == "." else rel_root + "/"
        dirs[:] = sorted(d for d in dirs if not _ignored(rel_root + d, True, patterns))
        for name in sorted(files):
            rel = rel_root + name
            if not _ignored(rel, False, patterns):
                out.append((Path(root) / name, rel))
    return out


def build(
    run_dir: Path,
    spec: dict,
    sync_cfg: dict,
    pip: str | list[str] | None = "auto",
    sync_dirs: Iterable[str | os.PathLike] = (),
) -> tuple[bytes, list[str]]:
    """The bundle's bytes (tar.gz) and the requirements it carries."""
    requirements = requirements_for(run_dir, spec, pip)
    buf = io.BytesIO()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o600
        info.mtime = int(spec.get("created") or 0)
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        remote_spec = dict(spec)
        remote_spec["sync"] = sync_cfg
        add_bytes(tar, "run/spec.json", json.dumps(remote_spec, indent=1, default=str).encode())
        for name in RUN_FILES:
            if name == "spec.json":
                continue
            path = run_dir / name
            if path.exists():
                add_bytes(tar, f"run/{name}", path.read_bytes())
        for name in AGENT_MODULES:
            add_bytes(tar, f"pkg/runctl_jupyter/{name}", (PACKAGE / name).read_bytes())
        image_dir = run_dir / "image"  # --image's Dockerfile and build context (runs/image.py)
        for path in sorted(image_dir.rglob("*")) if image_dir.is_dir() else ():
            if path.is_file():
                add_bytes(tar, f"run/image/{path.relative_to(image_dir).as_posix()}", path.read_bytes())
        workdir = spec.get("workdir")
        for path, rel in module_files(run_dir, spec):
            add_bytes(tar, f"work/{rel}", path.read_bytes())
        for folder in sync_dirs:
            folder = Path(folder).expanduser()
            same = workdir and folder.resolve() == Path(workdir).resolve()
            base = "work/" if same else f"work/{folder.resolve().name}/"
            for path, rel in sync_files(folder):
                add_bytes(tar, base + rel, path.read_bytes())
        add_bytes(tar, "requirements.txt", "".join(r + "\n" for r in requirements).encode())
    return buf.getvalue(), requirements


def bundle_key(prefix: str, run_id: str, attempt: int) -> str:
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}runs/{run_id}/bundle/attempt-{attempt}.tar.gz"
