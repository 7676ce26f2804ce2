"""The AWS backend: the same agent, on an EC2 instance reached through SSM; events via S3.

    c.AWSBackend.region = "us-east-1"
    c.AWSBackend.instance_type = "g5.xlarge"

start():   validate -> launch (or reuse) -> bundle to S3 -> SSM bootstrap -> agent service;
           a spot run gets an EC2 Fleet (maintain, one instance) whose launch
           template's boot script (UserData) starts the next attempt on the
           replacement AWS launches after an interruption, with no notebook alive (docs/reliability.md)
pull():    new numbered event chunks from S3 into the local mirror run folder
           (paced: every 1 s for the first 30 s, then 10 s while events flow, backing
           off to 20 s when idle: ~700 calls per run-hour, docs/aws.md), then
           stdout.log, record.ipynb and env.json once the attempt's exit event arrived
stop():    SSM writes control.json and wakes the agent; it stops the code, syncs,
           and terminates the instance unless it was reused (--instance) or kept (--keep)
is_alive(): None (the heartbeat timeout decides) unless EC2 says the instance is gone
           (and, for a spot fleet's run, the fleet is no longer there to refill it)
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from ..aws import bootstrap, bundle, cluster, ssm
from ..aws.clients import AWSError, Clients, error_code, owner_from_arn
from ..aws.launch import Launched, LaunchRequest, provision, terminate_launched
from ..aws.policy import PROFILE_NAME, bucket_name
from ..aws.spot_fleet import claim_attempt, current_instance, delete_old_fleet, fleet_alive
from ..events import append_mirrored, last_seq
from . import aws_cluster

PULL_STATE = ".s3pull.json"
# Options the parser knows that this backend does not honour yet: refused, never ignored.
NOT_YET: dict[str, int] = {}


class AWSBackend(Configurable):
    """Runs on EC2 through SSM (c.AWSBackend.*)."""

    name = "aws"
    region = Unicode(
        "", help="AWS region (default: the profile's or AWS_DEFAULT_REGION, else us-east-1)."
    ).tag(config=True)
    profile = Unicode("", help="AWS profile name (default: boto3's usual chain).").tag(config=True)
    bucket = Unicode(
        "", help="S3 bucket for bundles and events (default: runctl-<account>-<region>)."
    ).tag(config=True)
    prefix = Unicode("runctl/", help="Key prefix inside the bucket.").tag(config=True)
    instance_type = Unicode(
        "g5.xlarge", help="Instance type when --instance-type is not given."
    ).tag(config=True)
    spot = Bool(True, help="Spot instances unless --on-demand.").tag(config=True)
    subnet = Unicode(
        "", help="Subnet to launch in (default: the default subnets, tried zone by zone)."
    ).tag(config=True)
    security_group = Unicode(
        "", help="Security group (default: runctl-agent from `runctl aws setup`)."
    ).tag(config=True)
    instance_profile = Unicode(PROFILE_NAME, help="Instance profile of the instances.").tag(
        config=True
    )
    root_gb = Int(100, help="Root volume size in GiB (gp3, encrypted).").tag(config=True)
    ssm_timeout = Float(600.0, help="Seconds to wait for a new instance's SSM agent.").tag(
        config=True
    )
    bootstrap_timeout = Float(1800.0, help="Seconds the bootstrap (env + packages) may take.").tag(
        config=True
    )
    fast_poll = Float(1.0, help="Seconds between S3 polls in the first fast_seconds of a run.").tag(
        config=True
    )
    fast_seconds = Float(
        30.0, help="How long after start polls are fast (first metric seen quickly)."
    ).tag(config=True)
    poll_interval = Float(10.0, help="Seconds between S3 polls while events flow.").tag(config=True)
    max_poll_interval = Float(20.0, help="Longest pause between S3 polls of an idle run.").tag(
        config=True
    )
    aws_poll = Float(2.0, help="Seconds between EC2/SSM state polls during launch.").tag(
        config=True
    )
    spot_fulfil_timeout = Float(
        120.0,
        help="Seconds the spot fleet may stay without an instance before --fallback on-demand is tried.",
    ).tag(config=True)

    def __init__(self, parent: Any = None, clients: Clients | None = None, **kwargs: Any):
        super().__init__(parent=parent, **kwargs)
        self._clients = clients
        self._pull: dict[str, dict] = {}
        self._alive: dict[str, tuple[float, bool | None]] = {}
        self._regional: dict[str, Clients] = {}
        self._relaunch_asked: set[tuple[str, int]] = set()  # (run, attempt) claims tried
        self.progress: Callable[[str, str], None] | None = None

    # -- plumbing ----------------------------------------------------------------
    @property
    def clients(self) -> Clients:
        if self._clients is None:
            self._clients = Clients(region=self.region or None, profile=self.profile or None)
        return self._clients

    def clients_for(self, region: str | None) -> Clients:
        """The default clients, or clients for another region (`--region`, a run's target)."""
        if not region or region == self.clients.region:
            return self.clients
        if region not in self._regional:
            self._regional[region] = Clients(region=region, profile=self.profile or None)
        return self._regional[region]

    def _say(self, state: str, detail: str) -> None:
        if self.progress is not None:
            self.progress(state, detail)

    def _bucket(self, clients: Clients) -> str:
        if self.bucket:
            return self.bucket
        account = clients.identity()["Account"]
        return bucket_name(account, clients.region)

    # -- start -------------------------------------------------------------------
    def start(self, run_dir: Path, spec: dict, attempt: int) -> dict:
        run_dir = Path(run_dir)
        opts = {**(spec.get("target") or {}), **(spec.get("options") or {})}
        for name, issue in NOT_YET.items():
            if opts.get(name) not in (None, False, (), []):
                flag = "--" + name.replace("_", "-")
                raise AWSError(
                    f"{flag} is not available on AWS in this version yet (issue {issue}); drop it"
                )
        clients = self.clients_for(opts.get("region"))
        ident = clients.identity()  # credentials first: nothing is created without them
        bucket = self._bucket(clients)
        try:
            clients.s3.head_bucket(Bucket=bucket)
        except Exception as exc:
            raise AWSError(
                f"bucket {bucket} is missing or not yours ({error_code(exc)}); run `runctl aws setup`"
            ) from exc
        if opts.get("data"):
            _check_data(clients, str(opts["data"]), bool(opts.get("validate_data")))
        pip = _pip_choice(opts)
        sync_dirs = list(opts.get("sync") or [])
        # Validate the bundle (requirements, --sync folders) before any instance exists.
        bundle.build(run_dir, spec, {"kind": "s3"}, pip=pip, sync_dirs=sync_dirs)
        spot = self.spot if opts.get("spot") is None else bool(opts.get("spot"))
        fallback = [str(f) for f in (opts.get("fallback") or [])]
        key = bundle.bundle_key(self.prefix, spec["run_id"], attempt)
        user_data = None
        if spot and not opts.get("keep") and not opts.get("instance"):
            delete_old_fleet(clients, _target(run_dir, spec))  # `resume` by hand: one fleet a run
            # the attempt is this launch's: the boot script of its first instance leaves it
            # to SSM; only a replacement starts one (agent_boot.py)
            claim_attempt(clients, bucket, self.prefix, spec["run_id"], attempt)
            user_data = bootstrap.boot_script(bucket, key, clients.region, spec["run_id"])
        req = LaunchRequest(
            run_id=spec["run_id"],
            owner=opts.get("owner") or owner_from_arn(ident["Arn"]),
            project=spec.get("project") or "default",
            instance_type=opts.get("instance_type") or self.instance_type,
            spot=spot,
            ami=opts.get("ami"),
            instance_id=opts.get("instance") or None,
            keep=bool(opts.get("keep")),
            volume=opts.get("volume"),
            subnet=self.subnet or None,
            security_group=self.security_group or None,
            instance_profile=self.instance_profile,
            root_gb=self.root_gb,
            ssm_timeout=self.ssm_timeout,
            poll=self.aws_poll,
            user_data=user_data,
            fallback=fallback,
            fulfil_timeout=self.spot_fulfil_timeout,
        )
        if spec.get("distributed"):  # checked against the instance type before any launch
            _complete_plan(clients, run_dir, spec, req)
            if spec["distributed"]["nodes"] > 1:
                facts = aws_cluster.start(
                    self, clients, run_dir, spec, attempt, req, bucket, pip, sync_dirs
                )
                self._pull.pop(spec["run_id"], None)
                return facts
        launched = provision(clients, req, progress=self._say)
        try:
            facts = self._ship_and_start(
                clients, run_dir, spec, attempt, launched, bucket, pip, sync_dirs
            )
        except BaseException:
            terminate_launched(clients, launched)
            raise
        self._pull.pop(spec["run_id"], None)
        return facts

    def _ship_and_start(
        self,
        clients: Clients,
        run_dir: Path,
        spec: dict,
        attempt: int,
        launched: Launched,
        bucket: str,
        pip: Any,
        sync_dirs: list,
    ) -> dict:
        sync_cfg = {
            "kind": "s3",
            "bucket": bucket,
            "prefix": self.prefix,
            "region": clients.region,
            "instance_id": launched.instance_id,
            "spot_request_id": launched.spot_request_id,
            "fleet_id": launched.fleet_id,
            "launch_template_id": launched.launch_template_id,
            "persistent": launched.persistent,  # the fleet refills: leave it on `resuming`
            "terminate": not (launched.reused or launched.keep),
        }
        data, requirements = bundle.build(run_dir, spec, sync_cfg, pip=pip, sync_dirs=sync_dirs)
        key = bundle.bundle_key(self.prefix, spec["run_id"], attempt)
        self._say("starting", f"uploading the bundle ({len(data) // 1024 + 1} KiB)")
        clients.s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
        script = bootstrap.script(bucket, key, clients.region, spec["run_id"], attempt)
        self._say("starting", f"bootstrapping {launched.instance_id} through SSM")
        command_id = ssm.send(
            clients, launched.instance_id, script, comment=f"runctl run {spec['run_id']}"
        )
        ssm.wait(
            clients,
            command_id,
            launched.instance_id,
            timeout=self.bootstrap_timeout,
            poll=self.aws_poll,
            what="bootstrap",
        )
        facts = launched.facts()
        facts.update(
            region=clients.region,
            bucket=bucket,
            prefix=self.prefix,
            bundle_key=key,
            command_id=command_id,
            requirements=requirements,
            attempt=attempt,
        )
        _write_target(run_dir, facts)
        return facts

    # -- stop --------------------------------------------------------------------
    def stop(self, run_dir: Path, spec: dict, force: bool = False, reason: str = "user") -> None:
        """Stop gracefully through SSM (the agent syncs, then the instance ends unless reused
        or kept); an unreachable instance, or `force`, is terminated directly if the run made it."""
        target = _target(run_dir, spec)
        clients = self.clients_for(target.get("region"))
        instance_id = current_instance(clients, target)
        if not instance_id:
            return
        if target.get("cluster"):
            aws_cluster.stop(self, clients, spec, target, force, reason)
            return
        owned = not (target.get("reused") or target.get("keep"))
        launched = Launched(
            instance_id=instance_id,
            spot_request_id=target.get("spot_request_id"),
            fleet_id=target.get("fleet_id"),
            launch_template_id=target.get("launch_template_id"),
        )
        try:
            res = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            state = res[0]["Instances"][0]["State"]["Name"] if res else "terminated"
        except Exception as exc:
            if not error_code(exc).startswith("InvalidInstanceID"):
                raise
            state = "terminated"
        if state in ("shutting-down", "terminated"):
            if owned and target.get("persistent"):
                terminate_launched(clients, launched)  # between instances: no refill after a stop
            return
        delivered = False
        if state == "running":
            try:
                script = bootstrap.stop_script(spec["run_id"], force=force, reason=reason)
                command_id = ssm.send(
                    clients, instance_id, script, comment="runctl stop", delivery_timeout=30
                )
                ssm.wait(
                    clients, command_id, instance_id, timeout=45, poll=self.aws_poll, what="stop"
                )
                delivered = True
            except AWSError:
                delivered = False
        if owned and (force or not delivered):
            terminate_launched(clients, launched)
        elif not delivered:
            raise AWSError(
                f"could not reach {instance_id} to stop run {spec['run_id']} (it is {state}; a reused or kept "
                f"instance is never terminated by runctl): check `runctl aws doctor`, or stop the instance yourself"
            )

    # -- pull --------------------------------------------------------------------
    def pull(self, run_dir: Path, spec: dict, force: bool = False) -> int:
        """Bring new event chunks into the mirror; returns how many events were added."""
        run_dir = Path(run_dir)
        target = _target(run_dir, spec)
        if not target.get("bucket"):
            return 0
        state = self._pull_state(run_dir, spec["run_id"])
        now = time.monotonic()
        if not force and now < state["next_poll"]:
            return 0
        s3 = self.clients_for(target.get("region")).s3
        prefix = f"{target.get('prefix', self.prefix)}runs/{spec['run_id']}/"
        kwargs: dict[str, Any] = {"Bucket": target["bucket"], "Prefix": prefix + "events/"}
        if state["last_key"]:
            kwargs["StartAfter"] = state["last_key"]
        resp = s3.list_objects_v2(**kwargs)
        keys = sorted(o["Key"] for o in resp.get("Contents", []))
        added = 0
        exits = []
        resumed = False
        for key in keys:
            body = s3.get_object(Bucket=target["bucket"], Key=key)["Body"].read()
            new_lines = []
            for line in body.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict) or event.get("seq", 0) <= state["seq"]:
                    continue  # a duplicate is harmless and ignored
                state["seq"] = event["seq"]
                new_lines.append(json.dumps(event, separators=(",", ":")) + "\n")
                if event.get("type") == "exit":
                    exits.append(event)
                elif event.get("status") == "resuming" and target.get("cluster"):
                    resumed = True  # this attempt's nodes are done: the next gets new ones
            if new_lines:
                new_lines = append_mirrored(run_dir / "events.jsonl", new_lines)
                added += len(new_lines)
                _append_log(run_dir, new_lines)
            state["last_key"] = key
            self._save_pull_state(run_dir, state)
        if exits:
            for name in ("stdout.log", "record.ipynb", "env.json", "output.ipynb"):
                _download(s3, target["bucket"], prefix + name, run_dir / name)
        if target.get("cluster") and (exits or resumed):
            # no node, placement group or security group outlives the attempt
            aws_cluster.ended(self.clients_for(target.get("region")), target)
        now = time.monotonic()
        if now - state["since"] < self.fast_seconds:
            state["interval"] = self.fast_poll
        elif keys:
            state["interval"] = self.poll_interval
        else:  # idle: back off (heartbeat chunks come every 20 s, well inside the lost timeout)
            state["interval"] = min(
                max(state["interval"], self.poll_interval) * 1.5, self.max_poll_interval
            )
        state["next_poll"] = now + state["interval"]
        return added

    def _pull_state(self, run_dir: Path, run_id: str) -> dict:
        state = self._pull.get(run_id)
        if state is None:
            saved: dict = {}
            try:
                saved = json.loads((run_dir / PULL_STATE).read_text())
            except (FileNotFoundError, ValueError):
                pass
            state = {
                "last_key": saved.get("last_key", ""),
                "seq": last_seq(run_dir / "events.jsonl"),
                "next_poll": 0.0,
                "interval": self.poll_interval,
                "since": time.monotonic(),
            }
            self._pull[run_id] = state
        return state

    @staticmethod
    def _save_pull_state(run_dir: Path, state: dict) -> None:
        tmp = run_dir / f"{PULL_STATE}.{_unique()}.tmp"  # two followers save at once
        tmp.write_text(json.dumps({"last_key": state["last_key"]}))
        os.replace(tmp, run_dir / PULL_STATE)

    def next_attempt(self, run_dir: Path, spec: dict) -> int | None:
        """A multi-node run at `resuming`: the attempt to launch whole from here, claimed
        in S3 for this caller (docs/distributed.md); None for anything else."""
        target = _target(Path(run_dir), {**spec, "target": None})  # aws.json: the newest
        target = target if target.get("bucket") else _target(Path(run_dir), spec)
        clients = self.clients_for(target.get("region"))
        return aws_cluster.next_attempt(
            clients, Path(run_dir), target, spec["run_id"], asked=self._relaunch_asked
        )

    # -- is_alive ----------------------------------------------------------------
    def is_alive(self, run_dir: Path, spec: dict) -> bool | None:
        """False when EC2 says the instance is gone; else None (heartbeats decide). One call a minute at most."""
        target = _target(Path(run_dir), spec)
        instance_id = target.get("instance_id")
        if not instance_id:
            return None
        if target.get("persistent") and target.get("fleet_id"):
            instance_id = target["fleet_id"]  # the fleet's instance changes on a refill
        cached = self._alive.get(instance_id)
        if cached and time.monotonic() - cached[0] < 60:
            return cached[1]
        answer: bool | None = None
        try:
            clients = self.clients_for(target.get("region"))
            if target.get("cluster"):
                answer = aws_cluster.is_alive(clients, target)
                self._alive[instance_id] = (time.monotonic(), answer)
                return answer
            if instance_id != target["instance_id"]:
                alive = fleet_alive(clients, instance_id)
                self._alive[instance_id] = (time.monotonic(), alive)
                return alive
            ec2 = clients.ec2
            res = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
            state = res[0]["Instances"][0]["State"]["Name"] if res else "terminated"
            if state in ("shutting-down", "terminated", "stopping", "stopped"):
                answer = False
        except Exception as exc:  # noqa: BLE001 - cannot tell
            if error_code(exc).startswith("InvalidInstanceID"):
                answer = False
        self._alive[instance_id] = (time.monotonic(), answer)
        return answer


