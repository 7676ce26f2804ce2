"""The in-run `runctl` object: log metrics, save and load checkpoints, see Stop.

    from runctl_jupyter.runtime import runctl
    runctl.log(step=3, loss=0.21, acc=0.93)

Stdlib only, and cheap: `log` is one buffered line write to this process's own
file (`runtime/<attempt>-<pid>.jsonl`), which the agent tails (docs/events.md).
With no run around it (plain Python, a notebook without runctl) the same calls
only print, so code runs unchanged outside runctl.
"""

from __future__ import annotations

import atexit
import json
import os
import pickle
import shutil
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .errors import RunctlError
from .events import checkpoint_problem
from .registry import RunModels, write_artifact

FLUSH_SECONDS = 0.05
_encode = json.JSONEncoder(separators=(",", ":")).encode


class RunStopped(BaseException):
    """Raised in code that never checks `runctl.should_stop` when the run is stopped.

    A BaseException, like KeyboardInterrupt, so `except Exception` in training code
    does not swallow a Stop.
    """


class CheckpointError(RunctlError):
    """A checkpoint could not be written (disk full, a file size limit, ...); the
    earlier checkpoints are intact."""


def _number(name: str, value: Any) -> float:
    try:
        return float(value)  # numpy and torch scalars, Decimal, bool
    except (TypeError, ValueError):
        raise TypeError(
            f"runctl.log({name}=...) needs a number, got {type(value).__name__}; "
            f"log numbers only (e.g. {name}=float(x))"
        ) from None


