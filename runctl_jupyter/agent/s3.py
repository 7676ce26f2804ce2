"""The agent's S3 sync (on EC2): events as append-only numbered chunks, logs, checkpoints.

Loaded by the agent when spec["sync"] = {"kind": "s3", "bucket", "prefix", "region", ...}:

    sync = Sync(run_dir, spec["sync"])
    sync.tick()    # every ~2 s from the agent loop; returns at once (a thread uploads)
    sync.final()   # after the exit event: uploads everything left, with retries

S3 layout under `<prefix>runs/<run_id>/`: `events/000001.jsonl`, `000002.jsonl`, ...
(each a run of complete event lines, never rewritten), `stdout.log`, `record.ipynb`,
`env.json`, `checkpoints/...`. A chunk is numbered and written to
`.sync/chunks/` on the instance's disk *before* it is uploaded, so a failed or
interrupted upload is retried with the same number and content: no chunk is lost
or duplicated, and a reader that lists keys after the last one it has never
misses one.

With `"team"` in the spec (docs/teams.md), the same sync publishes the run's spec,
summary row and index entries under `teams/<team>/<owner>/` (agent/team.py); a local
run published to its team syncs with `team.local_sync_cfg` (`from_start`: every event,
`checkpoints: false`, its own `state_dir`).

Upload pacing keeps the reader's cost low (docs/aws.md): status, checkpoint,
warning, interrupt and exit events go out at the next tick, the first metric of
an attempt too; other metrics and logs at most every `interval` seconds (15);
heartbeat-only chunks every `heartbeat_interval` seconds (20).

The instance-side service around the agent (prepare, restore, the end of an
attempt) is `agent/service.py`.

This module imports boto3 lazily: only the agent's sync needs it.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .clients import make_s3_client

SYNC_DIR = ".sync"
URGENT = frozenset({"status", "checkpoint", "warning", "interrupt", "exit", "cost"})
CHUNK_DIGITS = 6
RETRY_MAX_SECONDS = 30.0
FINAL_DEADLINE_SECONDS = 600.0


def chunk_key(run_prefix: str, number: int) -> str:
    return f"{run_prefix}events/{number:0{CHUNK_DIGITS}d}.jsonl"


def run_prefix(cfg: dict, run_id: str) -> str:
    prefix = cfg.get("prefix", "runctl/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    from ..distributed import node_folder  # another node of a multi-node run: its own place

    return f"{prefix}runs/{run_id}/{node_folder()}"


class Sync:
    """Uploads a run folder's new events, output and checkpoints to S3."""

    def __init__(self, run_dir: str | os.PathLike, cfg: dict, client: Any = None):
        self.run_dir = Path(run_dir)
        self.cfg = cfg
        self.bucket = cfg["bucket"]
        spec = json.loads((self.run_dir / "spec.json").read_text())
        self.run_id = spec["run_id"]
        self.prefix = run_prefix(cfg, self.run_id)
        self.interval = float(cfg.get("interval", 15.0))
        self.heartbeat_interval = float(cfg.get("heartbeat_interval", 20.0))
        self.log_interval = float(cfg.get("log_interval", 30.0))
        self.s3: Any = client  # else made by the uploader thread (boto3's import: seconds)
        self.dir = self.run_dir / cfg.get("state_dir", SYNC_DIR)
        (self.dir / "chunks").mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        # what the events file holds now is the agent's start line: the thread may list S3
        # after the agent wrote more (issue 19: the runner starts before boto3 is loaded)
        self.state: dict = self._read_state() or {}
        events = self.run_dir / "events.jsonl"
        self._offset0 = events.stat().st_size if events.exists() else 0
        if cfg.get("from_start"):  # a local run: nothing of it is in S3 yet
            self._offset0 = 0
        self._ready = threading.Event()
        self._spec = spec
        self.publisher: Any = None  # the team store's (agent/team.py), made with the client
        self.uploads = 0
        self.failures = 0
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._retry_at = 0.0
        self._backoff = 1.0
        self._last_chunk_at = 0.0
        self._last_log_at = 0.0
        self._sent_metric = False
        self._scanned = 0  # bytes past the offset already looked at
        self._types: set = set()  # event types in them
        self._thread = threading.Thread(target=self._loop, name="runctl-s3-sync", daemon=True)
        self._thread.start()

    def _publisher(self, spec: dict) -> Any:
        from ..distributed import node_folder

        if not spec.get("team") or node_folder():  # node 0 alone speaks for the run
            return None
        from .team import Publisher

        saved = self.state.get("team")
        publisher = Publisher(self.s3, spec, self.prefix + "events/", saved)
        if saved is None and self.state["offset"]:  # a new instance: the events it came with
            with open(self.run_dir / "events.jsonl", "rb") as f:
                publisher.summary.feed(f.read(self.state["offset"]))
        self.state["team"] = publisher.state
        return publisher

    def _publish(self, final: bool) -> bool:
        if self.publisher is None:
            return True
        try:
            self.publisher.s3 = self._client()  # None when its making failed at the start
            self.publisher.publish(final)
        except Exception as exc:  # noqa: BLE001 - retried at the next round
            self.failures += 1
            self.last_error = f"team: {type(exc).__name__}: {exc}"
            code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code")
            if code in ("AccessDenied", "NoSuchBucket", "AllAccessDisabled"):
                # never retried: the run goes on unpublished (a kept instance's shared role)
                sys.stderr.write(f"runctl sync: not published to the team: {self.last_error}\n")
                self.publisher = None
                return True
            return False
        self._save()
        return True

    # -- state -----------------------------------------------------------------
    def _read_state(self) -> dict | None:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def _start(self) -> None:
        """The uploader thread's first step: the S3 client and, on a new instance, the state."""
        try:
            if self.s3 is None:
                self.s3 = make_s3_client(self.cfg.get("region"), self.cfg.get("profile"))
        except Exception as exc:  # noqa: BLE001 - each upload tries again (_put)
            self.last_error = f"S3 client: {type(exc).__name__}: {exc}"
        if not self.state:
            self.state = self._new_state(self._offset0)
        self.publisher = self._publisher(self._spec)
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once the client and the state are there (the thread's first step)."""
        return self._ready.wait(timeout)

    def _new_state(self, offset: int) -> dict:
        # A new instance (first attempt, or a resume elsewhere): what the events file
        # held at the start came with the bundle and is already in S3; go on after the
        # last chunk.
        last = 0
        try:
            resp = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{self.prefix}events/")
            for obj in resp.get("Contents", []):
                name = obj["Key"].rsplit("/", 1)[-1].split(".", 1)[0]
                if name.isdigit():
                    last = max(last, int(name))
            while resp.get("IsTruncated"):
                resp = self.s3.list_objects_v2(
                    Bucket=self.bucket,
                    Prefix=f"{self.prefix}events/",
                    ContinuationToken=resp["NextContinuationToken"],
                )
                for obj in resp.get("Contents", []):
                    name = obj["Key"].rsplit("/", 1)[-1].split(".", 1)[0]
                    if name.isdigit():
                        last = max(last, int(name))
        except Exception:  # noqa: BLE001 - no listing (or no client): start after what we know
            pass
        state = {
            "offset": offset,
            "next": last + 1,
            "pending": [],
            "checkpoints": {},
            "log_size": -1,
        }
        self._save(state)
        return state

    def _save(self, state: dict | None = None) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state if state is not None else self.state))
        os.replace(tmp, self.state_path)

    # -- the agent's calls -------------------------------------------------------
    def tick(self) -> None:
        """Wake the uploader; never blocks the agent loop."""
        self._wake.set()

    def fetch(self, key: str) -> bytes:
        """An object of the run's bucket: a dev run's changed files (agent/restart.py)."""
        self.wait_ready()
        return self._client().get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def final(self, deadline: float = FINAL_DEADLINE_SECONDS) -> bool:
        """Upload everything (events, log, record, env, checkpoints); True when all is in S3."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
        deadline = float(self.cfg.get("final_deadline", deadline))  # a local team run: short
        if not self._ready.is_set():  # the thread is stuck in its start: do it here
            self._start()
        end = time.monotonic() + deadline
        delay = 0.5
        while True:
            done = self._step(force=True)
            if done:
                return True
            if time.monotonic() > end:
                # the files keep failing: the events (the exit above all) must still go up
                with self._lock:
                    self._cut_chunk(True)
                    self._upload_pending()
                sys.stderr.write(
                    f"runctl sync: gave up after {deadline:.0f} s: {self.last_error}\n"
                )
                return False
            time.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    # -- the uploader ------------------------------------------------------------
    def _loop(self) -> None:
        self._start()
        while not self._stop.is_set():
            if time.monotonic() < self._retry_at:
                self._wake.wait(timeout=min(0.5, self.interval))
                self._wake.clear()
                continue
            try:
                ok = self._step(force=False)
            except Exception as exc:  # noqa: BLE001 - the thread must survive anything
                ok = False
                self.last_error = f"{type(exc).__name__}: {exc}"
            if ok:
                self._backoff = 1.0
            else:
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(self._backoff * 2, RETRY_MAX_SECONDS)
            # also look on our own twice a second: urgent events go out without waiting
            # for the agent's next tick (reading the file's new bytes costs no API call);
            # the first look is right after the start (the first metric may be there)
            self._wake.wait(timeout=min(0.5, self.interval))
            self._wake.clear()

    def _step(self, force: bool) -> bool:
        """One round; True when nothing failed."""
        with self._lock:
            ok = True
            if not force:
                self._cut_chunk(force)
                ok &= self._upload_pending() and self._publish(final=False)
            if self.cfg.get("checkpoints", True):
                ok &= self._upload_checkpoints(force)
                ok &= self._upload_checkpoints(force, "models")  # runctl.register_model's files
            now = time.monotonic()
            if force or now - self._last_log_at >= self.log_interval:
                ok &= self._upload_file("stdout.log", only_if_grown=True)
                self._last_log_at = now
            if force:
                # interruptions.json: a replacement instance counts --max-interruptions on
                for name in ("record.ipynb", "env.json", "output.ipynb", "interruptions.json"):
                    ok &= self._upload_file(name)
                # the exit event goes last: a reader that sees it finds the log,
                # record and checkpoints already in S3
                self._cut_chunk(force)
                ok &= ok and self._upload_pending() and self._publish(final=True)
            return ok

    def _cut_chunk(self, force: bool) -> None:
        """Number the new complete event lines as the next chunk, on disk first."""
        path = self.run_dir / "events.jsonl"
        try:
            with open(path, "rb") as f:
                f.seek(self.state["offset"])
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        data = data[: end + 1]
        now = time.monotonic()
        if not force:
            # only the bytes not looked at yet are parsed (a busy run writes many lines)
            for line in data[self._scanned :].splitlines():
                try:
                    self._types.add(json.loads(line).get("type"))
                except ValueError:
                    continue
            self._scanned = len(data)
            types = self._types
            if "exit" in types:
                return  # final() sends it, after the log, record and checkpoints
            urgent = bool(types & URGENT) or ("metric" in types and not self._sent_metric)
            wait = self.heartbeat_interval if types <= {"heartbeat"} else self.interval
            if not urgent and now - self._last_chunk_at < wait:
                return
            if "metric" in types:
                self._sent_metric = True
        number = self.state["next"]
        chunk = self.dir / "chunks" / f"{number:0{CHUNK_DIGITS}d}.jsonl"
        chunk.write_bytes(data)
        if self.publisher is not None:
            self.publisher.summary.feed(data)
        self._scanned = 0
        self._types = set()
        self.state["offset"] += len(data)
        self.state["next"] = number + 1
        self.state["pending"].append(number)
        self._save()
        self._last_chunk_at = now

    def _client(self) -> Any:
        if self.s3 is None:  # its making failed at the start: try again
            self.s3 = make_s3_client(self.cfg.get("region"), self.cfg.get("profile"))
        return self.s3

    def _put(self, key: str, path: Path) -> bool:
        try:
            size = path.stat().st_size
            if size > 64 * 1024 * 1024:
                self._client().upload_file(str(path), self.bucket, key)
            else:
                with open(path, "rb") as f:
                    self._client().put_object(Bucket=self.bucket, Key=key, Body=f.read())
            self.uploads += 1
            return True
        except FileNotFoundError:
            return True
        except Exception as exc:  # noqa: BLE001 - retried by the caller
            self.failures += 1
            self.last_error = f"{key}: {type(exc).__name__}: {exc}"
            return False

    def _upload_pending(self) -> bool:
        while self.state["pending"]:
            number = self.state["pending"][0]
            chunk = self.dir / "chunks" / f"{number:0{CHUNK_DIGITS}d}.jsonl"
            if not self._put(chunk_key(self.prefix, number), chunk):
                return False  # keep order: a reader lists keys after the last one it has
            self.state["pending"].pop(0)
            self._save()
            chunk.unlink(missing_ok=True)
        return True

    def _upload_file(self, name: str, only_if_grown: bool = False) -> bool:
        path = self.run_dir / name
        if not path.exists():
            return True
        if only_if_grown:
            size = path.stat().st_size
            if size == self.state.get("log_size"):
                return True
            if self._put(self.prefix + name, path):
                self.state["log_size"] = size
                self._save()
                return True
            return False
        return self._put(self.prefix + name, path)

    def _upload_checkpoints(self, force: bool = False, folder: str = "checkpoints") -> bool:
        root = self.run_dir / folder
        if not root.is_dir():
            return True
        ok = True
        done: dict = self.state.setdefault("checkpoints", {})
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            rel = path.relative_to(self.run_dir).as_posix()
            if any(part.startswith(".") for part in path.relative_to(root).parts):
                continue  # a checkpoint being written (.step-....tmp)
            st = path.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
            if done.get(rel) == stamp or (not force and time.time() - st.st_mtime < 1.0):
                continue  # uploaded already, or still being written
            if self._put(self.prefix + rel, path):
                done[rel] = stamp
                self._save()
            else:
                ok = False
        return ok
