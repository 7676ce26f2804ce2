"""cold_start / warm_start: `%%runctl train --backend aws`, from the cell to the first metric.

What `%%runctl train` calls (`Session.train(code=..., backend="aws")`, blocking, the live
view a terminal gets) runs against the moto server of tests/aws/conftest.py, whose
instance player runs the exact SSM script we send with bash on a bare Python (so the
bootstrap really builds its venv and pip-installs from the package index). Three starts:

- cold: a fresh instance from a bare image (no venv): the whole boot;
- cold_baked_ami: a fresh instance whose image already holds `/root/runctl/venv` with
  the pins (an AMI made from a kept instance);
- warm: the next run on a `--keep` instance (`--instance ID`).

Each records every serial step: the AWS calls in order (botocore `before-call` /
`after-call` on the session's clients), the launch progress lines, the SSM command's
pickup, the boot script's phases (`marks` of bootstrap.json, passed on in the agent's
first event), the agent's start, the first metric written on the instance and the
moment the live view first shows a metric. AWS's own part (an instance booting, its
SSM agent registering) is zero on the fixture; docs/benchmarks.md adds AWS's published
figures to it, marked as estimates.
"""

from __future__ import annotations

import importlib.util
import io
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .aws_api_calls import _moto
from .common import REPO, Ctx, NotLanded, Result

# numpy: `--pip auto` pins it to the notebook's version, so the boot installs one package
CELL = "import numpy as np\nrunctl.log(step=0, loss=float(np.float64(0.5)))\n"
SCENARIOS = ("cold", "cold_baked_ami", "warm")

ABOUT = {
    "cold_start": (
        "seconds from `%%runctl train --backend aws` (Session.train, blocking) to the first "
        "metric shown by the live view, on a fresh instance from a bare image, against the moto "
        "server and the instance player of tests/aws (the exact SSM script run with bash on a bare "
        "Python; pip installs from the local package index). AWS's own part (boot, SSM "
        "registration) is 0 here: see 'Cold start, step by step' for AWS's published figures. "
        "Detail: every step, the AWS calls in order, the boot phases."
    ),
    "warm_start": (
        "the same, for the next run on a `--keep` instance (`--instance ID`): no launch, the "
        "venv and the pins already there."
    ),
}


def _fixture() -> Any:
    """tests/aws/conftest.py as a module: its moto extensions, account and instance player."""
    for folder in (REPO / "tests", REPO / "tests" / "aws"):  # its own helpers, by name
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location(
        "runctl_aws_fixture", REPO / "tests" / "aws" / "conftest.py"
    )
    if spec is None or spec.loader is None:
        raise NotLanded("tests/aws/conftest.py (the instance player) is missing")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recorder:
    """The serial steps of one start, in wall-clock seconds since the cell began."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.steps: list[dict] = []
        self.calls: list[str] = []
        self.first_metric_seen: float | None = None
        self._open: dict[int, tuple[float, str]] = {}

    def add(self, what: str, start: float, end: float | None = None, kind: str = "") -> None:
        end = start if end is None else end
        self.steps.append(
            {
                "kind": kind,
                "what": what,
                "at": round(start - self.t0, 3),
                "s": round(end - start, 3),
            }
        )

    @staticmethod
    def hook(clients: Any) -> None:
        """Every AWS call made through these clients goes to their current `recorder`."""

        def before(**kw: Any) -> None:
            if clients.recorder is not None:
                clients.recorder._before(**kw)

        def after(**kw: Any) -> None:
            if clients.recorder is not None:
                clients.recorder._after(**kw)

        events = clients.session._session  # botocore's session: its hooks reach every client
        events.register("before-call", before)
        events.register("after-call", after)
        events.register("after-call-error", after)

    def _before(self, model: Any = None, **_: Any) -> None:
        if model is not None:
            op = f"{model.service_model.service_name}.{model.name}"
            self._open[threading.get_ident()] = (time.time(), op)

    def _after(self, **_: Any) -> None:
        started = self._open.pop(threading.get_ident(), None)
        if started is not None:
            self.calls.append(started[1])
            self.add(started[1], started[0], time.time(), kind="aws")


class FirstMetricView:
    """The terminal's live view, noting when it first shows a metric."""

    def __init__(self, view: Any, recorder: Recorder) -> None:
        self.view, self.recorder = view, recorder

    def update(self, row: dict, events: list[dict]) -> None:
        if self.recorder.first_metric_seen is None and any(e["type"] == "metric" for e in events):
            self.recorder.first_metric_seen = time.time()
        self.view.update(row, events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.view, name)