def _complete_plan(clients: Clients, run_dir: Path, spec: dict, req: LaunchRequest) -> None:
    """The distributed plan checked against the instance type (`--gpus all` resolved) and
    written back into the spec (the caller's too), so the agent on the instance runs
    torchrun with it."""
    from ..store.folders import write_spec

    spec["distributed"] = cluster.check_plan(clients, spec["distributed"], req)
    write_spec(run_dir, spec)


def _check_data(clients: Clients, url: str, validate: bool) -> None:
    """`--data` must name objects that exist (and, with --validate-data, none empty) before launch."""
    from ..agent.data import data_problems, list_data, parse_s3_url

    try:
        bucket, prefix = parse_s3_url(url)
    except ValueError as exc:
        raise AWSError(str(exc)) from exc
    try:
        if validate:
            problem = data_problems(list_data(clients.s3, bucket, prefix), url)
        else:
            found = clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get(
                "KeyCount", 0
            )
            problem = None if found else f"no files under {url}; check --data"
    except AWSError:
        raise
    except Exception as exc:
        raise AWSError(
            f"cannot list {url} ({error_code(exc) or exc}); check --data and your access to it"
        ) from exc
    if problem:
        raise AWSError(problem)


def _pip_choice(opts: dict) -> Any:
    if opts.get("requirements"):
        return str(opts["requirements"])
    pip = opts.get("pip")
    if pip is None or pip == ["auto"] or pip == "auto":
        return "auto"
    if pip == [] or pip == ["none"] or pip == "none":
        return "none"
    return list(pip)


