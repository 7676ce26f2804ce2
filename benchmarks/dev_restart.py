"""dev_restart: save -> the first new log line of a dev run on a warm (kept) instance,
next to a fresh `train --instance` on the same instance (issue 17).

Measured in the AWS test fixture (tests/aws/conftest.py): a moto server on
127.0.0.1 and the played instance, which runs the exact SSM scripts we send
with bash under a bare environment. `run()` starts pytest on
tests/aws/bench_dev_restart.py (a shim pytest does not collect by itself) so
the fixture is the tests' own; the shim calls `measure()` below, which writes
the samples to RUNCTL_BENCH_OUT.

- ours (`dev_restart`): a kept instance runs a dev run of a script that prints a
  version line and then steps until stopped; the watcher is on. Each repetition
  saves a new version of the script and times until that version's line is in the
  notebook side's mirror (`AWSBackend.pull` called at the panel's refresh interval,
  paced as it paces itself): the watcher's poll, the changed file up to S3, the
  SSM restart, the agent's stop and next attempt, the S3 sync and the pull.
- peer (`fresh_train_instance`): `Session.train(script, --instance ID)` of the same
  script on the same instance (bundle, SSM bootstrap, agent service), timed from the
  call to its line in its mirror; then stopped.
Both with the AWSBackend defaults a user gets. Budget: <= 3 s.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import REPO, Ctx, Result, Skipped, alternate, median

SCRIPT = """\
import time
from runctl_jupyter.runtime import runctl
print("version {version}", flush=True)
step = 0
while not runctl.should_stop:
    runctl.log(step=step, loss=1.0)
    step += 1
    time.sleep(0.2)
"""

ABOUT = {
    "dev_restart": (
        "seconds from saving a watched script to its first new log line in the notebook's "
        "mirror, a dev run on a kept instance (`runctl dev --keep --watch`), against "
        "`train --instance` of the same script on the same instance (call to first line); "
        "in the AWS test fixture (moto on 127.0.0.1, the played instance runs our SSM scripts)"
    )
}


def run(ctx: Ctx) -> dict[str, Result]:
    if ctx.quick:
        raise Skipped(
            "needs the played AWS instance (~2 min to build its venv): run without --quick"
        )
    out = ctx.scratch("dev_restart") / "samples.json"
    env = dict(os.environ, RUNCTL_BENCH_OUT=str(out), RUNCTL_BENCH_REPS=str(ctx.reps))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/aws/bench_dev_restart.py", "-q", "-n0",
         "-p", "no:cacheprovider", "-s", "--timeout", "1700"],  # the first venv takes minutes
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"the fixture run failed: {(proc.stdout + proc.stderr)[-2000:]}")
    samples = json.loads(out.read_text())
    dev, fresh = samples["dev_restart"], samples["fresh_train_instance"]
    return {
        "dev_restart": Result(
            unit="s",
            better="lower",
            ours=round(median(dev), 3),
            peers={"fresh_train_instance": round(median(fresh), 3)},
            detail={"samples": samples, "budget_seconds": 3.0},
            notes=[
                "measured in the AWS test fixture: moto and the played instance on this machine"
            ],
        )
    }


def _mirror_has(session: Any, run_id: str, text: str) -> bool:
    path = session.store.run_dir(run_id) / "stdout.log"
    return path.exists() and text in path.read_text(errors="replace")


def _until_line(session: Any, run_id: str, text: str, timeout: float = 300.0) -> None:
    """Pull as the panel does (every refresh interval; the backend paces itself)."""
    from runctl_jupyter.store.folders import read_spec

    run_dir = session.store.run_dir(run_id)
    spec = read_spec(run_dir)
    backend = session.backend("aws")
    deadline = time.monotonic() + timeout
    while not _mirror_has(session, run_id, text):
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} never reached the mirror of run {run_id}")
        backend.pull(run_dir, spec)
        time.sleep(session.config.refresh_interval)


def measure(aws: Any, tmp_path: Path, monkeypatch: Any) -> dict[str, list[float]]:
    """In the fixture (tests/aws/bench_dev_restart.py): the alternating samples."""
    from traitlets.config import Config

    from runctl_jupyter.aws.setup import setup
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    setup(aws)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    session = Session(config=Runctl(config=cfg))
    script = work / "train.py"
    script.write_text(SCRIPT.format(version=0))
    dev = session.dev(
        script=str(script), backend="aws", detach=True,
        options={"instance_type": "t3.micro", "keep": True, "spot": False},
    )  # fmt: skip
    _until_line(session, dev.id, "version 0")
    session._dev_runs.watch(dev.id, script)
    instance_id = json.loads((session.store.run_dir(dev.id) / "aws.json").read_text())[
        "instance_id"
    ]
    versions = iter(range(1, 1000))

    def dev_restart() -> float:
        marker = f"version {next(versions)}"
        t0 = time.perf_counter()
        script.write_text(SCRIPT.format(version=marker.split()[1]))
        _until_line(session, dev.id, marker)
        return time.perf_counter() - t0

    def fresh_train_instance() -> float:
        marker = f"version {next(versions)}"
        other = work / f"fresh_{marker.split()[1]}.py"
        other.write_text(SCRIPT.format(version=marker.split()[1]))
        t0 = time.perf_counter()
        run = session.train(
            script=str(other), backend="aws", detach=True, options={"instance": instance_id}
        )
        _until_line(session, run.id, marker)
        seconds = time.perf_counter() - t0
        session.backend_stop(run.id)
        return seconds

    reps = int(os.environ.get("RUNCTL_BENCH_REPS", "7"))
    samples = alternate(
        {"dev_restart": dev_restart, "fresh_train_instance": fresh_train_instance}, reps
    )
    session._dev_runs.end(dev.id, "benchmark over")
    return samples