def _start(session: Any, player: Any, options: dict) -> tuple[Recorder, Any]:
    """One `%%runctl train --backend aws` cell, recorded."""
    from runctl_jupyter.aws.clients import Clients
    from runctl_jupyter.runs.liveview import TextView

    backend = session.backend("aws")
    if backend._clients is None:  # one kernel: its clients serve every cell, as in a notebook
        backend._clients = Clients()
        backend._clients.recorder = None
        Recorder.hook(backend._clients)
    recorder = Recorder()
    backend._clients.recorder = recorder
    progress = type(session)._launch_progress

    def say(run_id: str, state: str, detail: str) -> None:
        recorder.add(f"{state}: {detail}", time.time(), kind="notebook")
        progress(session, run_id, state, detail)

    session._launch_progress = say
    session._live_view = lambda run: FirstMetricView(
        TextView(run, out=io.StringIO(), err=io.StringIO()), recorder
    )
    before = len(player.runs)
    recorder.t0 = time.time()
    run = session.train(code=CELL, params={}, backend="aws", options=options)
    ended = time.time()
    if session.store.get(run.id)["status"] != "succeeded" or recorder.first_metric_seen is None:
        raise AssertionError(f"the run did not succeed with a metric: {session.logs(run.id)}")
    _instance_steps(recorder, session.store.events(run.id), player.runs[before:])
    recorder.add("the cell returns", ended, kind="notebook")
    recorder.steps.sort(key=lambda s: s["at"])
    return recorder, run


def _instance_steps(recorder: Recorder, events: list[dict], runs: list[dict]) -> None:
    """What happened on the instance: the SSM pickup, the boot phases, the agent's events."""
    wall = time.time() - time.monotonic()  # the player stamps with the monotonic clock
    for played in (r for r in runs if r["kind"] == "ssm"):
        start = played["picked_up"] + wall
        recorder.add("instance: the SSM command is picked up", start, kind="instance")
    starting = next(e for e in events if e.get("status") == "starting")
    marks = sorted((starting.get("marks") or {}).items(), key=lambda kv: kv[1])
    for (_, begun), (name, done) in zip(marks, marks[1:]):
        recorder.add(f"boot: {name}", begun, done, kind="boot")
    if marks:
        recorder.add(
            "boot: service start -> agent's first event", marks[-1][1], starting["t"], kind="boot"
        )
    running = next(e for e in events if e.get("status") == "running")
    recorder.add(
        "agent: runner started (status running)", starting["t"], running["t"], kind="agent"
    )
    metric = next(e for e in events if e["type"] == "metric")
    recorder.add("agent: first metric written", running["t"], metric["t"], kind="agent")
    recorder.add(
        "notebook: first metric shown (S3 chunk, pull, store, view)",
        metric["t"],
        recorder.first_metric_seen,
        kind="notebook",
    )
    recorder.requirements = starting.get("requirements")  # type: ignore[attr-defined]


def _summary(recorder: Recorder) -> dict:
    """One start as detail: the total, the phases, the AWS calls in order (runs of a call folded)."""
    folded: list[list] = []
    for op in recorder.calls:
        if folded and folded[-1][0] == op:
            folded[-1][1] += 1
        else:
            folded.append([op, 1])
    boot = {s["what"][len("boot: ") :]: s["s"] for s in recorder.steps if s["kind"] == "boot"}
    aws_seconds = sum(s["s"] for s in recorder.steps if s["kind"] == "aws")
    return {
        "to_first_metric_s": round(recorder.first_metric_seen - recorder.t0, 3),
        "aws_calls": len(recorder.calls),
        "aws_calls_in_order": [f"{op} x{n}" if n > 1 else op for op, n in folded],
        "aws_call_seconds": round(aws_seconds, 3),
        "boot_phases_s": boot,
        "requirements": getattr(recorder, "requirements", None),
        "steps": recorder.steps,
    }


