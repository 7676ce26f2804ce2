"""The AWS backend: the same agent, on an EC2 instance reached through SSM; events via S3.

    c.AWSBackend.region = "us-east-1"
    c.AWSBackend.instance_type = "g5.xlarge"

start():   check (aws_checks.py) -> launch (or reuse) -> bundle to S3 -> SSM bootstrap
           -> agent service (aws_ship.py); a spot run gets an EC2 Fleet (maintain, one
           instance) whose launch template's boot script (UserData) starts the next
           attempt on the replacement AWS launches after an interruption, with no
           notebook alive (docs/reliability.md); `--nodes M`: aws_cluster.py
pull():    new numbered event chunks from S3 into the local mirror run folder
           (paced: every 0.25 s until the first metric, 1 s for the first 30 s, then 10 s
           while events flow, backing
           off to 20 s when idle: ~700 calls per run-hour, docs/aws.md), then
           stdout.log, record.ipynb and env.json once the attempt's exit event arrived
           (aws_pull.py)
restart(): a dev run's changed files by content hash, then SSM asks its agent to
           start the next attempt on the same warm instance (aws_dev.py)
stop():    SSM writes control.json and wakes the agent; it stops the code, syncs,
           and terminates the instance unless it was reused (--instance) or kept
           (--keep) (aws_stop.py)
is_alive(): None (the heartbeat timeout decides) unless EC2 says the instance is gone
           (and, for a spot fleet's run, the fleet is no longer there to refill it)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traitlets import Bool, Float, Int, Unicode
from traitlets.config import Configurable

from ..aws import bootstrap, bundle, leases, run_role, share, tags
from ..aws.clients import LAUNCH_IDENTITY_REUSE, Clients, error_code, owner_from_arn
from ..aws.launch import LaunchRequest, provision, terminate_launched
from ..aws.policy import PROFILE_NAME, bucket_name
from ..aws.spot_fleet import claim_attempt, delete_old_fleet, fleet_alive
from ..team_keys import owner_prefix
from . import aws_cluster, aws_dev, aws_pull, aws_stop, aws_volume
from .aws_checks import check_before_launch, complete_plan
from .aws_ship import ship_and_start
from .aws_target import read_target


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
    data_mount = Unicode(
        "/data", help="Where a data volume (--data-size, --volume) is mounted on the instance."
    ).tag(config=True)
    ecr_repository = Unicode(
        "",
        help="ECR repository caching images built from a Dockerfile (--image ./Dockerfile) "
        "by their digest: pulled instead of built (`runctl aws setup` creates it).",
    ).tag(config=True)
    ssm_timeout = Float(600.0, help="Seconds to wait for a new instance's SSM agent.").tag(
        config=True
    )
    bootstrap_timeout = Float(1800.0, help="Seconds the bootstrap (env + packages) may take.").tag(
        config=True
    )
    fast_poll = Float(1.0, help="Seconds between S3 polls in the first fast_seconds of a run.").tag(
        config=True
    )
    dev_poll = Float(
        0.25, help="Seconds between S3 polls in the fast_seconds after a dev run's restart."
    ).tag(config=True)
    fast_seconds = Float(
        30.0, help="How long after start polls are fast (first metric seen quickly)."
    ).tag(config=True)
    first_metric_poll = Float(
        0.25, help="Seconds between S3 polls until the first metric arrives (in fast_seconds)."
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
    lease_renew_seconds = Float(
        15.0,
        help="Seconds between the agent's renewals of a run's leases (a --volume, an --instance); "
        "a lease not renewed for 4 of them is free.",
    ).tag(config=True)

    def __init__(self, parent: Any = None, clients: Clients | None = None, **kwargs: Any):
        super().__init__(parent=parent, **kwargs)
        self._clients = clients
        self._pull: dict[str, dict] = {}
        self._alive: dict[str, tuple[float, bool | None]] = {}
        self._regional: dict[str, Clients] = {}
        self._relaunch_asked: set[tuple[str, int]] = set()  # (run, attempt) claims tried
        self.held: dict[str, list[dict]] = {}  # run id -> the leases its launch took
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

    def instance_state(self, instance_id: str, region: str | None = None) -> str | None:
        """ "running", "stopped", ... or None when the instance does not exist (any more)."""
        try:
            found = self.clients_for(region).ec2.describe_instances(InstanceIds=[instance_id])
        except Exception as exc:
            if error_code(exc).startswith("InvalidInstanceID"):
                return None
            raise
        for reservation in found["Reservations"]:
            for inst in reservation["Instances"]:
                return inst["State"]["Name"]
        return None

    def _say(self, state: str, detail: str) -> None:
        if self.progress is not None:
            self.progress(state, detail)

    def _bucket(self, clients: Clients) -> str:
        if self.bucket:
            return self.bucket
        account = clients.identity(reuse=LAUNCH_IDENTITY_REUSE)["Account"]
        return bucket_name(account, clients.region)

    # -- start -------------------------------------------------------------------
    def start(self, run_dir: Path, spec: dict, attempt: int) -> dict:
        run_dir = Path(run_dir)
        opts = {**(spec.get("target") or {}), **(spec.get("options") or {})}
        checked = check_before_launch(self, run_dir, spec, opts)
        clients, bucket = checked.clients, checked.bucket
        spot = self.spot if opts.get("spot") is None else bool(opts.get("spot"))
        req = self._launch_request(spec, opts, checked.identity, spot, None)
        aws_volume.choose(clients, run_dir, spec, opts, req)  # `--volume NAME`: found first
        if req.share and req.volume:  # where EBS cannot share it: one line, nothing made
            share.check(clients, req.volume, req.instance_type, req.instance_id)
        # the run's leases (a --volume, an --instance): the atomic guard before any launch
        held = leases.acquire_all(
            clients.s3, bucket, self.prefix, req.run_id, req.owner, self._leased(opts, req),
            self._lease_launch(),
        )
        self.held[req.run_id] = held
        try:
            if spot and not opts.get("keep") and not opts.get("instance"):
                req.user_data = self._fleet_boot_script(clients, run_dir, spec, attempt, bucket)
            return self._start_leased(run_dir, spec, attempt, req, checked)
        except BaseException:
            leases.release(clients.s3, bucket, self.prefix, req.run_id, held)
            raise

    @staticmethod
    def _leased(opts: dict, req: LaunchRequest) -> dict:
        """The options leases are taken on: `--volume NAME` as the id it was resolved to
        (a volume this run makes with `--data-size` is its own: no lease)."""
        if opts.get("volume") and req.volume:
            return {**opts, "volume": req.volume}
        return opts

    def _lease_launch(self) -> float:
        """How long a lease taken at launch lasts before the agent's first renewal."""
        return self.ssm_timeout + self.bootstrap_timeout + 300.0

    def _start_leased(
        self, run_dir: Path, spec: dict, attempt: int, req: LaunchRequest, checked: Any
    ) -> dict:
        clients, bucket = checked.clients, checked.bucket
        made = False  # a role this call made goes if the launch fails; an earlier attempt's stays
        if self.instance_profile == PROFILE_NAME and not (req.keep or req.instance_id):
            # instances serving this run alone get its own role (its reach only)
            made = not run_role.exists(clients, run_role.name(req.run_id))
            run_tags = tags.run_tags(req.run_id, req.owner, req.project, req.team)
            team = spec.get("team")
            if team:  # its role may publish this run to the team (docs/teams.md)
                run_tags[tags.TEAM_PREFIX] = owner_prefix(team["team"], team["owner"])
            req.instance_profile = run_role.create(clients, run_tags, bucket)
        try:
            return self._provision_and_start(run_dir, spec, attempt, req, checked)
        except BaseException:
            if made:
                run_role.delete(clients, req.instance_profile)
            raise

    def _provision_and_start(
        self, run_dir: Path, spec: dict, attempt: int, req: LaunchRequest, checked: Any
    ) -> dict:
        clients, bucket = checked.clients, checked.bucket
        pip, sync_dirs = checked.pip, checked.sync_dirs
        if spec.get("distributed"):  # checked against the instance type before any launch
            complete_plan(clients, run_dir, spec, req)
            if spec["distributed"]["nodes"] > 1:
                facts = aws_cluster.start(
                    self, clients, run_dir, spec, attempt, req, bucket, pip, sync_dirs
                )
                self._pull.pop(spec["run_id"], None)
                return facts
        launched = provision(clients, req, progress=self._say)
        try:
            aws_volume.record(run_dir, spec, launched, self.data_mount)
            facts = ship_and_start(
                self, clients, run_dir, spec, attempt, launched, bucket, pip, sync_dirs
            )
        except BaseException:
            terminate_launched(clients, launched)
            raise
        self._pull.pop(spec["run_id"], None)
        return facts

    def _fleet_boot_script(
        self, clients: Clients, run_dir: Path, spec: dict, attempt: int, bucket: str
    ) -> str:
        """The UserData of a spot run's fleet: a replacement instance starts the next attempt."""
        delete_old_fleet(clients, read_target(run_dir, spec))  # `resume` by hand: one fleet a run
        # the attempt is this launch's: the boot script of its first instance leaves it
        # to SSM; only a replacement starts one (agent/boot.py)
        claim_attempt(clients, bucket, self.prefix, spec["run_id"], attempt)
        key = bundle.bundle_key(self.prefix, spec["run_id"], attempt)
        return bootstrap.boot_script(bucket, key, clients.region, spec["run_id"])

    def _launch_request(
        self, spec: dict, opts: dict, ident: dict, spot: bool, user_data: str | None
    ) -> LaunchRequest:
        return LaunchRequest(
            run_id=spec["run_id"],
            owner=opts.get("owner") or owner_from_arn(ident["Arn"]),
            project=spec.get("project") or "default",
            team=tags.spec_team(spec),
            instance_type=opts.get("instance_type") or self.instance_type,
            spot=spot,
            ami=opts.get("ami"),
            instance_id=opts.get("instance") or None,
            keep=bool(opts.get("keep")),
            share=opts.get("share") == "read-only",
            subnet=self.subnet or None,
            security_group=self.security_group or None,
            instance_profile=self.instance_profile,
            root_gb=self.root_gb,
            ssm_timeout=self.ssm_timeout,
            poll=self.aws_poll,
            user_data=user_data,
            fallback=[str(f) for f in (opts.get("fallback") or [])],
            fulfil_timeout=self.spot_fulfil_timeout,
        )

    # -- stop, pull, next_attempt --------------------------------------------------
    def stop(self, run_dir: Path, spec: dict, force: bool = False, reason: str = "user") -> None:
        """Stop gracefully through SSM (the agent syncs, then the instance ends unless reused
        or kept); an unreachable instance, or `force`, is terminated directly if the run made it."""
        aws_stop.stop(self, run_dir, spec, force, reason)

    def restart(self, run_dir: Path, spec: dict, changed: dict, names: list[str]) -> bool:
        """A dev run's next attempt on its warm instance: the changed files by content
        hash through S3, then SSM asks its agent (aws_dev.py). False: no agent there."""
        asked = aws_dev.restart(self, run_dir, spec, changed, names)
        state = self._pull.get(spec["run_id"])
        if asked and state is not None:  # the new attempt's first lines: fast polls again
            state.update(since=time.monotonic(), next_poll=0.0, fast_poll=self.dev_poll)
        return asked

    def pull(self, run_dir: Path, spec: dict, force: bool = False) -> int:
        """Bring new event chunks into the mirror; returns how many events were added."""
        return aws_pull.pull(self, run_dir, spec, force)

    def next_attempt(self, run_dir: Path, spec: dict) -> int | None:
        """A multi-node run at `resuming`: the attempt to launch whole from here, claimed
        in S3 for this caller (docs/distributed.md); None for anything else."""
        target = read_target(Path(run_dir), {**spec, "target": None})  # aws.json: the newest
        target = target if target.get("bucket") else read_target(Path(run_dir), spec)
        clients = self.clients_for(target.get("region"))
        return aws_cluster.next_attempt(
            clients, Path(run_dir), target, spec["run_id"], asked=self._relaunch_asked
        )

    # -- is_alive ----------------------------------------------------------------
    def is_alive(self, run_dir: Path, spec: dict) -> bool | None:
        """False when EC2 says the instance is gone; else None (heartbeats decide). One call a minute at most."""
        target = read_target(Path(run_dir), spec)
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
