"""The instance side of an AWS run, around the agent (the bootstrap script calls it).

    python -m runctl_jupyter.agent.service prepare RUN_DIR
    python -m runctl_jupyter.agent.service service RUN_DIR --attempt N

- `prepare`: point the spec at this machine, make the run folder whole from S3
  (restore.py: events by seq, checkpoints, interruptions.json, stdout.log), mount
  a `--volume` (volume.py), stage `--data` (data.py);
- `service`: the agent, then a last sync, then the instance's end: when the run
  ended for good its spot fleet is deleted (TerminateInstances=False), then its
  launch template, then the instance terminated (unless kept or reused); when the
  attempt ended `resuming` (a spot notice) the fleet is left alone and only this
  instance goes, so the fleet launches the replacement whose boot script
  (aws/bootstrap.py) starts the next attempt (docs/reliability.md); which attempt
  a replacement runs, if any, is boot.py's.

The S3 sync itself is `s3.Sync`. boto3 is imported lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from . import container
from .clients import make_ec2_client
from .data import data_dest, link_data, stage_data
from .restore import restore
from .s3 import Sync
from .volume import mount_data_volume, release


def _prepare(run_dir: str, attach_as: str | None = None) -> int:
    """Point the spec at this machine: its Python, a working folder, the synced code, the data.

    `attach_as`: a replacement instance's id; it attaches the run's `--volume` itself.
    A failure's one line also goes to `.prepare-error` (the boot script reports it)."""
    run = Path(run_dir).resolve()
    (run / ".prepare-error").unlink(missing_ok=True)
    return _prepare_steps(run, attach_as)


def _fail(run: Path, line: str, code: int) -> int:
    sys.stderr.write(f"runctl: {line}\n")
    (run / ".prepare-error").write_text(line)
    return code


def _prepare_steps(run: Path, attach_as: str | None) -> int:
    # a stop of an earlier attempt is not for this one
    (run / "control.json").unlink(missing_ok=True)
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
    if options.get("image") and container.find_runtime(options.get("container_runtime")) is None:
        needed = options.get("container_runtime") or "docker"
        return _fail(
            run,
            f"--image needs {needed} on the instance and it has none: use the Deep Learning AMI "
            "(it has docker and the NVIDIA container toolkit) or an --ami with docker",
            6,
        )
    if spec.get("data_volume"):
        code = _mount(run, spec, attach_as, cfg.get("region"))
        if code:
            return code
    if options.get("data"):
        code = _stage(run, spec, work, options)
        if code:
            return code
    return 0


def _stage(run: Path, spec: dict, work: Path, options: dict) -> int:
    """`--data`: staged into the data volume (a folder a dataset) or work/data, only what
    is not there yet; its manifest into env.json."""
    url = str(options["data"])
    try:
        dest = data_dest(url, work, spec.get("data_mount"))
        manifest = stage_data(
            url,
            dest,
            (spec.get("sync") or {}).get("region"),
            bool(options.get("validate_data")),
        )
        if spec.get("data_mount"):
            link_data(work, dest)
    except Exception as exc:  # noqa: BLE001 - one line the launcher shows
        line = str(exc)
        if line.startswith("--validate-data"):
            return _fail(run, line, 3)
        return _fail(run, f"staging {url} failed: {line}", 3)
    env_path = run / "env.json"
    try:
        env = json.loads(env_path.read_text())
    except (FileNotFoundError, ValueError):
        env = {}
    env["data"] = manifest
    env_path.write_text(json.dumps(env, indent=1, default=str))
    return 0


def _mount(run: Path, spec: dict, attach_as: str | None, region: str | None) -> int:
    """The data volume (attached here first on a replacement), its mount path in the spec."""
    facts = spec["data_volume"]
    try:
        if attach_as:
            from .boot import attach_volume

            attach_volume(make_ec2_client(region), str(facts["id"]), attach_as)
        mount_point = mount_data_volume(facts, run / "work")
    except Exception as exc:  # noqa: BLE001 - one line the launcher shows
        return _fail(run, f"cannot attach or mount {facts['id']}: {exc}", 5)
    spec["data_mount"] = str(mount_point)  # RUNCTL_DATA_DIR of the run
    tmp = run / "spec.tmp"
    tmp.write_text(json.dumps(spec, indent=1))
    os.replace(tmp, run / "spec.json")
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
            _release_volume(run, cfg)
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


def _release_volume(run: Path, cfg: dict) -> None:
    """A data volume that is not kept goes when the run is over (not at a spot notice:
    the replacement attaches it)."""
    try:
        facts = json.loads((run / "spec.json").read_text()).get("data_volume") or {}
    except (OSError, ValueError):
        return
    if facts.get("delete") and attempt_end(run) != "resuming":
        problem = release(facts, cfg.get("region"))
        if problem:
            sys.stderr.write(f"runctl: {problem}\n")


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
    parser = argparse.ArgumentParser(prog="python -m runctl_jupyter.agent.service")
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
