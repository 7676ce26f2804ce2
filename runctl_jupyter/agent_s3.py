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

Upload pacing keeps the reader's cost low (docs/aws.md): status, checkpoint,
warning, interrupt and exit events go out at the next tick, the first metric of
an attempt too; other metrics and logs at most every `interval` seconds (15);
heartbeat-only chunks every `heartbeat_interval` seconds (20).

Also a small CLI the bootstrap script uses on the instance:

    python -m runctl_jupyter.agent_s3 prepare RUN_DIR
    python -m runctl_jupyter.agent_s3 service RUN_DIR --attempt N

This module imports boto3 lazily: only the agent's sync needs it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

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
    from .distributed import node_folder  # another node of a multi-node run: its own place

    return f"{prefix}runs/{run_id}/{node_folder()}"


def make_s3_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=60,
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": region}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.session.Session().client("s3", **kwargs)


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
        self.s3 = client or make_s3_client(cfg.get("region"))
        self.dir = self.run_dir / SYNC_DIR
        (self.dir / "chunks").mkdir(parents=True, exist_ok=True)
        self.state_path = self.dir / "state.json"
        self.state = self._load_state()
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

    # -- state -----------------------------------------------------------------
    def _load_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            pass
        # A new instance (first attempt, or a resume elsewhere): what the events file
        # holds now came with the bundle and is already in S3; go on after the last chunk.
        events = self.run_dir / "events.jsonl"
        offset = events.stat().st_size if events.exists() else 0
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
        except Exception:  # noqa: BLE001 - no listing: start after what we know
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

    def final(self, deadline: float = FINAL_DEADLINE_SECONDS) -> bool:
        """Upload everything (events, log, record, env, checkpoints); True when all is in S3."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)
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
        while not self._stop.is_set():
            # also look on our own twice a second: urgent events go out without waiting
            # for the agent's next tick (reading the file's new bytes costs no API call)
            self._wake.wait(timeout=min(0.5, self.interval))
            self._wake.clear()
            if self._stop.is_set():
                break
            if time.monotonic() < self._retry_at:
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

    def _step(self, force: bool) -> bool:
        """One round; True when nothing failed."""
        with self._lock:
            ok = True
            if not force:
                self._cut_chunk(force)
                ok &= self._upload_pending()
            ok &= self._upload_checkpoints(force)
            now = time.monotonic()
            if force or now - self._last_log_at >= self.log_interval:
                ok &= self._upload_file("stdout.log", only_if_grown=True)
                self._last_log_at = now
            if force:
                for name in ("record.ipynb", "env.json", "output.ipynb"):
                    ok &= self._upload_file(name)
                # the exit event goes last: a reader that sees it finds the log,
                # record and checkpoints already in S3
                self._cut_chunk(force)
                ok &= ok and self._upload_pending()
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
        self._scanned = 0
        self._types = set()
        self.state["offset"] += len(data)
        self.state["next"] = number + 1
        self.state["pending"].append(number)
        self._save()
        self._last_chunk_at = now

    def _put(self, key: str, path: Path) -> bool:
        try:
            size = path.stat().st_size
            if size > 64 * 1024 * 1024:
                self.s3.upload_file(str(path), self.bucket, key)
            else:
                with open(path, "rb") as f:
                    self.s3.put_object(Bucket=self.bucket, Key=key, Body=f.read())
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

    def _upload_checkpoints(self, force: bool = False) -> bool:
        root = self.run_dir / "checkpoints"
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


# -- the instance-side CLI the bootstrap script calls -------------------------------
def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> (bucket, prefix); ValueError for anything else."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise ValueError(f"--data must look like s3://bucket/prefix/, not {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"--data must name a bucket: s3://bucket/prefix/, not {url!r}")
    return bucket, prefix


def list_data(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    """(key, size, etag) of every object under the prefix (folder markers left out)."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                out.append((obj["Key"], int(obj["Size"]), obj.get("ETag", "").strip('"')))
    return out


def data_problems(entries: list[tuple[str, int, str]], url: str) -> str | None:
    """What `--validate-data` refuses: no files, or empty files (named)."""
    if not entries:
        return f"--validate-data: no files under {url}; check the prefix"
    empty = [k for k, size, _ in entries if size == 0]
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        return (
            f"--validate-data: {len(empty)} empty file(s) under {url}: {', '.join(empty[:3])}{more}"
        )
    return None


def manifest_of(url: str, entries: list[tuple[str, int, str]]) -> dict:
    """Keys, sizes and ETags, and one hash over them all (the data's identity)."""
    import hashlib

    lines = "\n".join(f"{k}\t{size}\t{etag}" for k, size, etag in sorted(entries))
    return {
        "url": url,
        "files": len(entries),
        "bytes": sum(size for _, size, _ in entries),
        "hash": "sha256:" + hashlib.sha256(lines.encode()).hexdigest(),
        "keys": [
            {"key": k, "size": size, "etag": etag} for k, size, etag in sorted(entries)[:1000]
        ],
    }


