"""The agent: supervises one attempt of a run, next to the code (locally or on EC2).

    python -m runctl_jupyter.agent RUN_DIR [--attempt N] [--daemon]

It starts the runner (the user's code, spawn.py) in a child process, and then, every
tick until the runner is gone: turns its output and the runtime files the in-run
`runctl` object writes into events (output.py), heartbeats, acts on a stop
(stop.py), early stopping (early_stop.py), spot notices (spot.py), stalls (watch.py)
and cost (cost.py), and syncs to S3 on EC2. At the end it finalizes the run itself
(end.py): the record notebook, then the `exit` event. No kernel needs to be alive.

Stdlib only (the S3 sync plugin is the one place that uses boto3, on EC2).
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..events import FORMAT, EventWriter, read_events
from ..paths import REFUSED_FILE
from ..procs import boot_id, process_start
from .container import prepare_image
from .early_stop import EarlyStop, early_stop_warning
from .end import Ending
from .output import MetricParser, PrintedLines, RuntimeTail
from .restart import DevRestart
from .spawn import start_runner
from .spot import Interruptions
from .stop import Stopping
from .watch import Watch, replay_unsent

if TYPE_CHECKING:
    from .s3 import Sync
    from .torchrun import MainRankLines

TICK = 0.05


class Agent(Stopping, Ending):
    """One attempt of a run, from the runner's start to the `exit` event (its stop
    methods are in stop.py, its end in end.py)."""

    def __init__(
        self,
        run_dir: Path,
        attempt: int,
        sync: Sync | None = None,
        restarted: DevRestart | None = None,
    ):
        self.run_dir = run_dir
        self.attempt = attempt
        self.spec = json.loads((run_dir / "spec.json").read_text())
        self.events = EventWriter(run_dir, attempt)
        self.grace = float(self.spec.get("grace_seconds") or 10)
        self.heartbeat_every = float(self.spec.get("heartbeat_seconds") or 5)
        max_hours = self.spec.get("max_hours")
        self.deadline = time.time() + float(max_hours) * 3600 if max_hours else None
        self.metrics: MetricParser | MainRankLines = MetricParser(
            list(self.spec.get("metrics") or [])
        )
        self.runtime = RuntimeTail(run_dir / "runtime", attempt)
        self.stop_reason: str | None = None
        self.signaled = False
        self.kill_at: float | None = None
        self.control_mtime = 0.0
        self.sync = sync or self._load_sync()
        self.restarted = restarted  # the dev restart that led here (said at the start)
        self.printed = PrintedLines()
        self.started = time.time()
        early = self.spec.get("early_stop") or (self.spec.get("options") or {}).get("early_stop")
        self.early_stop = EarlyStop(early, self.metrics.names) if early else None
        self.stop_detail: dict | None = None
        self.spot, self.watch = Interruptions(self), Watch(self)  # spot notices; stalls
        self.restart = DevRestart(self)  # `runctl dev`: the next attempt in this process
        self.sync_every = 0.5 if self.restart.dev else 2.0  # a dev restart shows at once
        from .cost import CostMeter  # dollars so far, cost events, --cost-limit

        self.cost = CostMeter(self.spec, run_dir, attempt, self.events.write, self.request_stop)

    def _load_sync(self):
        cfg = self.spec.get("sync")
        if not cfg and self.spec.get("team"):  # a local run published to its team
            from .team import local_sync_cfg

            cfg = local_sync_cfg(self.spec["team"])
        if not cfg:
            return None
        if cfg.get("kind") == "s3":
            from .s3 import Sync

            return Sync(self.run_dir, cfg)
        raise ValueError(f"unknown sync kind {cfg.get('kind')!r}")

    # -- the attempt -------------------------------------------------------------
    def run(self) -> int:
        # A signal only raises a flag: the loop reads control.json first, so a stop
        # sent with a reason (a sweep's pruner, a cost limit) keeps that reason.
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self._write_agent_info()
        self.stdout_log = open(self.run_dir / "stdout.log", "ab")
        if self.attempt > 1:
            self.stdout_log.write(f"=== attempt {self.attempt} ===\n".encode())
        self.events.write(
            "status",
            status="starting",
            format=FORMAT,
            host=socket.gethostname(),
            **self._bootstrap_facts(),
        )
        if self.restarted is not None:
            self.restarted.announce(self.events)  # a dev restart: what changed
            self.restarted = None  # no chain of earlier attempts' agents kept alive
        self._report_refused()
        replay_unsent(self)  # lines a killed agent of an earlier attempt never sent
        if (self.spec.get("options") or {}).get("prewarm"):
            from .prewarm import prewarm  # a restored volume read once (--prewarm)

            if not prewarm(self):
                return self._finish("stopped", self.stop_reason, None, None)
        if self.spec.get("distributed"):
            from .torchrun import MainRankLines

            self.metrics = MainRankLines(self.metrics)
        try:
            self._prepare_image()
            self.child = start_runner(self.spec, self.run_dir, self.attempt)
        except OSError as exc:
            self._add_host_facts()
            if self.stop_reason is not None:  # stopped while the image was pulled or built
                return self._finish("stopped", self.stop_reason, None, None)
            return self._finish(
                "failed",
                "exception",
                None,
                {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
            )
        self.events.write("status", status="running", pid=self.child.pid)
        self.events.flush()
        self._add_host_facts()  # after the runner's start: nvidia-smi takes a second
        return self._supervise()

    def _prepare_image(self) -> None:
        """`--image`: pull or build it now (container.py), heartbeats going and a Stop heard."""
        options = self.spec.get("options") or {}
        if not options.get("image"):
            return
        last_beat = time.monotonic()

        def tick() -> bool:
            nonlocal last_beat
            if time.monotonic() - last_beat >= self.heartbeat_every:
                self.events.write("heartbeat", pid=os.getpid())
                self.events.flush()
                last_beat = time.monotonic()
            self._check_control()
            if self.signaled and self.stop_reason is None:
                self.request_stop("user")
            return self.stop_reason is None

        if options.get("image_build"):
            self._output("stdout", b"runctl: building the image from the Dockerfile (image-build.log)\n")
        options["image_tag"] = prepare_image(
            self.spec, self.run_dir, tick, lambda line: self._output("stdout", f"{line}\n".encode())
        )

    def _bootstrap_facts(self) -> dict:
        """What the EC2 bootstrap measured (bootstrap.json): the pip install time, whether the
        pins were installed or present already, and each boot phase's wall-clock end."""
        try:
            facts = json.loads((self.run_dir / "bootstrap.json").read_text())
        except (OSError, ValueError):
            return {}
        return {
            k: facts[k]
            for k in ("pip_seconds", "requirements", "marks")
            if isinstance(facts, dict) and k in facts
        }

    def _write_agent_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "boot_id": boot_id(),
            "proc_start": process_start(os.getpid()),
            "started": time.time(),
            "attempt": self.attempt,
        }
        tmp = self.run_dir / "agent.json.tmp"
        tmp.write_text(json.dumps(info))
        os.replace(tmp, self.run_dir / "agent.json")

    def _add_host_facts(self) -> None:
        path = self.run_dir / "env.json"
        try:
            from ..environment import host_facts

            env = json.loads(path.read_text()) if path.exists() else {}
            env["host"] = host_facts()
            path.write_text(json.dumps(env, indent=1, default=str))
        except Exception as exc:  # noqa: BLE001 - facts are nice to have; the run matters more
            self.events.write("warning", message=f"could not record host facts: {exc}")

    def _report_refused(self) -> None:
        """The S3 keys the restore left out (agent/restore.py): a warning each."""
        try:
            refused = json.loads((self.run_dir / REFUSED_FILE).read_text())
        except (OSError, ValueError):
            return
        for line in refused:
            self.events.write("warning", message=line, code="refused-key")
        (self.run_dir / REFUSED_FILE).unlink(missing_ok=True)

    def _supervise(self) -> int:
        selector = selectors.DefaultSelector()
        assert self.child.stdout is not None and self.child.stderr is not None  # piped
        selector.register(self.child.stdout, selectors.EVENT_READ, "stdout")
        selector.register(self.child.stderr, selectors.EVENT_READ, "stderr")
        open_streams = 2
        last_beat = last_sync = time.monotonic()
        while True:
            for key, _ in selector.select(TICK):
                data = os.read(key.fd, 1 << 16)
                if data:
                    self._output(key.data, data)
                else:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
            self._tail_runtime()
            self._flush_logs()
            now = time.monotonic()
            if now - last_beat >= self.heartbeat_every:
                self.events.write("heartbeat", pid=os.getpid())
                last_beat = now
            self._check_control()
            if self.signaled and self.stop_reason is None:
                self.request_stop("user")
            self._check_limits()
            self.spot.tick()
            self.watch.tick()
            self.cost.tick()
            self.events.flush()
            if self.sync is not None and now - last_sync >= self.sync_every:
                self._sync_tick()
                last_sync = now
            if open_streams == 0 and self.child.poll() is not None:
                break
            if open_streams == 0:
                time.sleep(TICK)
        selector.close()
        for stream in ("stdout", "stderr"):
            if self.printed.partial[stream]:
                self._output(stream, b"\n")
        self._tail_runtime()
        self._flush_logs()
        return self._exit(self.child.returncode)

    # -- output and metrics ---------------------------------------------------------
    def _output(self, stream: str, data: bytes) -> None:
        self.stdout_log.write(data)
        for line in self.printed.take(stream, data):
            if stream == "stdout":
                metric = self.metrics.parse(line)
                if metric:
                    self.events.write("metric", **metric)
                    self._check_early_stop(metric)

    def _flush_logs(self) -> None:
        for stream, text in self.printed.log_events():
            self.events.write("log", stream=stream, text=text)
        self.stdout_log.flush()

    def _tail_runtime(self) -> None:
        for record in self.runtime.read():
            kind = record.pop("type", None)
            if kind in ("metric", "checkpoint", "warning", "model", "debugger"):
                self.events.write(kind, **record)
                self.watch.saw(kind, record)
                if kind == "metric":
                    self._check_early_stop(record)

    def _check_early_stop(self, metric: dict) -> None:
        if self.early_stop is None or self.stop_reason is not None:
            return
        values = metric.get("values")
        detail = self.early_stop.observe(
            metric.get("step"), values if isinstance(values, dict) else {}
        )
        if detail is None or getattr(self, "child", None) is None or self.child.poll() is not None:
            return  # a run that already ended on its own is not early-stopped
        self.early_stop = None
        self.stop_detail = {"early_stop": detail}
        self.events.write(
            "warning", message=early_stop_warning(detail), code="early-stop", **detail
        )
        self.request_stop("early-stop")

    def _sync_tick(self) -> None:
        assert self.sync is not None, "ticked only with a sync"
        try:
            self.sync.tick()
        except Exception as exc:  # noqa: BLE001 - a sync hiccup must not end the training
            self.events.write("warning", message=f"sync failed, will retry: {exc}", code="sync")


def attempts_so_far(run_dir: Path) -> int:
    events, _ = read_events(run_dir / "events.jsonl")
    return max((e.get("attempt", 1) for e in events), default=0)


def daemonize() -> None:
    """Fork so the agent is not the launcher's child: it outlives the kernel and
    leaves no zombie behind; the launcher's direct child exits at once."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.agent")
    parser.add_argument("run_dir")
    parser.add_argument("--attempt", type=int, default=None)
    parser.add_argument("--daemon", action="store_true", help="detach from the launcher")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    attempt = args.attempt or attempts_so_far(run_dir) + 1
    if args.daemon:
        daemonize()
    agent = Agent(run_dir, attempt)
    code = agent.run()
    while agent.restart.next_attempt:  # a dev run's restart: its next attempt, here
        done = agent.restart
        assert done.next_attempt is not None
        agent = Agent(run_dir, done.next_attempt, sync=done.sync, restarted=done)
        code = agent.run()
    return code
