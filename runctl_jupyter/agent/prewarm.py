"""`--prewarm`: read every block of a volume restored from a snapshot once, before training.

A volume made from a snapshot fetches each block from S3 the first time it is read,
so the first epoch crawls (AWS docs, "Initialize Amazon EBS volumes": read every
block with `fio`, or `dd` where fio is missing). The agent does it after its
`starting` event and before the runner starts, in chunks (`fio --offset --size`, or
`dd skip= count=`), one `prewarm` event per few seconds with the bytes read, so the
panel shows it as a phase; heartbeats, the S3 sync and Stop go on meanwhile. A failed
read is a warning, not the end of the run (the data is still there, only slower).
An attempt after one that finished the read (a spot resume) does not read again.

Which device: `spec["data_device"]` (when prepare's mount records it), else the data
volume's (`spec["data_volume"]["id"]`, or the `--volume` id) by its NVMe serial, else the device mounted at `spec["data_mount"]`, read
from `<root>/proc/mounts` (`root`: "/" on an instance, a folder in the tests, as in
volume.py). Stdlib only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

MIB = 1 << 20
CHUNK = 1 << 30  # at most a GiB a fio/dd call, and about a tenth of the device
EVERY = 5.0  # seconds between progress events (and one at each tenth read)


def device_of(mount: str, root: str = "/") -> str | None:
    """The device mounted at `mount` (or at `root`/`mount`), from `root`/proc/mounts."""
    try:
        lines = Path(root, "proc", "mounts").read_text().splitlines()
    except OSError:
        return None
    wanted = {os.path.normpath(mount), os.path.normpath(os.path.join(root, mount.lstrip("/")))}
    for line in reversed(lines):  # the last mount over a path is the one in use
        parts = line.split()
        if len(parts) >= 2 and os.path.normpath(parts[1]) in wanted:
            return parts[0]
    return None


def prewarm_device(spec: dict, root: str = "/") -> str | None:
    if spec.get("data_device"):
        return str(spec["data_device"])
    volume = (spec.get("data_volume") or {}).get("id") or (spec.get("options") or {}).get("volume")
    if volume and str(volume).startswith("vol-"):
        from .volume import volume_device

        found = volume_device(str(volume), root, timeout=0)
        if found:
            return found
    return device_of(str(spec["data_mount"]), root) if spec.get("data_mount") else None


def device_bytes(device: str) -> int:
    """Its size: a block device's (or a file's) end."""
    fd = os.open(device, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def read_argv(tool: str, device: str, offset: int, length: int) -> list[str]:
    """One chunk's read, as AWS's "Initialize Amazon EBS volumes" page runs it."""
    if tool == "fio":
        return [
            "fio",
            f"--filename={device}",
            "--rw=read",
            "--bs=1M",
            "--iodepth=32",
            "--ioengine=libaio",
            "--direct=1",
            "--name=volume-initialize",
            f"--offset={offset}",
            f"--size={length}",
        ]
    return [
        "dd",
        f"if={device}",
        "of=/dev/null",
        "bs=1M",
        f"skip={offset // MIB}",
        f"count={-(-length // MIB)}",
    ]


class Prewarm:
    """The read in a thread, chunk by chunk; `done` bytes so far, `error` if it failed;
    `progress` the byte counts to report (each tenth of the device, or EVERY seconds)."""

    def __init__(self, device: str, chunk: int = CHUNK, tool: str | None = None):
        from collections import deque

        self.device = device
        self.tool = tool or ("fio" if shutil.which("fio") else "dd")
        self.total = device_bytes(device)
        tenth = self.total // 10 - (self.total // 10) % MIB
        self.chunk = max(MIB, min(chunk - chunk % MIB, tenth))
        self.done = 0
        self.progress: deque[int] = deque()
        self.error: str | None = None
        self.finished = threading.Event()
        self._cancel = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._read, daemon=True, name="prewarm")

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._thread.join(timeout=10)

    def _read(self) -> None:
        said = time.monotonic()
        try:
            offset = 0
            while offset < self.total and not self._cancel.is_set():
                length = min(self.chunk, self.total - offset)
                argv = read_argv(self.tool, self.device, offset, length)
                self._proc = subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
                )
                _, err = self._proc.communicate()
                if self._proc.returncode and not self._cancel.is_set():
                    last = (err.decode(errors="replace").strip().splitlines() or ["?"])[-1]
                    self.error = f"{self.tool} exited {self._proc.returncode}: {last}"
                    return
                offset += length
                self.done = offset
                if offset < self.total and (
                    offset * 10 // self.total > (offset - length) * 10 // self.total
                    or time.monotonic() - said >= EVERY
                ):
                    self.progress.append(offset)
                    said = time.monotonic()
        except OSError as exc:
            self.error = f"{self.tool}: {exc}"
        finally:
            self.finished.set()


def already_read(run_dir: Path, device: str) -> int | None:
    """The attempt that finished reading this device already, if any (a spot resume)."""
    from ..events import read_events

    events, _ = read_events(run_dir / "events.jsonl")
    for event in events:
        if event.get("type") == "prewarm" and event.get("state") == "done":
            if event.get("device") == device:
                return int(event.get("attempt") or 0)
    return None


def prewarm(agent: Any, root: str = "/") -> bool:
    """Read the data volume once before the runner starts; False when a stop came first."""
    device = prewarm_device(agent.spec, root)
    write = agent.events.write
    if device is None:
        write("warning", message="--prewarm: no data volume found to read", code="prewarm")
        return True
    earlier = already_read(agent.run_dir, device)
    if earlier:
        write("prewarm", state="skipped", device=device, read_in_attempt=earlier)
        return True
    try:
        job = Prewarm(device)
    except OSError as exc:
        write("warning", message=f"--prewarm: cannot open {device}: {exc}", code="prewarm")
        return True
    started = time.monotonic()
    write("prewarm", state="reading", device=device, tool=job.tool, bytes=0, total=job.total)
    job.start()
    return _follow(agent, job, started)


def _follow(agent: Any, job: Prewarm, started: float) -> bool:
    """The agent's loop while the volume is read: heartbeats, Stop, the sync, progress."""
    write = agent.events.write
    last_beat = last_sync = time.monotonic()
    while not job.finished.wait(0.2) or job.progress:
        now = time.monotonic()
        if now - last_beat >= agent.heartbeat_every:
            write("heartbeat", pid=os.getpid())
            last_beat = now
        agent._check_control()
        if agent.signaled and agent.stop_reason is None:
            agent.request_stop("user")
        if agent.stop_reason is not None:
            job.cancel()
            write("prewarm", state="stopped", device=job.device, bytes=job.done, total=job.total)
            return False
        while job.progress:
            done = job.progress.popleft()
            write("prewarm", state="reading", device=job.device, bytes=done, total=job.total)
        agent.events.flush()
        if agent.sync is not None and now - last_sync >= agent.sync_every:
            agent._sync_tick()
            last_sync = now
    seconds = round(time.monotonic() - started, 3)
    if job.error:
        write("prewarm", state="failed", device=job.device, bytes=job.done, total=job.total)
        write(
            "warning",
            message=f"--prewarm of {job.device} failed ({job.error}): training starts anyway",
            code="prewarm",
        )
        return True
    write(
        "prewarm",
        state="done",
        device=job.device,
        tool=job.tool,
        bytes=job.done,
        total=job.total,
        seconds=seconds,
    )
    agent.events.flush()
    return True
