"""The agent: supervises one attempt of a run, next to the code (locally or on EC2).

    python -m runctl_jupyter.agent RUN_DIR [--attempt N] [--daemon]

It starts the runner (the user's code) in a child process, captures its output,
tails the runtime files the in-run `runctl` object writes, writes the event
stream (docs/events.md), heartbeats, turns Stop and --max-hours into SIGTERM
(then SIGKILL after the grace period), and finalizes the run itself: the record
notebook, then the `exit` event. No kernel needs to be alive.

Stdlib only (the S3 sync plugin is the one place that uses boto3, on EC2).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..events import FORMAT, EventWriter, lower_is_better, read_events
from .spot import Interruptions
from .watch import Watch, replay_unsent

TICK = 0.05
LOG_EVENT_MAX_CHARS = 64 * 1024
PR_SET_PDEATHSIG = 1
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
_STEP_KEYS = ("step", "epoch", "iter", "iteration")


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the agent dies, so training never runs unseen."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:  # not Linux: the heartbeat timeout still marks the run lost
        pass


def process_start(pid: int) -> int | None:
    """The process's start time in clock ticks (tells a reused pid apart), None if
    there is no such live process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # a zombie has ended; only its exit status is left
        return None
    return int(fields[19])


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class MetricParser:
    """Metrics from printed lines (`--metrics loss,acc`): `loss=0.3`, `loss: 0.3`, JSON."""

    def __init__(self, names: list[str]):
        self.names = [n for n in names if n]
        self.step = -1
        keys = "|".join(re.escape(n) for n in [*self.names, *_STEP_KEYS])
        self._pattern = re.compile(rf"(?<![\w.])({keys})\s*[=:]\s*{_NUMBER}", re.IGNORECASE)

    def parse(self, line: str) -> dict | None:
        if not self.names:
            return None
        found: dict[str, float] = {}
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                found = {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}
        if not found:
            found = {m.group(1).lower(): float(m.group(2)) for m in self._pattern.finditer(line)}
        step = next((found.pop(k) for k in _STEP_KEYS if k in found), None)
        for k in _STEP_KEYS:
            found.pop(k, None)
        values = {n: found[n.lower()] for n in self.names if n.lower() in found}
        values.update({n: found[n] for n in self.names if n in found})
        if not values:
            return None
        self.step = int(step) if step is not None else self.step + 1
        return {"step": self.step, "values": values}