def stage_data(
    url: str, dest: Path, region: str | None, validate: bool, concurrency: int = 16
) -> dict:
    """Copy `url` to `dest` (s5cmd when present, else boto3 transfers in parallel); the manifest."""
    import shutil
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    bucket, prefix = parse_s3_url(url)
    s3 = make_s3_client(region)
    entries = list_data(s3, bucket, prefix)
    problem = data_problems(entries, url) if validate else None
    if problem:
        raise ValueError(problem)
    dest.mkdir(parents=True, exist_ok=True)
    started = time.time()
    s5cmd = shutil.which("s5cmd")
    tool = "s5cmd" if s5cmd else "boto3"
    if s5cmd and entries:
        cmd = [s5cmd]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            cmd += ["--endpoint-url", endpoint]
        cmd += ["cp", f"s3://{bucket}/{prefix}*", str(dest) + "/"]
        subprocess.run(cmd, check=True)
    else:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(max_concurrency=4)

        def fetch(entry: tuple[str, int, str]) -> None:
            rel = entry[0][len(prefix) :].lstrip("/") or Path(entry[0]).name
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, entry[0], str(target), Config=config)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(fetch, entries))
    if validate:
        missing = [
            k
            for k, size, _ in entries
            if not (dest / (k[len(prefix) :].lstrip("/") or Path(k).name)).is_file()
        ]
        if missing:
            raise ValueError(
                f"--validate-data: {len(missing)} file(s) did not arrive, e.g. {missing[0]}"
            )
    manifest = manifest_of(url, entries)
    manifest.update(tool=tool, seconds=round(time.time() - started, 3), path="data/")
    return manifest


def volume_device(volume_id: str, root: str = "/", timeout: float = 60.0) -> str | None:
    """The block device of an attached EBS volume (Nitro: by its NVMe serial; Xen: /dev/sdf)."""
    serial = volume_id.replace("-", "")
    candidates = [
        f"dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}",
        f"dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_{serial}-ns-1",
        "dev/sdf",
        "dev/xvdf",
    ]
    end = time.monotonic() + timeout
    while True:
        for rel in candidates:
            path = os.path.join(root, rel)
            if os.path.exists(path):
                return path
        if time.monotonic() > end:
            return None
        time.sleep(1.0)


def mount_volume(volume_id: str, work: Path, root: str = "/") -> Path:
    """Mount the `--volume` (never formatted: it holds the user's data) and link it as work/volume."""
    import subprocess

    device = volume_device(volume_id, root)
    if device is None:
        raise RuntimeError(
            f"volume {volume_id} is attached but no device appeared; check `lsblk` on the instance"
        )
    mount_point = Path(root) / "mnt" / volume_id
    mounted = Path(root, "proc", "mounts")
    text = mounted.read_text() if mounted.exists() else ""
    if f" {mount_point} " not in text:
        mount_point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", device, str(mount_point)], check=True)
    link = work / "volume"
    if not link.exists():
        link.symlink_to(mount_point)
    return mount_point


def _read_lines(path: Path) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            out[event["seq"]] = line.strip() + b"\n"
    return out


def restore(run: Path, cfg: dict) -> dict:
    """Make this machine's run folder whole before an attempt starts here.

    - what a previous agent on this instance left unsent goes up first;
    - events.jsonl becomes the union (by seq) of the instance's own stream, the
      bundle's copy of the mirror and every chunk in S3, so a resume numbers on
      from the true last seq (no gap, no duplicate);
    - checkpoints and stdout.log from S3 that are missing here are fetched, so
      `runctl.load_checkpoint()` finds the last checkpoint on a new instance;
    - the sync state is reset: the next chunk follows the last one in S3.
    """
    spec = json.loads((run / "spec.json").read_text())
    prefix = run_prefix(cfg, spec["run_id"])
    s3 = make_s3_client(cfg.get("region"))
    if (run / SYNC_DIR / "state.json").exists():
        Sync(run, cfg, client=s3).final(deadline=120)
    events = _read_lines(run / "events.jsonl")
    bundled = run / ".bundle-events.jsonl"
    events.update({k: v for k, v in _read_lines(bundled).items() if k not in events})
    fetched = 0
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=cfg["bucket"], Prefix=prefix + "events/"
    ):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=cfg["bucket"], Key=obj["Key"])["Body"].read()
            for line in body.splitlines():
                try:
                    seq = json.loads(line).get("seq")
                except (ValueError, AttributeError):
                    continue
                if isinstance(seq, int) and seq not in events:
                    events[seq] = line.strip() + b"\n"
                    fetched += 1
    tmp = run / "events.jsonl.tmp"
    tmp.write_bytes(b"".join(events[k] for k in sorted(events)))
    os.replace(tmp, run / "events.jsonl")
    bundled.unlink(missing_ok=True)
    restored = 0
    from .distributed import node_folder

    shared = prefix.removesuffix(node_folder())  # every node resumes from the run's checkpoints
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=cfg["bucket"], Prefix=shared + "checkpoints/"
    ):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(shared) :]
            target = run / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                s3.download_file(cfg["bucket"], obj["Key"], str(target))
                restored += 1
    if not (run / "stdout.log").exists():
        try:
            s3.download_file(cfg["bucket"], prefix + "stdout.log", str(run / "stdout.log"))
        except Exception:  # noqa: BLE001 - a first attempt has none
            pass
    import shutil

    shutil.rmtree(run / SYNC_DIR, ignore_errors=True)
    return {"events": len(events), "fetched_events": fetched, "checkpoints": restored}


