"""Launching (or reusing) the instance an AWS run's agent runs on.

Everything that can be checked is checked before anything is created (credentials,
instance types (fallbacks too), AMI, the AZ of a `--volume`), so a typo never costs an
instance boot.

A spot run that brings a boot script (`user_data`) gets an EC2 Fleet of type
`maintain` from a per-run launch template (aws/spot_fleet.py): when AWS takes the
instance back, the fleet launches a replacement, in any candidate AZ and with any
`--fallback` type, whose boot script starts the next attempt, with no notebook alive
(docs/reliability.md). The template tags the instance and its volumes and requires
IMDSv2 from the first boot.

`--fallback TYPE,...|on-demand`: the fleet gets every spot candidate (types x subnets)
at once, by priority; a kept (persistent) spot, one-time spot or on-demand launch tries
them in order, each in every subnet, on a capacity error (aws/candidates.py). `on-demand`
(last) is tried when the fleet placed nothing in `fulfil_timeout`: that instance is not
refilled. A kept spot instance (`--keep`, a sweep's slots) comes from a persistent request
that stops on an interruption: the only spot instance EC2 can stop (docs/aws.md, "Kept
instances"). Everything created is remembered in a `Launched` record; an exception at any later step terminates
what this launch created (never a reused instance) and re-raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import data_volume, policy, tags
from .ami import resolve_ami
from .candidates import candidates, choose_subnets, serve_run, volume_of
from .clients import LAUNCH_IDENTITY_REUSE, Clients, error_code
from .instance_ready import attach_volume, wait_running, wait_ssm_online
from .instance_spec import add_one_time_spot, add_persistent_spot, instance_settings
from .instance_types import validate_instance_type
from .launch_errors import CAPACITY_ERRORS, LaunchError, NoCapacity, VolumeZoneMismatch
from .run_role import launch_when_ready
from .spot_fleet import delete_fleet, fleet_instances, launch_fleet

Progress = Callable[[str, str], None]


@dataclass
class LaunchRequest:
    run_id: str
    owner: str
    project: str
    instance_type: str = "t3.micro"
    team: str = ""  # c.Runctl.team: the runctl:team cost-allocation tag
    spot: bool = True
    ami: str | None = None
    instance_id: str | None = None  # --instance: reuse a running instance
    keep: bool = False
    volume: str | None = None  # an id (`--volume NAME` resolved), or an earlier attempt's own
    data_size: int | None = None  # --data-size: a new volume in the AZ chosen for the launch
    volume_name: str | None = None  # --persistent: the new volume is kept under this name
    share: bool = False  # --share read-only: the volume may be attached elsewhere too
    subnet: str | None = None
    security_group: str | None = None
    instance_profile: str = policy.PROFILE_NAME
    root_gb: int = 100
    ssm_timeout: float = 600.0
    poll: float = 2.0
    user_data: str | None = None  # the boot script of a spot fleet's instances
    fallback: list[str] = field(default_factory=list)  # instance types, or "on-demand"
    fulfil_timeout: float = 120.0  # a fleet with no instance after this: on-demand, or give up

    @property
    def persistent(self) -> bool:
        return bool(self.spot and self.user_data and not self.keep and not self.instance_id)


@dataclass
class Launched:
    """What a launch created or chose; the facts kept in spec["target"]."""

    instance_id: str | None = None
    reused: bool = False
    spot_request_id: str | None = None
    fleet_id: str | None = None  # the spot fleet that refills this instance
    launch_template_id: str | None = None
    availability_zone: str | None = None
    instance_type: str | None = None
    ami: str | None = None
    spot: bool = False
    keep: bool = False
    volume: str | None = None
    volume_created: bool = False  # by this launch (--data-size): deleted if the launch fails
    volume_format: bool = False  # runctl's own data volume: formatted if it has no filesystem
    volume_delete: bool = False  # not kept: deleted when the run ends
    persistent: bool = False  # a spot fleet refills this instance
    tried: list[str] = field(default_factory=list)  # candidates that had no capacity
    created: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "reused": self.reused,
            "spot_request_id": self.spot_request_id,
            "fleet_id": self.fleet_id,
            "launch_template_id": self.launch_template_id,
            "availability_zone": self.availability_zone,
            "instance_type": self.instance_type,
            "ami": self.ami,
            "spot": self.spot,
            "keep": self.keep,
            "volume": self.volume,
            "volume_delete": self.volume_delete,
            "persistent": self.persistent,
            "fallback_from": self.tried,
        }


def _run_instance(
    clients: Clients, req: LaunchRequest, image: dict, subnet: dict, security_group: str
) -> dict:
    run_tags = tags.run_tags(req.run_id, req.owner, req.project, req.team)
    if req.keep:
        run_tags[tags.KEEP] = "true"
    kwargs: dict[str, Any] = {
        "ImageId": image["ImageId"],
        "InstanceType": req.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnet["SubnetId"],
        "SecurityGroupIds": [security_group],
        **instance_settings(
            req.instance_profile,
            req.root_gb,
            image,
            run_tags,
            shutdown="stop" if req.keep else "terminate",
        ),
    }
    if req.spot and req.keep:  # stoppable: a persistent request that stops, never one-time
        add_persistent_spot(kwargs, run_tags)
    elif req.spot:
        add_one_time_spot(kwargs, run_tags)
    return launch_when_ready(lambda: clients.ec2.run_instances(**kwargs))["Instances"][0]


def _find_security_group(clients: Clients, vpc_id: str) -> str:
    from .setup import find_security_group

    group = find_security_group(clients, vpc_id)
    if not group:
        raise LaunchError(
            f"no {policy.SECURITY_GROUP_NAME} security group in {vpc_id}; run `runctl aws setup`"
        )
    return group


def _reuse(clients: Clients, req: LaunchRequest, launched: Launched) -> None:
    """Take over `--instance`: it must run, and be in the `--volume`'s AZ."""
    try:
        res = clients.ec2.describe_instances(InstanceIds=[req.instance_id])["Reservations"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidInstanceID"):
            raise
        res = []
    if not res:
        raise LaunchError(
            f"instance {req.instance_id} not found in {clients.region}; check --instance and the region"
        )
    inst = res[0]["Instances"][0]
    if inst["State"]["Name"] != "running":
        raise LaunchError(
            f"instance {req.instance_id} is {inst['State']['Name']}; start it (`aws ec2 start-instances`) or launch a new one"
        )
    launched.instance_id = inst["InstanceId"]
    launched.reused = True
    launched.availability_zone = inst["Placement"]["AvailabilityZone"]
    launched.instance_type = inst["InstanceType"]
    launched.ami = inst.get("ImageId")
    launched.spot = inst.get("InstanceLifecycle") == "spot"
    launched.keep = True
    zone = _volume_zone(clients, req, launched)
    if zone and zone != launched.availability_zone:
        raise VolumeZoneMismatch(
            f"volume {req.volume} is in {zone} but instance {req.instance_id} "
            f"is in {launched.availability_zone}; use an instance in the volume's zone"
        )


def provision(clients: Clients, req: LaunchRequest, progress: Progress | None = None) -> Launched:
    """Validate, then launch (or take over) the instance and wait until SSM can reach it.

    On any failure after something was created, that is terminated before the
    exception propagates (see `terminate_launched`).
    """
    say = progress or (lambda state, detail: None)
    launched = Launched(keep=req.keep, volume=req.volume)
    say("provisioning", "checking credentials")
    clients.identity(reuse=LAUNCH_IDENTITY_REUSE)
    if req.instance_id:
        _reuse(clients, req, launched)
    else:
        try:
            _launch(clients, req, launched, say)
        except BaseException:
            _drop_created_volume(clients, launched)
            raise
    try:
        _wait_usable(clients, req, launched, say)
    except BaseException:
        terminate_launched(clients, launched)
        raise
    return launched


def _launch(clients: Clients, req: LaunchRequest, launched: Launched, say: Progress) -> None:
    """Check every candidate, then launch: the spot fleet (a persistent run) first, then
    the one-time candidates in order; NoCapacity when none of them placed an instance."""
    if req.fallback and "on-demand" in req.fallback[:-1]:
        raise LaunchError("--fallback: on-demand can only come last (TYPE,...,on-demand)")
    tries = candidates(req)
    infos = {name: validate_instance_type(clients, name) for name, _ in tries}
    say("provisioning", infos[req.instance_type].describe())
    images = {name: resolve_ami(clients, info, req.ami) for name, info in infos.items()}
    zone = _volume_zone(clients, req, launched)
    if req.volume:
        serve_run(clients, req.volume, req.run_id)
    subnets = choose_subnets(clients, req.subnet, zone)
    if req.data_size:  # the AZ, decided once: the new volume and every candidate go there
        zone = subnets[0]["AvailabilityZone"]
        subnets = [s for s in subnets if s["AvailabilityZone"] == zone]
    security_group = req.security_group or _find_security_group(clients, subnets[0]["VpcId"])
    if req.data_size and zone:
        say("provisioning", f"creating a {req.data_size} GiB gp3 volume in {zone}")
        run_tags = tags.run_tags(req.run_id, req.owner, req.project)
        launched.volume = data_volume.create(
            clients, zone, req.data_size, run_tags, req.volume_name, poll=req.poll
        )
        launched.volume_created = launched.volume_format = True
        launched.volume_delete = not req.volume_name
    errors: list[str] = []
    if req.persistent:
        launch_fleet(clients, req, launched, tries, images, subnets, security_group, errors)
        say("provisioning", f"the spot fleet launched {launched.instance_id or 'nothing'}")
    _run_in_order(clients, req, launched, tries, images, subnets, security_group, errors, say)
    launched.tried = errors
    if launched.instance_id is None:
        alt = (
            "try --on-demand, --fallback TYPE,...|on-demand, or another region"
            if req.spot
            else "try another instance type or region"
        )
        raise NoCapacity(f"no capacity ({'; '.join(errors)}); {alt}")
    if errors:
        say("provisioning", f"fell back to {launched.instance_type} after: {'; '.join(errors)}")


def _run_in_order(
    clients: Clients,
    req: LaunchRequest,
    launched: Launched,
    tries: list[tuple[str, bool]],
    images: dict[str, dict],
    subnets: list[dict],
    security_group: str,
    errors: list[str],
    say: Progress,
) -> None:
    """One instance of the first candidate, in the first subnet, with capacity (the
    fleet's spot candidates are skipped); each capacity error is added to `errors`."""
    for name, spot in tries:
        if launched.instance_id is not None:
            break
        if req.persistent and spot:
            continue  # the fleet had these
        attempt = replace(req, instance_type=name, spot=spot)
        for subnet in subnets:
            where = f"{name} ({'spot' if spot else 'on-demand'}) in {subnet['AvailabilityZone']}"
            try:
                say("provisioning", f"launching {where}")
                inst = _run_instance(clients, attempt, images[name], subnet, security_group)
            except Exception as exc:
                if error_code(exc) in CAPACITY_ERRORS:
                    errors.append(f"{where}: {error_code(exc)}")
                    continue
                raise
            launched.instance_id = inst["InstanceId"]
            launched.created.append(inst["InstanceId"])
            launched.spot_request_id = inst.get("SpotInstanceRequestId")
            launched.instance_type = name
            launched.ami = images[name]["ImageId"]
            launched.spot = spot
            launched.availability_zone = subnet["AvailabilityZone"]
            break


def _wait_usable(clients: Clients, req: LaunchRequest, launched: Launched, say: Progress) -> None:
    """Until SSM reaches the instance: a new one must run first (then gets its volume)."""
    assert launched.instance_id is not None, "launched or chosen before it is waited on"
    if not launched.reused:
        say("provisioning", f"waiting for {launched.instance_id} to run")
        inst = wait_running(clients, launched.instance_id, poll=req.poll)
        launched.availability_zone = inst["Placement"]["AvailabilityZone"]
        launched.instance_type = inst.get("InstanceType") or launched.instance_type
        launched.ami = inst.get("ImageId") or launched.ami  # a fleet may pick a fallback
        if launched.volume:
            say("provisioning", f"attaching {launched.volume}")
            attach_volume(clients, launched.volume, launched.instance_id, poll=req.poll)
    say("starting", f"waiting for the SSM agent of {launched.instance_id}")
    wait_ssm_online(clients, launched.instance_id, timeout=req.ssm_timeout, poll=req.poll)


def _volume_zone(clients: Clients, req: LaunchRequest, launched: Launched) -> str | None:
    """The `--volume`'s AZ, and what the instance side does with it: runctl's own data
    volume (named, or this run's from an earlier attempt) is formatted if blank; one
    that is not kept is deleted at the run's end."""
    if not req.volume:
        return None
    vol = volume_of(clients, req.volume, req.run_id, req.share)
    vol_tags = tags.tag_dict(vol.get("Tags"))
    launched.volume_format = tags.VOLUME_NAME in vol_tags or vol_tags.get(tags.RUN_ID) == req.run_id
    launched.volume_delete = not tags.is_kept(vol_tags)
    return str(vol["AvailabilityZone"])


def _drop_created_volume(clients: Clients, launched: Launched) -> None:
    """A volume this launch created, for a launch that failed: it holds nothing yet."""
    if launched.volume_created and launched.volume:
        data_volume.delete_when_free(clients, launched.volume)
        launched.volume_created = False


def terminate_launched(clients: Clients, launched: Launched) -> list[str]:
    """Terminate what this launch created (never a reused instance); returns what was ended.

    Each step is tried on its own so one failure does not leave the rest running.
    """
    try:
        return _terminate_launched(clients, launched)
    finally:
        _drop_created_volume(clients, launched)


def _terminate_launched(clients: Clients, launched: Launched) -> list[str]:
    ended: list[str] = []
    if launched.reused or not launched.instance_id:
        return ended
    instance_ids = [launched.instance_id]
    if launched.fleet_id:
        # A refill launched before the delete (the instance died during bootstrap) is
        # ended too: the fleet's instances are looked up before and after its delete.
        instance_ids += fleet_instances(clients, launched.fleet_id)
        ended += delete_fleet(
            clients, launched.fleet_id, launched.launch_template_id, terminate=True
        )
        instance_ids += fleet_instances(clients, launched.fleet_id)
        instance_ids = list(dict.fromkeys(instance_ids))
    elif launched.spot_request_id:
        # first: a kept instance's persistent request would launch another in its place
        # (a one-time request ends with its instance; cancelling it first is harmless)
        if cancel_spot_request(clients, launched.spot_request_id):
            ended.append(launched.spot_request_id)
    last: Exception | None = None
    for attempt in range(5):
        try:
            clients.ec2.terminate_instances(InstanceIds=instance_ids)
            ended.extend(instance_ids)
            return ended
        except Exception as exc:
            if error_code(exc).startswith("InvalidInstanceID.NotFound"):
                return ended
            last = exc
            time.sleep(min(2**attempt, 10) * 0.2)
    raise LaunchError(
        f"could not terminate {launched.instance_id} ({error_code(last) or last}); "
        f"terminate it in the console or with `runctl cleanup --yes`"
    ) from last


def cancel_spot_request(clients: Clients, request_id: str) -> bool:
    """Cancel a spot request (open, active or disabled); False when it was already gone.

    Terminating before this succeeds would let a persistent request launch another
    instance, so a failure stops here with what to do."""
    try:
        clients.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=[request_id])
        return True
    except Exception as exc:
        if error_code(exc).startswith("InvalidSpotInstanceRequestID"):
            return False
        raise LaunchError(
            f"could not cancel spot request {request_id} ({error_code(exc) or exc}); "
            f"run `runctl cleanup --yes`, or cancel it, then terminate its instance, in the console"
        ) from exc
