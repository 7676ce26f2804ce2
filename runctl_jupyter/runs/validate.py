"""`dev --validate-before-run` and `--smoke-steps N`: what is checked before anything
bills (docs/dev.md).

- syntax: the cell or script, and every module it imports from its folder, compiled;
- imports: every top-level import resolves where the run goes. Locally and on AWS
  with `--pip auto` (the instance installs the pins of what resolves here) that is
  this Python or a file in the code's folder; with `--pip PKG`/`--requirements`
  the instance gets only those, so an import no named package provides is said
  (not refused: a package may provide a module under another name);
- smoke: a local run of the same code (tagged `smoke`, with `--smoke-param` values
  over the params: the data slice) whose `runctl.should_stop` turns True after its
  Nth `runctl.log` (runtime.py); it must end well for the dev run to start.
"""

from __future__ import annotations

import importlib.metadata
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from .start import CLOUD_ONLY

_DISTRIBUTED = ("gpus", "nproc_per_node", "nodes", "efa")


def syntax_error(code: str, name: str) -> str | None:
    """`name line N: SyntaxError: ...`, or None when `code` compiles."""
    try:
        compile(code, name, "exec", dont_inherit=True)
    except SyntaxError as exc:
        return f"{name} line {exc.lineno}: {type(exc).__name__}: {exc.msg}"
    return None


def validate_before_run(session: Any, kw: dict, check: bool, smoke_steps: int | None,
                        smoke_params: dict) -> None:  # fmt: skip
    if check:
        check_code(kw)
    if smoke_steps:
        smoke(session, kw, smoke_steps, smoke_params)


def check_code(kw: dict) -> None:
    """Syntax and imports (see the module's docstring); a problem is one RunctlError."""
    from ..aws.bundle import local_modules, missing_imports, sync_files, top_imports

    script = kw.get("script")
    if script is not None:
        path = Path(script).expanduser().resolve()
        code, workdir, name = path.read_text(), path.parent, path.name
    else:
        from .cell_syntax import check_syntax

        code, workdir, name = kw["code"], Path.cwd(), "the cell"
        check_syntax(code)
    imports = top_imports(code)
    sources = [(name, code)]
    for path in local_modules(imports, workdir).values():
        files = (
            [path] if path.is_file() else [f for f, rel in sync_files(path) if rel.endswith(".py")]
        )
        sources += [(f.name, f.read_text(errors="replace")) for f in files]
    for file_name, text in sources:
        problem = syntax_error(text, file_name)
        if problem:
            raise RunctlError(f"{problem}: fix it; nothing was started")
    missing = [m for m in missing_imports(imports, workdir) if not m.startswith("runctl_jupyter")]
    if missing:
        raise RunctlError(
            f"{name} imports {', '.join(missing)}, which resolves neither in this Python nor as a "
            f"file in {workdir}: install it (or fix the name); nothing was started"
        )
    _say_unchecked(imports, workdir, kw.get("options") or {})


def _say_unchecked(imports: set[str], workdir: Path, options: dict) -> None:
    """With --pip PKG or --requirements the instance installs only those: name the
    imports no named package provides (we cannot know every package's modules)."""
    named = options.get("pip") or []
    if options.get("requirements"):
        text = Path(options["requirements"]).expanduser().read_text()
        named = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not named:
        return
    from ..aws.bundle import local_modules

    wanted = {
        n.split("==")[0].split(">")[0].split("<")[0].strip().lower().replace("_", "-")
        for n in named
    }
    providers = importlib.metadata.packages_distributions()
    stdlib = set(getattr(sys, "stdlib_module_names", ())) | set(sys.builtin_module_names)
    local = local_modules(imports, workdir)
    unchecked = sorted(
        m
        for m in imports
        if m not in stdlib and m not in local and not m.startswith("runctl_jupyter")
        and not {d.lower().replace("_", "-") for d in providers.get(m, [])} & wanted
    )  # fmt: skip
    if unchecked:
        print(
            f"[runctl] validate: could not check {', '.join(unchecked)} against the packages "
            "you named (--pip/--requirements): none of them is known here to provide it",
            file=sys.stderr,
        )


def smoke(session: Any, kw: dict, steps: int, smoke_params: dict) -> None:
    """A local run of the first `steps` logged steps; RunctlError unless it ends well."""
    options = {
        k: v
        for k, v in (kw.get("options") or {}).items()
        if k not in CLOUD_ONLY and k not in _DISTRIBUTED
    }
    options["smoke_steps"] = steps
    params = {**(kw.get("params") or {}), **smoke_params}
    run = session.train(
        code=kw.get("code"), script=kw.get("script"), args=kw.get("args", ()), params=params,
        experiment=kw.get("experiment"), project=kw.get("project"),
        tags=(*kw.get("tags", ()), "smoke"), backend="local", metrics=kw.get("metrics", ()),
        ship_objects=kw.get("ship_objects", True), user_ns=kw.get("user_ns"),
        options=options, detach=True,
    )  # fmt: skip
    print(f"[runctl] smoke run {run.id}: {steps} step(s) here first", file=sys.stderr)
    try:
        row = _wait_quietly(session, run.id)
    except KeyboardInterrupt:
        session.backend_stop(run.id)
        raise
    if row["status"] != "succeeded":
        error = row.get("error") or {}
        detail = f"{error.get('type', row['status'])}: {error.get('message', '')}".rstrip(": ")
        raise RunctlError(
            f"smoke run {run.id} {row['status']} ({detail}); nothing was launched: fix it, "
            f"`%runctl logs {run.id}` has its output"
        )
    print(f"[runctl] smoke run {run.id}: ok", file=sys.stderr)


def _wait_quietly(session: Any, run_id: str) -> dict:
    from .control import ENDED

    while True:
        session.store.refresh(run_id)
        row = session.store.get(run_id)
        if row["status"] in ENDED:
            return row
        time.sleep(0.1)
