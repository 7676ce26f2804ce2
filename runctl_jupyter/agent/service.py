"""The instance side of an AWS run, around the agent (the bootstrap script calls it).

    python -m runctl_jupyter.agent.service prepare RUN_DIR
    python -m runctl_jupyter.agent.service service RUN_DIR --attempt N

- `prepare`: point the spec at this machine, make the run folder whole from S3
  (`restore`: events by seq, checkpoints, interruptions.json, stdout.log), mount
  a `--volume`, stage `--data`;
- `service`: the agent, then a last sync, then the instance's end: when the run
  ended for good its spot fleet is deleted (TerminateInstances=False), then its
  launch template, then the instance terminated (unless kept or reused); when the
  attempt ended `resuming` (a spot notice) the fleet is left alone and only this
  instance goes, so the fleet launches the replacement whose boot script
  (aws/bootstrap.py) starts the next attempt (docs/reliability.md);
- `claim_boot` (from the boot script of a replacement instance): which attempt
  this instance runs, if any (`agent_boot.py`).

The S3 sync itself is `agent_s3.Sync`. boto3 is imported lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..distributed import node_folder
from .s3 import SYNC_DIR, Sync, make_s3_client, run_prefix


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
    - interruptions.json (the notices handled so far) too: --max-interruptions
      counts across instances;
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
    for name in ("stdout.log", "interruptions.json"):
        if not (run / name).exists():
            try:
                s3.download_file(cfg["bucket"], prefix + name, str(run / name))
            except Exception:  # noqa: BLE001 - a first attempt has none
                pass
    import shutil

    shutil.rmtree(run / SYNC_DIR, ignore_errors=True)
    return {"events": len(events), "fetched_events": fetched, "checkpoints": restored}


def _prepare(run_dir: str, attach_as: str | None = None) -> int:
    """Point the spec at this machine: its Python, a working folder, the synced code, the data.

    `attach_as`: a replacement instance's id; it attaches the run's `--volume` itself.
    A failure's one line also goes to `.prepare-error` (the boot script reports it)."""
    run = Path(run_dir).resolve()
    (run / ".prepare-error").unlink(missing_ok=True)
    code = _prepare_steps(run, attach_as)
    return code


def _fail(run: Path, line: str, code: int) -> int:
    sys.stderr.write(f"runctl: {line}\n")
    (run / ".prepare-error").write_text(line)
    return code


def _prepare_steps(run: Path, attach_as: str | None) -> int:
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
            return _fail(run, f"cannot restore the run folder from S3: {exc}", 4)
    options = spec.get("options") or {}
    if options.get("volume"):
        try:
            if attach_as:
                from .boot import attach_volume

                attach_volume(make_ec2_client(cfg.get("region")), str(options["volume"]), attach_as)
            mount_volume(str(options["volume"]), work)
        except Exception as exc:  # noqa: BLE001 - one line the launcher shows
            return _fail(run, f"cannot attach or mount {options['volume']}: {exc}", 5)
    if options.get("data"):
        try:
            manifest = stage_data(
                options["data"],
                work / "data",
                (spec.get("sync") or {}).get("region"),
                bool(options.get("validate_data")),
            )
        except Exception as exc:  # noqa: BLE001 - one line the launcher shows
            return _fail(run, f"staging {options['data']} failed: {exc}", 3)
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


def make_ec2_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "region_name": region,
        "config": Config(retries={"mode": "adaptive", "max_attempts": 8}),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.session.Session().client("ec2", **kwargs)


def _terminate_self(cfg: dict, cancel: bool = True) -> None:
    """After the run: delete our spot fleet and its launch template (unless a replacement
    is wanted), then terminate this instance (not kept/reused)."""
    instance_id = cfg.get("instance_id") or _imds_instance_id()
    if not instance_id:
        return
    ec2 = make_ec2_client(cfg.get("region"))
    if cancel and cfg.get("fleet_id"):
        try:  # first: a fleet would refill the instance terminated below
            ec2.delete_fleets(FleetIds=[cfg["fleet_id"]], TerminateInstances=False)
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"runctl: delete spot fleet: {exc}\n")
    if cancel and cfg.get("launch_template_id"):
        try:
            ec2.delete_launch_template(LaunchTemplateId=cfg["launch_template_id"])
        except Exception as exc:  # noqa: BLE001 - `cleanup` lists it
            sys.stderr.write(f"runctl: delete launch template: {exc}\n")
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
        from .supervise import main as agent_main

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
                from .cluster import end_of_run

                end_of_run(cfg)
            elif cfg.get("persistent") and attempt_end(run) == "resuming":
                # A spot notice: the fleet stays, so AWS launches the replacement
                # that runs the next attempt. This instance goes now (a rebalance notice
                # alone would leave it idle and billing, with no replacement).
                _terminate_self(cfg, cancel=False)
            elif cfg.get("terminate"):
                _terminate_self(cfg)  # the run is over: the fleet first, then the instance
    return code


def attempt_end(run: Path) -> str | None:
    """How the stream ends: "resuming" (a next attempt is due), "exit" (the run is
    over), or None (an attempt still under way or killed without a word)."""
    from ..events import read_events

    events, _ = read_events(run / "events.jsonl")
    for event in reversed(events):
        if event.get("type") == "exit":
            return "exit"
        if event.get("type") == "status":
            return "resuming" if event.get("status") == "resuming" else None
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.agent.s3")
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