class RuntimeTail:
    """Reads new complete lines of every runtime/<attempt>-<pid>.jsonl file."""

    def __init__(self, folder: Path, attempt: int):
        self.folder = folder
        self.prefix = f"{attempt}-"  # earlier attempts' files were read by their own agents
        self.offsets: dict[str, int] = {}

    def read(self) -> list[dict]:
        records = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return records
        for entry in entries:
            if not entry.name.startswith(self.prefix):
                continue
            offset = self.offsets.get(entry.name, 0)
            if entry.stat().st_size <= offset:
                continue
            with open(entry.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[entry.name] = offset + end + 1
            for line in data[: end + 1].splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        records.sort(key=lambda r: r.get("t", 0))
        return records


class EarlyStop:
    """`--early-stop val_loss:min,patience=10[,min_delta=0.001][,warmup=5]`: the run is
    stopped when `metric` has not improved by more than `min_delta` for `patience`
    consecutive values, counting from step `warmup` on. No metric given: the first
    of the run's `--metrics`, else the first metric it logs; no mode: `min` for
    loss-like names (loss, err, mse, ...), else `max`."""

    def __init__(self, config: dict, metrics: list[str]):
        self.metric = config.get("metric") or (metrics[0] if metrics else None)
        self.mode = config.get("mode")
        self.patience = max(1, int(config.get("patience") or 10))
        self.min_delta = abs(float(config.get("min_delta") or 0.0))
        self.warmup = int(config.get("warmup") or 0)
        self.best: float | None = None
        self.best_step: int | None = None
        self.bad = 0

    def observe(self, step: int | None, values: dict) -> dict | None:
        """Take one metric event; the stop's details when patience ran out, else None."""
        if self.metric is None:
            self.metric = next(iter(values), None)
        value = values.get(self.metric)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return None
        if isinstance(step, int) and step < self.warmup:
            return None
        if self.mode is None:
            name = self.metric.lower()
            self.mode = "min" if lower_is_better(name) else "max"
        if self.best is None or (
            value < self.best - self.min_delta
            if self.mode == "min"
            else value > self.best + self.min_delta
        ):
            self.best, self.best_step, self.bad = float(value), step, 0
            return None
        self.bad += 1
        if self.bad < self.patience:
            return None
        return {
            "metric": self.metric,
            "mode": self.mode,
            "step": step,
            "best": self.best,
            "best_step": self.best_step,
            "patience": self.patience,
        }


class Agent:
    def __init__(self, run_dir: Path, attempt: int):
        self.run_dir = run_dir
        self.attempt = attempt
        self.spec = json.loads((run_dir / "spec.json").read_text())
        self.events = EventWriter(run_dir, attempt)
        self.grace = float(self.spec.get("grace_seconds") or 10)
        self.heartbeat_every = float(self.spec.get("heartbeat_seconds") or 5)
        max_hours = self.spec.get("max_hours")
        self.deadline = time.time() + float(max_hours) * 3600 if max_hours else None
        self.metrics = MetricParser(list(self.spec.get("metrics") or []))
        self.runtime = RuntimeTail(run_dir / "runtime", attempt)
        self.stop_reason: str | None = None
        self.signaled = False
        self.kill_at: float | None = None
        self.control_mtime = 0.0
        self.sync = self._load_sync()
        self.partial = {"stdout": b"", "stderr": b""}
        self.pending_logs: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self.started = time.time()
        early = self.spec.get("early_stop") or (self.spec.get("options") or {}).get("early_stop")
        self.early_stop = EarlyStop(early, self.metrics.names) if early else None
        self.stop_detail: dict | None = None
        self.spot, self.watch = Interruptions(self), Watch(self)  # spot notices; stalls
        from .cost import CostMeter  # dollars so far, cost events, --cost-limit

        self.cost = CostMeter(self.spec, run_dir, attempt, self.events.write, self.request_stop)

    def _load_sync(self):
        cfg = self.spec.get("sync")
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
        self._add_host_facts()
        replay_unsent(self)  # lines a killed agent of an earlier attempt never sent
        try:
            self.child = self._start_child()
        except OSError as exc:
            return self._finish(
                "failed",
                "exception",
                None,
                {"type": type(exc).__name__, "message": str(exc), "traceback": ""},
            )
        self.events.write("status", status="running", pid=self.child.pid)
        self.events.flush()
        return self._supervise()

    def _bootstrap_facts(self) -> dict:
        """What the EC2 bootstrap measured (bootstrap.json): the pip install time."""
        try:
            facts = json.loads((self.run_dir / "bootstrap.json").read_text())
        except (OSError, ValueError):
            return {}
        return {k: facts[k] for k in ("pip_seconds",) if isinstance(facts, dict) and k in facts}

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

    def _start_child(self) -> subprocess.Popen:
        package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding the package
        env = dict(os.environ)
        env.update(
            RUNCTL_RUN_DIR=str(self.run_dir),
            RUNCTL_RUN_ID=self.spec["run_id"],
            RUNCTL_ATTEMPT=str(self.attempt),
            PYTHONUNBUFFERED="1",
            RUNCTL_PARAMS_FILE=str(self.run_dir / "params.json"),
            PYTHONPATH=os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p),
        )
        if self.attempt > 1:
            env["RUNCTL_RESUMED"] = "1"
        workdir = self.spec.get("workdir")
        if not workdir or not os.path.isdir(workdir):
            workdir = str(self.run_dir)
        python = self.spec.get("python") or sys.executable
        argv = [python, "-m", "runctl_jupyter.agent.runner", str(self.run_dir)]
        if self.spec.get("distributed"):  # under torchrun, one runner per rank
            from . import torchrun

            argv, extra = torchrun.launch_command(
                self.spec["distributed"], python, self.run_dir, self.attempt, self.spec["run_id"]
            )
            env.update(extra)
            self.metrics = torchrun.MainRankLines(self.metrics)
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

    def _supervise(self) -> int:
        selector = selectors.DefaultSelector()
        selector.register(self.child.stdout, selectors.EVENT_READ, "stdout")
        selector.register(self.child.stderr, selectors.EVENT_READ, "stderr")
        open_streams = 2
        last_beat = last_sync = time.monotonic()
        while True:
            for key, _ in selector.select(TICK):
                data = os.read(key.fileobj.fileno(), 1 << 16)
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
            if self.sync is not None and now - last_sync >= 2:
                self._sync_tick()
                last_sync = now
            if open_streams == 0 and self.child.poll() is not None:
                break
            if open_streams == 0:
                time.sleep(TICK)
        selector.close()
        for stream in ("stdout", "stderr"):
            if self.partial[stream]:
                self._output(stream, b"\n")
        self._tail_runtime()
        self._flush_logs()
        return self._exit(self.child.returncode)

    # -- output and metrics ---------------------------------------------------------
    def _output(self, stream: str, data: bytes) -> None:
        self.stdout_log.write(data)
        data = self.partial[stream] + data
        end = data.rfind(b"\n")
        if end < 0:
            self.partial[stream] = data
            return
        self.partial[stream] = data[end + 1 :]
        for raw in data[: end + 1].splitlines():
            line = raw.decode("utf-8", "replace")
            self.pending_logs[stream].append(line)
            if stream == "stdout":
                metric = self.metrics.parse(line)
                if metric:
                    self.events.write("metric", **metric)
                    self._check_early_stop(metric)

    def _flush_logs(self) -> None:
        for stream, lines in self.pending_logs.items():
            if not lines:
                continue
            text = "\n".join(lines) + "\n"
            if len(text) > LOG_EVENT_MAX_CHARS:  # the whole output stays in stdout.log
                text = (
                    f"[... {len(text) - LOG_EVENT_MAX_CHARS} characters not streamed]\n"
                    + text[-LOG_EVENT_MAX_CHARS:]
                )
            self.events.write("log", stream=stream, text=text)
            lines.clear()
        self.stdout_log.flush()

    def _tail_runtime(self) -> None:
        for record in self.runtime.read():
            kind = record.pop("type", None)
            if kind in ("metric", "checkpoint", "warning"):
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
            "warning",
            message=(
                f"early stop at step {detail['step']}: {detail['metric']} did not improve on "
                f"{detail['best']:.6g} (step {detail['best_step']}) for {detail['patience']} values"
            ),
            code="early-stop",
            **detail,
        )
        self.request_stop("early-stop")

    # -- stop and limits ------------------------------------------------------------
    def request_stop(self, reason: str, force: bool = False) -> None:
        if getattr(self, "child", None) is None or self.child.poll() is not None:
            self.stop_reason = self.stop_reason or reason
            return
        if self.stop_reason is None:
            self.stop_reason = reason
            self._signal_child(signal.SIGTERM)
            self.kill_at = time.monotonic() + self.grace
        if force:
            self.kill_at = time.monotonic()

    def _signal_child(self, sig: int) -> None:
        try:
            os.killpg(self.child.pid, sig)
        except ProcessLookupError:
            pass

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signaled = True

    def _check_control(self) -> None:
        path = self.run_dir / "control.json"
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return
        if mtime == self.control_mtime:
            return
        self.control_mtime = mtime
        try:
            control = json.loads(path.read_text())
        except ValueError:
            return
        if control.get("stop"):
            self.request_stop(control.get("reason") or "user", force=bool(control.get("force")))

    def _check_limits(self) -> None:
        if self.deadline is not None and time.time() >= self.deadline:
            self.deadline = None
            self.events.write(
                "warning", message="--max-hours reached: stopping the run", code="max-hours"
            )
            self.request_stop("max-hours")
        if self.kill_at is not None and time.monotonic() >= self.kill_at:
            self.kill_at = None
            self._signal_child(signal.SIGKILL)

    def _sync_tick(self) -> None:
        try:
            self.sync.tick()
        except Exception as exc:  # noqa: BLE001 - a sync hiccup must not end the training
            self.events.write("warning", message=f"sync failed, will retry: {exc}", code="sync")

    # -- the end --------------------------------------------------------------------
    def _exit(self, returncode: int) -> int:
        if self.spec.get("distributed") and self.stop_reason is not None:
            from .torchrun import stopped_code

            returncode = stopped_code(returncode, self.run_dir)  # torchrun says 1 when stopped
        resumed = self.spot.on_exit(returncode)  # after a spot notice: the next attempt
        if resumed is not None:
            return resumed
        error = None
        error_file = self.run_dir / f"error-{self.attempt}.json"
        if self.spec.get("distributed") and returncode and self.stop_reason is None:
            from .torchrun import write_error

            write_error(
                self.run_dir, self.attempt
            )  # the failed rank's error, from torchrun's report
        if self.stop_reason is not None:
            status, reason = "stopped", self.stop_reason
        elif returncode == 0:
            status, reason = "succeeded", None
        elif returncode < 0:
            name = signal.Signals(-returncode).name
            status, reason = "failed", "signal"
            error = {
                "type": name,
                "message": f"the training process was killed by {name}",
                "traceback": "",
            }
        else:
            status, reason = "failed", "exception"
            if error_file.exists():
                error = json.loads(error_file.read_text())
            else:
                error = {
                    "type": "ExitCode",
                    "message": f"the code exited with status {returncode}",
                    "traceback": "",
                }
        return self._finish(status, reason, returncode, error)

    def _finish(
        self, status: str, reason: str | None, returncode: int | None, error: dict | None
    ) -> int:
        final = {
            "status": status,
            "reason": reason,
            "exit_code": returncode,
            "error": error,
            "duration": round(time.time() - self.started, 3),
        }
        if self.stop_detail and status == "stopped":
            final.update(self.stop_detail)
        self.cost.final()
        self.events.flush()
        try:
            from ..record import write_record

            write_record(self.run_dir, final)
        except Exception as exc:  # noqa: BLE001 - a broken record must not lose the exit event
            self.events.write(
                "warning", message=f"could not write record.ipynb: {exc}", code="record"
            )
        self.events.write("exit", **final)
        self.events.close()
        if getattr(self, "stdout_log", None):
            self.stdout_log.close()
        if self.sync is not None:
            self.sync.final()
        return 0 if status == "succeeded" else 1


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
    return Agent(run_dir, attempt).run()