def _target(run_dir: Path, spec: dict) -> dict:
    """spec["target"], or the facts start() wrote next to it (a session may hold an old spec)."""
    target = dict(spec.get("target") or {})
    if not target.get("bucket"):
        try:
            target.update(json.loads((Path(run_dir) / "aws.json").read_text()))
        except (FileNotFoundError, ValueError):
            pass
    return target


def _append_log(run_dir: Path, lines: list[str]) -> None:
    """While a run streams, the mirror's stdout.log grows from its `log` events (no extra
    call); the instance's own stdout.log replaces it when the attempt's exit arrives."""
    parts = []
    for line in lines:
        event = json.loads(line)
        if event.get("type") == "log" and isinstance(event.get("text"), str):
            parts.append(event["text"])
        elif (
            event.get("type") == "status"
            and event.get("status") == "starting"
            and event.get("attempt", 1) > 1
        ):
            parts.append(f"=== attempt {event['attempt']} ===\n")
    if parts:
        with open(run_dir / "stdout.log", "a", encoding="utf-8") as f:
            f.write("".join(parts))


def _unique() -> str:
    return f"{os.getpid()}-{threading.get_ident()}"


def _write_target(run_dir: Path, facts: dict) -> None:
    tmp = run_dir / "aws.json.tmp"
    tmp.write_text(json.dumps(facts, indent=1, default=str))
    os.replace(tmp, run_dir / "aws.json")


def _download(s3: Any, bucket: str, key: str, dest: Path) -> bool:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in ("NoSuchKey", "404"):
            return False
        raise
    tmp = dest.with_name(f"{dest.name}.{_unique()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, dest)
    return True
