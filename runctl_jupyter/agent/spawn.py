"""The runner's process: how the agent starts the user's code.

The runner (`python -m runctl_jupyter.agent.runner RUN_DIR`, or one per rank under
torchrun) learns which run and attempt it is from its environment, and finds this
package on its PYTHONPATH. It leads its own process group, so a Stop's signal
reaches its data-loader workers too, and it gets SIGTERM when the agent dies, so
training never runs unseen.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

from . import container

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the agent dies, so training never runs unseen."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the heartbeat timeout still marks the run lost
        pass


def start_runner(spec: dict, run_dir: Path, attempt: int) -> subprocess.Popen:
    """Start the attempt's runner, its stdout and stderr piped to the agent."""
    package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding the package
    env = dict(os.environ)
    env.update(
        RUNCTL_RUN_DIR=str(run_dir),
        RUNCTL_RUN_ID=spec["run_id"],
        RUNCTL_ATTEMPT=str(attempt),
        PYTHONUNBUFFERED="1",
        RUNCTL_PARAMS_FILE=str(run_dir / "params.json"),
        PYTHONPATH=os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
    )
    if attempt > 1:
        env["RUNCTL_RESUMED"] = "1"
    if spec.get("data_mount"):  # the data volume's mount path (--data-size, --volume)
        env["RUNCTL_DATA_DIR"] = str(spec["data_mount"])
    workdir = spec.get("workdir")
    if not workdir or not os.path.isdir(workdir):
        workdir = str(run_dir)
    image = (spec.get("options") or {}).get("image")
    python = container.CONTAINER_PYTHON if image else (spec.get("python") or sys.executable)
    argv = [python, "-m", "runctl_jupyter.agent.runner", str(run_dir)]
    if spec.get("distributed"):  # under torchrun, one runner per rank
        from . import torchrun

        argv, extra = torchrun.launch_command(
            spec["distributed"], python, run_dir, attempt, spec["run_id"]
        )
        env.update(extra)
    if image:  # the code runs in the container; PYTHONPATH is the package's mount only
        env["PYTHONPATH"] = package_parent
        argv, _runtime, _name = container.container_command(
            spec, run_dir, attempt, argv, env, set(env) - set(os.environ), workdir, package_parent
        )
    return subprocess.Popen(
        argv,
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: Stop reaches data-loader workers too
        preexec_fn=_die_with_parent,
    )