def _prepare(run_dir: str) -> int:
    """Point the spec at this machine: its Python, a working folder, the synced code, the data."""
    run = Path(run_dir).resolve()
    (run / "control.json").unlink(
        missing_ok=True
    )  # a stop of an earlier attempt is not for this one
    spec_path = run / "spec.json"
    spec = json.loads(spec_path.read_text())
    spec["python"] = sys.executable
    work = run / "work"
    work.mkdir(exist_ok=True)
    spec["workdir"] = str(work)
    if spec.get("kind") == "script" and spec.get("script_path"):
        spec["script_path"] = None  # the copy in the run folder (entry) is used
    tmp = spec_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(spec, indent=1))
    os.replace(tmp, spec_path)
    cfg = spec.get("sync") or {}
    if cfg.get("kind") == "s3":
        try:
            restore(run, cfg)
        except Exception as exc:  # noqa: BLE001 - one line the launcher shows
            sys.stderr.write(f"runctl: cannot restore the run folder from S3: {exc}\n")
            return 4
    options = spec.get("options") or {}
    if options.get("volume"):
        try:
            mount_volume(str(options["volume"]), work)
        except Exception as exc:  # noqa: BLE001 - one line the launcher shows
            sys.stderr.write(f"runctl: cannot mount {options['volume']}: {exc}\n")
            return 5
    if options.get("data"):
        try:
            manifest = stage_data(
                options["data"],
                work / "data",
                (spec.get("sync") or {}).get("region"),
                bool(options.get("validate_data")),
            )
        except Exception as exc:  # noqa: BLE001 - one line the launcher shows
            sys.stderr.write(f"runctl: staging {options['data']} failed: {exc}\n")
            return 3
        env_path = run / "env.json"
        try:
            env = json.loads(env_path.read_text())
        except (FileNotFoundError, ValueError):
            env = {}
        env["data"] = manifest
        env_path.write_text(json.dumps(env, indent=1, default=str))
    return 0


def _imds_instance_id() -> str | None:
    """This instance's id from IMDSv2 (token first); None off EC2."""
    import urllib.request

    base = os.environ.get("RUNCTL_IMDS_URL", "http://169.254.169.254")
    try:
        req = urllib.request.Request(
            f"{base}/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        token = urllib.request.urlopen(req, timeout=2).read().decode()
        req = urllib.request.Request(
            f"{base}/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token}
        )
        return urllib.request.urlopen(req, timeout=2).read().decode()
    except Exception:  # noqa: BLE001
        return None


def _terminate_self(cfg: dict) -> None:
    """After the run: cancel our spot request and terminate this instance (not kept/reused)."""
    import boto3
    from botocore.config import Config

    instance_id = cfg.get("instance_id") or _imds_instance_id()
    if not instance_id:
        return
    kwargs: dict[str, Any] = {
        "region_name": cfg.get("region"),
        "config": Config(retries={"mode": "adaptive", "max_attempts": 8}),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    ec2 = boto3.session.Session().client("ec2", **kwargs)
    if cfg.get("spot_request_id"):
        try:
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[cfg["spot_request_id"]])
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"runctl: cancel spot request: {exc}\n")
    for attempt in range(5):
        try:
            ec2.terminate_instances(InstanceIds=[instance_id])
            return
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"runctl: terminate {instance_id}: {exc}\n")
            time.sleep(2**attempt)


def _service(run_dir: str, attempt: int | None) -> int:
    """The agent, then a last sync and (unless kept or reused) the instance's end."""
    run = Path(run_dir).resolve()
    spec = json.loads((run / "spec.json").read_text())
    cfg = spec.get("sync") or {}
    code = 1
    try:
        from .agent import main as agent_main

        argv = [str(run)] + (["--attempt", str(attempt)] if attempt else [])
        code = agent_main(argv)
    except BaseException as exc:  # noqa: BLE001 - the end steps below must still run
        sys.stderr.write(f"runctl: agent crashed: {type(exc).__name__}: {exc}\n")
    finally:
        if cfg.get("kind") == "s3":
            try:
                Sync(run, cfg).final()
            except Exception as exc:  # noqa: BLE001
                sys.stderr.write(f"runctl: final sync failed: {exc}\n")
            if cfg.get("cluster"):  # a multi-node run: node 0 ends every node
                from .agent_cluster import end_of_run

                end_of_run(cfg)
            elif cfg.get("terminate"):
                _terminate_self(cfg)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.agent_s3")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("run_dir")
    s = sub.add_parser("service")
    s.add_argument("run_dir")
    s.add_argument("--attempt", type=int, default=None)
    args = parser.parse_args(argv)
    if args.cmd == "prepare":
        return _prepare(args.run_dir)
    return _service(args.run_dir, args.attempt)


if __name__ == "__main__":
    sys.exit(main())