class Runtime(RunModels):
    """What training code sees as `runctl` (one per process)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env: Mapping[str, str] = os.environ if environ is None else environ
        run_dir = env.get("RUNCTL_RUN_DIR")
        self.run_dir: Path | None = Path(run_dir) if run_dir else None
        self.run_id: str | None = env.get("RUNCTL_RUN_ID") or (
            self.run_dir.name if self.run_dir else None
        )
        self.attempt = int(env.get("RUNCTL_ATTEMPT", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.world_size = int(env.get("WORLD_SIZE", "1"))
        self._params: dict[str, Any] | None = None
        self._step = -1
        self._out: BinaryIO | None = None
        self._queue: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()
        self._flusher_started = False
        self._stop_requested = False
        self._stop_checked = False
        self._on_stop: list[Callable[[], Any]] = []
        self._state_fn: Callable[[], Any] | None = None  # register_checkpoint
        self._digests: dict[str, str] = {}  # the sha256 of each checkpoint saved here
        self._options: dict[str, Any] | None = None
        self._saved_step: int | None = None
        self._saved_at = time.monotonic()
        self._stop_saved = False

    # -- facts ---------------------------------------------------------------
    @property
    def active(self) -> bool:
        """True inside a run started by runctl."""
        return self.run_dir is not None

    @property
    def data_dir(self) -> Path | None:
        """The run's data volume (`--data-size`, `--volume`): RUNCTL_DATA_DIR, else None."""
        path = os.environ.get("RUNCTL_DATA_DIR")
        return Path(path) if path else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def params(self) -> dict[str, Any]:
        """The run's hyperparameters ({} outside a run)."""
        if self._params is None:
            self._params = {}
            if self.run_dir is not None:
                try:
                    self._params = json.loads((self.run_dir / "params.json").read_text())
                except FileNotFoundError:
                    pass
        return dict(self._params)

    def use_params(self, params: Mapping[str, Any]) -> None:
        """Set `runctl.params` by hand, e.g. when a record notebook is rerun without runctl."""
        self._params = dict(params)

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.run_dir / "checkpoints" if self.run_dir is not None else None

    @property
    def should_stop(self) -> bool:
        """True once the run is asked to stop (Stop, spot notice, a limit). Check it
        between steps, save a checkpoint and return."""
        self._stop_checked = True
        if self._stop_requested:
            self._save_state_on_stop()
        return self._stop_requested

    # -- metrics -------------------------------------------------------------
    def log(
        self,
        step: int | None = None,
        total: int | None = None,
        all_ranks: bool = False,
        **values: Any,
    ) -> None:
        """Record metrics for a step (default: the previous step + 1). In a distributed
        run only rank 0's are kept, unless `all_ranks=True`: then every rank's are, as
        `name/rank<N>` for ranks other than 0 (docs/distributed.md)."""
        if step is None:
            step = self._step + 1
        self._step = step
        for name, value in values.items():
            if type(value) is not float and type(value) is not int:
                values[name] = _number(name, value)
        if self.run_dir is None:
            shown = " ".join(f"{k}={v:.6g}" for k, v in values.items())
            print(f"step {step}: {shown}")
            return
        if self.rank != 0:
            if all_ranks:
                values = {f"{k}/rank{self.rank}": v for k, v in values.items()}
                self._write({"t": time.time(), "type": "metric", "step": step, "rank": self.rank, "values": values})  # fmt: skip
            return
        record = {"t": time.time(), "type": "metric", "step": step, "values": values}
        if total is not None:
            record["total"] = int(total)
        self._write(record)
        if self._state_fn is not None:
            self._checkpoint_if_due(step)

    # -- checkpoints -----------------------------------------------------------
    def save_checkpoint(self, obj: Any, step: int | None = None) -> Path | None:
        """Save a checkpoint: any picklable object, or the path of a file or folder
        (copied). Only rank 0 writes. Returns where it went."""
        step = max(self._step, 0) if step is None else int(step)
        if self.run_dir is None:
            print(f"checkpoint at step {step} (not saved: no runctl run)")
            return None
        if self.rank != 0:
            return None
        folder = self.run_dir / "checkpoints"
        name = f"step-{step:08d}"
        try:
            target, size = self._write_checkpoint(folder, name, obj)
        except OSError as exc:
            for tmp in (folder / f".{name}.tmp", folder / f".{name}.pkl.tmp"):
                if tmp.is_dir():
                    shutil.rmtree(tmp, ignore_errors=True)
                else:
                    tmp.unlink(missing_ok=True)
            previous = self.latest_checkpoint()
            kept = f"{previous.name} is intact" if previous else "there is no earlier checkpoint"
            raise CheckpointError(
                f"could not write checkpoint {name} ({exc.strerror or exc}): {kept}; "
                "free disk space (or raise the file size limit), then `runctl resume "
                f"{self.run_id}` continues from the latest checkpoint"
            ) from None
        self._saved_step, self._saved_at = step, time.monotonic()
        rel = target.relative_to(self.run_dir).as_posix()
        record = {"t": time.time(), "type": "checkpoint", "step": step, "path": rel, "bytes": size}
        if rel in self._digests:
            record["sha256"] = self._digests[rel]
        pruned = self._prune_checkpoints()
        if pruned:  # readers drop these from the run's checkpoints (docs/events.md)
            record["pruned"] = pruned
        self._write(record)
        self.flush()
        return target

    def _write_checkpoint(self, folder: Path, name: str, obj: Any) -> tuple[Path, int]:
        target, size, sha256 = write_artifact(folder, name, obj)
        if sha256 is not None and self.run_dir is not None:  # its event's: restores check it
            self._digests[target.relative_to(self.run_dir).as_posix()] = sha256
        return target, size

    def _prune_checkpoints(self) -> list[str]:
        """`--keep-checkpoints K`: only the K newest checkpoints stay (rank 0 writes).
        Returns the paths (relative to the run folder) that are gone now."""
        keep = self._option("keep_checkpoints")
        run_dir = self.run_dir
        if not keep or run_dir is None:
            return []
        folder = run_dir / "checkpoints"
        found = sorted(p for p in folder.iterdir() if p.name.startswith("step-"))
        pruned = []
        for old in found[: -int(keep)]:
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
            if not old.exists():
                pruned.append(old.relative_to(run_dir).as_posix())
        return pruned

    # -- registered state ----------------------------------------------------------
    def register_checkpoint(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Register a function returning the state to checkpoint (any picklable
        object). runctl saves it right after a `runctl.log` call every
        `--checkpoint-every` N steps or minutes, and when the run is asked to stop
        (Stop, a spot notice): at the next `runctl.log` or `runctl.should_stop`,
        i.e. at a step boundary. Call `runctl.log` at the end of each step. Usable
        as a decorator; returns `fn`."""
        if not callable(fn):
            raise TypeError("runctl.register_checkpoint(fn) needs a function returning the state")
        self._state_fn = fn
        if self.run_dir is not None:
            latest = self.latest_checkpoint()
            if latest is not None and self._saved_step is None:
                try:
                    self._saved_step = int(latest.name[5:13])
                except ValueError:
                    pass
        return fn

    def _option(self, name: str) -> Any:
        if self._options is None:
            self._options = {}
            if self.run_dir is not None:
                try:
                    spec = json.loads((self.run_dir / "spec.json").read_text())
                    self._options = dict(spec.get("options") or {})
                except (OSError, ValueError):
                    pass
        return self._options.get(name)

    def _checkpoint_if_due(self, step: int) -> None:
        if self._stop_requested:
            self._save_state_on_stop()
            if not self._stop_checked:  # the code never looks at should_stop: stop it here
                raise RunStopped("the run was asked to stop")
            return
        every = self._option("checkpoint_every")
        if not isinstance(every, dict) or self.rank != 0:
            return
        if every.get("unit") == "minutes":
            due = time.monotonic() - self._saved_at >= float(every["every"]) * 60
        else:
            last = -1 if self._saved_step is None else self._saved_step
            due = step - last >= int(every["every"])
        if due and self._state_fn is not None:
            self.save_checkpoint(self._state_fn(), step=step)

    def _save_state_on_stop(self) -> None:
        if self._stop_saved or self._state_fn is None or self.run_dir is None or self.rank != 0:
            return
        self._stop_saved = True
        if self._saved_step == max(self._step, 0) and self._step >= 0:
            return  # this step's state is saved already
        self.save_checkpoint(self._state_fn())

    def load_checkpoint(self) -> Any:
        """The latest checkpoint (after a resume too), or None if there is none.

        A pickled object comes back as the object; a saved file or folder as its
        path inside the run's checkpoint folder."""
        latest = self.latest_checkpoint()
        if latest is None:
            return None
        if latest.suffix == ".pkl":
            run_dir = self.run_dir or latest.parent.parent  # latest_checkpoint needs a run
            problem = checkpoint_problem(run_dir, latest, self._digests)
            if problem:
                raise CheckpointError(problem)
            with open(latest, "rb") as f:
                return pickle.load(f)
        entries = sorted(latest.iterdir())
        return entries[0] if len(entries) == 1 else latest

    def latest_checkpoint(self) -> Path | None:
        folder = self.checkpoint_dir
        if folder is None or not folder.is_dir():
            return None
        found = [p for p in folder.iterdir() if p.name.startswith("step-")]
        return max(found, key=lambda p: p.name) if found else None

    # -- stop ------------------------------------------------------------------
    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Call `callback` (e.g. to save a checkpoint) when the run is asked to stop."""
        self._on_stop.append(callback)

    def _handle_stop_signal(self, signum: int, frame: Any) -> None:
        first = not self._stop_requested
        self._stop_requested = True
        if first:
            for callback in self._on_stop:
                callback()
        self.flush()
        if not self._stop_checked and (self._state_fn is None or self.rank != 0):
            # The code never looks at should_stop: stop it now rather than after the grace period
            # (with a registered checkpoint: at the next runctl.log, after saving it).
            raise RunStopped("the run was asked to stop")

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self._handle_stop_signal)

    # -- output ----------------------------------------------------------------
    # `log` only appends the encoded line to a deque (thread-safe, no lock, no I/O);
    # a daemon thread drains it to this process's own file every FLUSH_SECONDS, so
    # a training step never waits on the disk, nor on a flush in progress.
    def _write(self, record: dict[str, Any]) -> None:
        if self._out is None:
            self._open()
        self._queue.append((_encode(record) + "\n").encode())

    def _open(self) -> None:
        with self._lock:
            if self._out is None:
                assert self.run_dir is not None, "only a run writes its runtime file"
                folder = self.run_dir / "runtime"
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{self.attempt}-{os.getpid()}.jsonl"
                self._out = open(path, "ab", buffering=0)
                if not self._flusher_started:
                    self._flusher_started = True
                    atexit.register(self.flush)
                    os.register_at_fork(after_in_child=self._forget_output)
                threading.Thread(target=self._flush_loop, name="runctl-flush", daemon=True).start()

    def _forget_output(self) -> None:
        """In a forked child (e.g. a data-loader worker): its own file and flusher."""
        self._out = None
        self._queue = deque()
        self._lock = threading.Lock()
        self._drain_lock = threading.Lock()

    def _flush_loop(self) -> None:
        out = self._out
        while self._out is out:
            time.sleep(FLUSH_SECONDS)
            self.flush()

    def flush(self) -> None:
        """Write every queued line now (also at exit, on Stop, after a checkpoint)."""
        queue = self._queue
        if not queue or self._out is None:
            return
        with self._drain_lock:  # one drainer at a time keeps the lines in order
            chunks = []
            while queue:
                chunks.append(queue.popleft())
            try:
                self._out.write(b"".join(chunks))
            except ValueError:  # closed at interpreter exit
                pass


runctl = Runtime()

__all__ = ["runctl", "Runtime", "RunStopped", "CheckpointError"]
