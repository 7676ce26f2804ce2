"""load_ext: `%load_ext runctl_jupyter` in a fresh process, seconds.

Each repetition starts a fresh interpreter, creates an IPython shell (untimed)
and times `%load_ext runctl_jupyter` alone. For reference, the same fresh-process
cost of making the peers available: `import mlflow` and `import wandb` (in the
peers' venv). Budget (issue 2): under 0.3 s.
"""

from __future__ import annotations

import subprocess
import sys

from .common import Ctx, NotLanded, Result, alternate, fresh_python_env, median

ABOUT = {
    "load_ext": (
        "seconds of `%load_ext runctl_jupyter` in a fresh interpreter with an IPython shell "
        "already created (the shell's own start is not counted); peers, for reference: "
        "`import mlflow` and `import wandb` in a fresh interpreter of the peers' venv."
    )
}

OURS = """
import time
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
t = time.perf_counter()
shell.run_line_magic("load_ext", "runctl_jupyter")
elapsed = time.perf_counter() - t
assert "runctl" in shell.magics_manager.magics["line"], "magic not registered"
print(elapsed)
"""

IMPORT = """
import time
t = time.perf_counter()
import {module}
print(time.perf_counter() - t)
"""


def _measure(python: str, code: str, env: dict[str, str]) -> float:
    proc = subprocess.run(
        [python, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return float(proc.stdout.strip().splitlines()[-1])


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        import runctl_jupyter.magics  # noqa: F401 - the feature exists
    except ImportError as exc:
        raise NotLanded(f"runctl_jupyter.magics: {exc}") from exc

    env = fresh_python_env()
    contenders = {"ours": lambda: _measure(sys.executable, OURS, env)}
    notes: list[str] = []
    peer = ctx.peer
    if peer is not None:
        python = str(peer.python)
        peer_env = fresh_python_env(
            {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "WANDB_MODE": "offline"}
        )
        for package in ("mlflow", "wandb"):
            if peer.has(package):

                def measure(package: str = package) -> float:
                    return _measure(python, IMPORT.format(module=package), peer_env)

                contenders[f"import_{package}"] = measure
    else:
        notes.append("peers not measured: no peers venv")
    if not ctx.quick:
        for fn in contenders.values():  # warm the page cache
            fn()
    samples = alternate(contenders, ctx.reps)
    meds = {k: median(v) for k, v in samples.items()}
    ours = meds.pop("ours")
    return {
        "load_ext": Result(
            unit="s",
            better="lower",
            ours=round(ours, 4),
            peers={k: round(v, 4) for k, v in meds.items()},
            detail={
                "reps": ctx.reps,
                "samples": {k: [round(x, 4) for x in v] for k, v in samples.items()},
            },
            notes=notes,
        )
    }
