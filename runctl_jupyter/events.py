"""The event stream (docs/events.md): one JSON object a line, numbered by `seq`.

Stdlib only: the agent ships this module to the machine that runs the code.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

FORMAT = 1
EVENTS_FILE = "events.jsonl"

FINAL_STATUSES = frozenset({"succeeded", "failed", "stopped"})
ACTIVE_STATUSES = frozenset(
    {"queued", "provisioning", "starting", "running", "interrupted", "resuming"}
)
ALL_STATUSES = ACTIVE_STATUSES | FINAL_STATUSES | {"lost"}
# A run is lost after this many seconds with no sign of life (config `lost_timeout`'s
# default; agent/fired.py's overlap check), this many times longer while an instance
# boots (store/lost.py; docs/events.md).
LOST_TIMEOUT = 60.0
PROVISIONING_TIMEOUT_FACTOR = 10.0


# metric names that say smaller is better; any other metric is maximised
LOWER_BETTER = (
    "loss",
    "err",
    "mse",
    "mae",
    "rmse",
    "perplexity",
    "ppl",
    "cost",
    "time",
    "latency",
    "wer",
    "cer",
)


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of `metric` are better, judged by its name."""
    name = metric.lower()
    return any(word in name for word in LOWER_BETTER)


def read_events(path: str | os.PathLike, offset: int = 0) -> tuple[list[dict], int]:
    """Events from byte `offset` on, and the offset after the last complete line.

    A partial last line (the writer is mid-write) is left for the next read; a
    line that is not JSON is skipped rather than stopping every reader.
    """
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    try:  # fast path: every line at once as one JSON array (a JSON line holds no raw newline)
        parsed = json.loads(b"[" + data[:end].replace(b"\n", b",") + b"]")
        return [e for e in parsed if type(e) is dict and "seq" in e], offset + end + 1
    except ValueError:  # a bad or blank line somewhere: go line by line and skip it
        pass
    events = []
    for line in data[: end + 1].splitlines():
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "seq" in event:
            events.append(event)
    return events, offset + end + 1


def last_seq(path: str | os.PathLike) -> int:
    """The highest seq in a stream (0 if there is none): where a new attempt goes on."""
    events, _ = read_events(path)
    return max((e["seq"] for e in events), default=0)


def _tail_seq(f) -> int | None:  # noqa: ANN001 - a binary file opened for reading
    """The seq of the last complete event in the file's last 64 KiB, if any."""
    size = f.seek(0, os.SEEK_END)
    f.seek(max(0, size - 65536))
    for line in reversed(f.read().splitlines()):
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            return event["seq"]
    return None if size > 65536 else 0


def append_mirrored(path: str | os.PathLike, lines: list[str]) -> list[str]:
    """Append a remote run's event lines to its local mirror, only those newer than the
    mirror's last: two followers of one run in one home (two kernels, the Lab server)
    pull the same chunks. Returns the lines appended."""
    import fcntl

    with open(path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # released when the file closes
        top = _tail_seq(f)
        if top is None:
            top = last_seq(path)
        fresh = [line for line in lines if json.loads(line).get("seq", 0) > top]
        f.write("".join(fresh).encode())
    return fresh


class EventWriter:
    """The agent's writer: the only writer of a run's events.jsonl."""

    def __init__(self, run_dir: str | os.PathLike, attempt: int):
        self.path = Path(run_dir) / EVENTS_FILE
        self.attempt = attempt
        self.seq = last_seq(self.path)
        self._file = open(self.path, "a", encoding="utf-8", buffering=1 << 16)

    def write(self, type_: str, t: float | None = None, **fields) -> dict:
        self.seq += 1
        event = {
            "seq": self.seq,
            "t": time.time() if t is None else t,
            "type": type_,
            "attempt": self.attempt,
        }
        event.update(fields)
        self._file.write(json.dumps(event, separators=(",", ":"), default=str) + "\n")
        return event

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()


class Sha256Writer:
    """Writes to a file and keeps the sha256 of what went through (a checkpoint's digest)."""

    def __init__(self, f: Any) -> None:
        self.write_to, self.digest = f, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.write_to.write(data)

    def hexdigest(self) -> str:
        return self.digest.hexdigest()


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checkpoint_digests(lines: Iterable[bytes]) -> dict[str, str | None]:
    """{path: sha256} of the `checkpoint` events among these lines (None: an event
    from before runctl recorded digests); only lines that say "checkpoint" are parsed."""
    found: dict[str, str | None] = {}
    for line in lines:
        if b'"checkpoint"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "checkpoint":
            if isinstance(event.get("path"), str):
                found[event["path"]] = event.get("sha256")
    return found


def checkpoint_problem(
    run_dir: Path, path: Path, known: dict | None = None, rel: str | None = None
) -> str | None:
    """Why the pickled checkpoint at `path` (`rel` in the run folder) must not be loaded:
    the run's `checkpoint` event for it (or `known`, {rel: sha256}) recorded another
    sha256. None when it matches, or its event has no digest (a run from before runctl
    recorded them); with `rel` given (a file fetched from S3) no event is a problem too."""
    fetched = rel is not None
    rel = rel or Path(path).relative_to(run_dir).as_posix()
    known = known or {}
    if rel not in known:
        needle = json.dumps(rel).encode()
        try:
            with open(Path(run_dir) / EVENTS_FILE, "rb") as f:
                known = {**checkpoint_digests(x for x in f if needle in x), **known}
        except FileNotFoundError:
            pass
    expected = known.get(rel, False)
    if expected is False and fetched:
        return f"no checkpoint event of the run names {rel}: not restored"
    if expected and sha256_of(path) != expected:
        return (
            f"checkpoint {rel} does not match the sha256 its checkpoint event recorded: it "
            "changed after it was saved; not loading it (delete it to go on from the one before)"
        )
    return None