def _bare_python(folder: Path) -> Path:
    """The instances' Python, with nothing installed (the boot's venv brings its own pip)."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True
    )
    return folder / "venv" / "bin"


def _baked_venv(path: Path) -> None:
    """--quick: an image's venv that has every package already (this Python's, no pip):
    the starts skip the bare image's venv and installs, which take minutes here."""
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)],
        check=True,
    )


def _one_round(
    fixture: Any, url: str, folder: Path, bare: Path, imds: Any, rep: int, quick: bool
) -> dict:
    """cold (keep) -> warm on that instance -> cold from an image that has the venv;
    --quick: from an image that has the venv (keep) -> warm."""
    from traitlets.config import Config

    from runctl_jupyter.aws.setup import setup
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    clients = fixture.fresh_account(url)
    setup(clients)
    cfg = Config()
    cfg.Runctl.home = str(folder / f"home-{rep}")
    session = Session(config=Runctl(config=cfg))
    sandbox = folder / f"sandbox-{rep}"
    sandbox.mkdir()
    # a venv cache that does not exist yet: the first instance builds its venv from nothing
    venv = folder / f"venv-{rep}"
    if quick:
        _baked_venv(venv)
    player = fixture.InstancePlayer(url, bare, venv, sandbox, imds)
    base = {"instance_type": "t3.micro", "spot": False}
    starts = {}
    try:
        first, run = _start(session, player, {**base, "keep": True})
        starts["cold_baked_ami" if quick else "cold"] = first
        kept = session.store.run_dir(run.id)
        instance_id = json.loads((kept / "spec.json").read_text())["target"]["instance_id"]
        starts["warm"], _ = _start(session, player, {**base, "instance": instance_id})
        if not quick:  # a new instance: the player links the venv the first one built
            starts["cold_baked_ami"], _ = _start(session, player, base)
        clients.ec2.terminate_instances(InstanceIds=[instance_id])
    finally:
        player.close()
    return {name: _summary(recorder) for name, recorder in starts.items()}


def run(ctx: Ctx) -> dict[str, Result]:
    try:
        fixture = _fixture()
        from runctl_jupyter.session import Session  # noqa: F401 - the feature is there
    except ImportError as exc:
        raise NotLanded(f"the AWS fixture or the session: {exc}") from exc
    reps = 1 if ctx.quick else max(3, min(ctx.reps, 5))
    folder = ctx.scratch("cold_start")
    bare = _bare_python(folder / "bare")
    rounds: list[dict] = []
    with _moto(fixture.FAKE_ENV) as url:
        fixture._extend_moto()
        imds = fixture._Imds()
        try:
            for rep in range(reps):
                rounds.append(_one_round(fixture, url, folder, bare, imds, rep, ctx.quick))
        finally:
            imds.close()
    detail = {name: _medians([r[name] for r in rounds]) for name in SCENARIOS if name in rounds[0]}
    notes = [f"{reps} round(s) of cold -> warm -> cold_baked_ami; medians; one round in full"]
    if ctx.quick:
        notes = ["quick: no bare image (cold_start is the start from an image with the venv)"]
    return {
        "cold_start": Result(
            unit="s",
            better="lower",
            ours=detail.get("cold", detail["cold_baked_ami"])["to_first_metric_s"],
            peers={},
            detail={"scenarios": detail},  # each start's samples are in samples_s
            notes=notes,
        ),
        "warm_start": Result(
            unit="s",
            better="lower",
            ours=detail["warm"]["to_first_metric_s"],
            detail={"cold_baked_ami_s": detail["cold_baked_ami"]["to_first_metric_s"]},
            notes=notes,
        ),
    }


def _medians(starts: list[dict]) -> dict:
    """The median start's steps, with the medians of its totals and boot phases."""
    ordered = sorted(starts, key=lambda s: s["to_first_metric_s"])
    middle = dict(ordered[len(ordered) // 2])
    middle["samples_s"] = [s["to_first_metric_s"] for s in starts]
    phases = {name for s in starts for name in s["boot_phases_s"]}
    middle["boot_phases_median_s"] = {
        name: round(statistics.median(s["boot_phases_s"].get(name, 0.0) for s in starts), 3)
        for name in sorted(phases)
    }
    return middle
