"""The process that runs the user's code: `python -m runctl_jupyter.agent.runner RUN_DIR`.

The agent starts it with RUNCTL_RUN_DIR/RUNCTL_ATTEMPT set. It sets up the
`runctl` object, then runs the cell (params and shipped notebook objects as
globals), the script (params in `runctl.params` and RUNCTL_PARAMS_FILE) or the
notebook (papermill). An exception is reported to the agent as
`error-<attempt>.json` with runctl's own frames removed. Stdlib only, except
what the code itself needs (cloudpickle to load shipped objects, papermill for
notebooks).
"""

from __future__ import annotations

import builtins
import itertools
import json
import os
import pickle
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

from ..runtime import RunStopped, runctl

EXIT_STOPPED = 143  # what a process killed by SIGTERM reports as 128 + 15


def _user_frames_only(exc: BaseException) -> str:
    """The traceback as the user would see it running the code themselves."""
    te = traceback.TracebackException.from_exception(exc)
    here = os.path.dirname(os.path.abspath(__file__))
    stack = te.stack
    while stack and (
        os.path.dirname(os.path.abspath(stack[0].filename)) == here
        or stack[0].filename.endswith(("runpy.py", "<frozen runpy>"))
    ):
        stack = type(stack).from_list(list(stack)[1:])
    te.stack = stack
    return "".join(te.format())


def _held_back_hint(exc: BaseException, spec: dict) -> str | None:
    """A NameError for a notebook variable runctl held back as a likely secret
    (runs/secrets.py) says how to send it after all."""
    name = getattr(exc, "name", None)
    if isinstance(exc, NameError) and name in (spec.get("options") or {}).get("held_back", ()):
        return f"runctl held back {name!r} as a likely secret: add --ship {name} to send it"
    return None


def _run_cell(run_dir: Path, spec: dict) -> None:
    code_path = run_dir / spec.get("entry", "code.py")
    namespace: dict = {"__name__": "__main__", "__builtins__": builtins}
    objects_path = run_dir / "objects.pkl"
    if objects_path.exists():
        with open(objects_path, "rb") as f:
            namespace.update(pickle.load(f))
    namespace.update(runctl.params)
    namespace["runctl"] = runctl
    code = compile(code_path.read_text(), str(code_path), "exec")
    exec(code, namespace)


def _run_script(run_dir: Path, spec: dict) -> None:
    # The copy made at launch is what runs, so a rerun runs exactly the recorded code;
    # argv[0] and the import path are the original script's, as `python script.py` has them.
    script = spec.get("script_path") or str(run_dir / "code.py")
    sys.argv = [script, *spec.get("args", [])]
    sys.path.insert(0, str(Path(script).parent))
    code_path = run_dir / spec.get("entry", "code.py")
    # `runctl` is a global here as in a cell; `from runctl_jupyter import runctl` also works
    # and keeps the script runnable without runctl (the object then only prints).
    namespace = {
        "__name__": "__main__",
        "__file__": script,
        "__builtins__": builtins,
        "runctl": runctl,
    }
    exec(compile(code_path.read_text(), script, "exec"), namespace)


def _run_notebook(run_dir: Path, spec: dict) -> None:
    import papermill  # the one non-stdlib import: only for whole notebooks

    source = run_dir / spec.get("entry", "input.ipynb")
    kernelspec = json.loads(source.read_text()).get("metadata", {}).get("kernelspec") or {}
    if spec.get("notebook_path"):  # what Jupyter tells its kernels: this notebook's path
        os.environ.setdefault("JPY_SESSION_NAME", spec["notebook_path"])
    papermill.execute_notebook(
        str(source),
        str(run_dir / "output.ipynb"),
        parameters=runctl.params,
        cwd=spec.get("workdir") or None,
        kernel_name=kernelspec.get("name") or "python3",
        language=kernelspec.get("language") or "python",
        progress_bar=False,
        log_output=True,
        stdout_file=sys.stdout,
        stderr_file=sys.stderr,
    )


def _smoke_steps(steps: int | None) -> dict:
    """`dev --smoke-steps N` (runs/validate.py): after the Nth `runctl.log` the run stops
    as a Stop stops it (`should_stop` turns True; code that never checks it is
    interrupted), and the runner counts that as success."""
    smoke = {"done": False}
    if not steps:
        return smoke
    log, logged = runctl.log, itertools.count(1)

    def counted(*args: Any, **kwargs: Any) -> None:
        log(*args, **kwargs)
        if next(logged) == int(steps):
            smoke["done"] = True
            runctl._handle_stop_signal(signal.SIGTERM, None)

    setattr(runctl, "log", counted)  # noqa: B010 - this process's object only: the code calls it as usual
    return smoke


RUNNERS = {"cell": _run_cell, "script": _run_script, "notebook": _run_notebook}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    run_dir = Path(argv[0]).resolve()
    spec = json.loads((run_dir / "spec.json").read_text())
    workdir = spec.get("workdir")
    if workdir and os.path.isdir(workdir):
        os.chdir(workdir)
        sys.path.insert(0, workdir)  # local modules import as they do in the notebook
    runctl.install_signal_handlers()
    smoke = _smoke_steps((spec.get("options") or {}).get("smoke_steps"))
    try:
        if (spec.get("options") or {}).get("debugger"):
            from .debugger import wait_for_debugger  # imports debugpy: only for --debug

            wait_for_debugger(runctl, spec, run_dir)
        RUNNERS[spec.get("kind", "cell")](run_dir, spec)
    except RunStopped:
        runctl.flush()
        return 0 if smoke["done"] else EXIT_STOPPED  # a smoke run's N steps: a success
    except SystemExit as exc:
        runctl.flush()
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except BaseException as exc:  # noqa: BLE001 - every failure is reported, then the exit code says it failed
        text = _user_frames_only(exc)
        message = str(exc)
        hint = _held_back_hint(exc, spec)
        if hint:
            text, message = f"{text}{hint}\n", f"{message} ({hint})"
        sys.stderr.write(text)
        sys.stderr.flush()
        error = {"type": type(exc).__name__, "message": message, "traceback": text}
        attempt = os.environ.get("RUNCTL_ATTEMPT", "1")
        rank = f"-rank{runctl.rank}" if runctl.world_size > 1 else ""  # ranks never race
        (run_dir / f"error-{attempt}{rank}.json").write_text(json.dumps(error))
        runctl.flush()
        return 1
    runctl.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
