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
at once, by priority; a one-time spot or on-demand launch tries them in order, each in
every subnet, on a capacity error. `on-demand` (last) is tried when the fleet placed
nothing in `fulfil_timeout`: that instance is not refilled. Everything created is
remembered in a `Launched` record; an exception at any later step terminates what this
launch created (never a reused instance) and re-raises.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from . import policy, tags
from .clients import AWSError, Clients, error_code
from .instance_spec import add_one_time_spot, instance_settings
from .spot_fleet import (
    Unfulfilled,
    create_fleet,
    create_launch_template,
    delete_fleet,
    fleet_instances,
    overrides,
    wait_fulfilled,
)

GPU_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
CPU_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
CAPACITY_ERRORS = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
}

Progress = Callable[[str, str], None]


class LaunchError(AWSError):
    pass


class InvalidInstanceType(LaunchError):
    pass


class VolumeZoneMismatch(LaunchError):
    pass


class NoCapacity(LaunchError):
    pass


@dataclass
class InstanceTypeInfo:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_name: str | None
    gpu_memory_gib: float
    arch: str

    def describe(self) -> str:
        text = f"{self.name}: {self.vcpus} vCPU, {self.memory_gib:g} GiB"
        if self.gpus:
            text += (
                f", {self.gpus} x {self.gpu_name or 'GPU'} ({self.gpu_memory_gib:g} GiB GPU memory)"
            )
        return text


@dataclass
class LaunchRequest:
    run_id: str
    owner: str
    project: str
    instance_type: str = "t3.micro"
    spot: bool = True
    ami: str | None = None
    instance_id: str | None = None  # --instance: reuse a running instance
    keep: bool = False
    volume: str | None = None
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
            "persistent": self.persistent,
            "fallback_from": self.tried,
        }


_TYPE_NAMES: dict[str, list[str]] = {}


def _all_type_names(clients: Clients) -> list[str]:
    names = _TYPE_NAMES.get(clients.region)
    if names is None:
        names = []
        for page in clients.ec2.get_paginator("describe_instance_types").paginate():
            names.extend(t["InstanceType"] for t in page["InstanceTypes"])
        _TYPE_NAMES[clients.region] = names
    return names


def validate_instance_type(clients: Clients, name: str) -> InstanceTypeInfo:
    """The type's CPU/GPU facts; an unknown type raises with the closest real names."""
    try:
        found = clients.ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
    except Exception as exc:
        if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        found = []
    if not found:
        close = difflib.get_close_matches(name, _all_type_names(clients), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {' or '.join(close)}?"
            if close
            else "; see `aws ec2 describe-instance-types`"
        )
        raise InvalidInstanceType(f"unknown instance type {name!r} in {clients.region}{hint}")
    t = found[0]
    gpus = t.get("GpuInfo", {}).get("Gpus", [])
    archs = t.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
    return InstanceTypeInfo(
        name=name,
        vcpus=int(t.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
        memory_gib=t.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024,
        gpus=sum(int(g.get("Count", 0)) for g in gpus),
        gpu_name=gpus[0].get("Name") if gpus else None,
        gpu_memory_gib=t.get("GpuInfo", {}).get("TotalGpuMemoryInMiB", 0) / 1024,
        arch="arm64" if "arm64" in archs and "x86_64" not in archs else "x86_64",
    )


def resolve_ami(clients: Clients, info: InstanceTypeInfo, ami: str | None = None) -> dict:
    """The image to boot: `--ami`, else the public SSM parameter for GPU (DLAMI) or CPU (AL2023)."""
    if not ami:
        template = GPU_AMI_PARAMETER if info.gpus else CPU_AMI_PARAMETER
        name = template.format(arch=info.arch)
        try:
            ami = clients.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except Exception as exc:
            raise LaunchError(
                f"cannot read the public AMI parameter {name} ({error_code(exc) or exc}); pass --ami ami-..."
            ) from exc
    try:
        images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        images = []
    if not images:
        raise LaunchError(
            f"AMI {ami} does not exist in {clients.region}; check --ami or the region"
        )
    return images[0]


def volume_zone(clients: Clients, volume_id: str) -> str:
    try:
        vols = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidVolume"):
            raise
        vols = []
    if not vols:
        raise LaunchError(
            f"volume {volume_id} not found in {clients.region}; check --volume and the region"
        )
    vol = vols[0]
    if vol["State"] != "available":
        raise LaunchError(f"volume {volume_id} is {vol['State']}, not available; detach it first")
    return vol["AvailabilityZone"]


def choose_subnets(clients: Clients, subnet: str | None, zone: str | None) -> list[dict]:
    """Candidate subnets, best first: the one given, else default subnets (of `zone` if set)."""
    ec2 = clients.ec2
    if subnet:
        subnets = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
        if zone and subnets[0]["AvailabilityZone"] != zone:
            raise VolumeZoneMismatch(
                f"subnet {subnet} is in {subnets[0]['AvailabilityZone']} but the volume is in {zone}; "
                f"choose a subnet in {zone} or a volume in {subnets[0]['AvailabilityZone']}"
            )
        return subnets
    filters = [{"Name": "default-for-az", "Values": ["true"]}]
    if zone:
        filters.append({"Name": "availability-zone", "Values": [zone]})
    subnets = ec2.describe_subnets(Filters=filters)["Subnets"]
    if not subnets:
        where = zone or clients.region
        raise LaunchError(
            f"no default subnet in {where}; set c.AWSBackend.subnet to a subnet there"
        )
    return sorted(subnets, key=lambda s: s["AvailabilityZone"])


def _run_instance(
    clients: Clients, req: LaunchRequest, image: dict, subnet: dict, security_group: str
) -> dict:
    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
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
    if req.spot:
        add_one_time_spot(kwargs, run_tags)
    return clients.ec2.run_instances(**kwargs)["Instances"][0]


def candidates(req: LaunchRequest) -> list[tuple[str, bool]]:
    """(instance type, spot) to try in order: the type asked for, then --fallback."""
    out = [(req.instance_type, req.spot)]
    for item in req.fallback:
        if item == "on-demand":
            out.append((req.instance_type, False))
        elif (item, req.spot) not in out:
            out.append((item, req.spot))
    return out


def _find_security_group(clients: Clients, vpc_id: str) -> str:
    from .setup import find_security_group

    group = find_security_group(clients, vpc_id)
    if not group:
        raise LaunchError(
            f"no {policy.SECURITY_GROUP_NAME} security group in {vpc_id}; run `runctl aws setup`"
        )
    return group


def wait_running(
    clients: Clients, instance_id: str, timeout: float = 600.0, poll: float = 2.0
) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        inst = clients.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0][
            "Instances"
        ][0]
        state = inst["State"]["Name"]
        if state == "running":
            return inst
        if state in ("shutting-down", "terminated", "stopping", "stopped"):
            reason = inst.get("StateReason", {}).get("Message", "")
            raise LaunchError(
                f"instance {instance_id} is {state} before it ran ({reason}); try again or --on-demand"
            )
        if time.monotonic() > deadline:
            raise LaunchError(
                f"instance {instance_id} not running after {timeout:.0f} s; try another type or region"
            )
        time.sleep(poll)


def wait_ssm_online(
    clients: Clients, instance_id: str, timeout: float = 600.0, poll: float = 2.0
) -> None:
    """Wait for the instance's SSM agent to report Online (boot + agent start)."""
    deadline = time.monotonic() + timeout
    delay = poll
    while True:
        info = clients.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )["InstanceInformationList"]
        if info and info[0].get("PingStatus") == "Online":
            return
        if time.monotonic() > deadline:
            raise LaunchError(
                f"the SSM agent of {instance_id} did not come online in {timeout:.0f} s; "
                f"check that its instance profile has AmazonSSMManagedInstanceCore (`runctl aws doctor`)"
            )
        time.sleep(delay)
        delay = min(delay * 1.5, 10.0)


def attach_volume(
    clients: Clients, volume_id: str, instance_id: str, poll: float = 2.0, timeout: float = 300.0
) -> None:
    clients.ec2.attach_volume(VolumeId=volume_id, InstanceId=instance_id, Device="/dev/sdf")
    deadline = time.monotonic() + timeout
    while True:
        vol = clients.ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
        if vol["State"] == "in-use":
            return
        if time.monotonic() > deadline:
            raise LaunchError(
                f"volume {volume_id} did not attach to {instance_id} in {timeout:.0f} s"
            )
        time.sleep(poll)


def _reuse(clients: Clients, req: LaunchRequest, launched: Launched) -> None:
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


def _launch_fleet(
    clients: Clients,
    req: LaunchRequest,
    launched: Launched,
    tries: list[tuple[str, bool]],
    images: dict[str, dict],
    subnets: list[dict],
    security_group: str,
    errors: list[str],
) -> None:
    """The spot fleet with every spot candidate; on no capacity in time it is deleted
    (with anything it launched late) and `errors` says so."""
    types = [name for name, spot in tries if spot]
    template_id = create_launch_template(clients, req, images[req.instance_type], security_group)
    launched.launch_template_id = template_id
    try:
        fleet_id = create_fleet(clients, req, template_id, overrides(types, images, subnets))
    except BaseException:
        delete_fleet(clients, None, template_id, terminate=True)
        launched.launch_template_id = None
        raise
    launched.fleet_id = fleet_id
    try:
        instance_id = wait_fulfilled(clients, fleet_id, req.fulfil_timeout, req.poll)
    except Unfulfilled as exc:
        zones = ", ".join(s["AvailabilityZone"] for s in subnets)
        errors.append(f"{', '.join(types)} (spot fleet) in {zones}: {exc.code}")
        late = fleet_instances(clients, fleet_id)
        delete_fleet(clients, fleet_id, template_id, terminate=True)
        if late:
            clients.ec2.terminate_instances(InstanceIds=late)
        launched.fleet_id = launched.launch_template_id = None
        return
    launched.instance_id = instance_id
    launched.created.append(instance_id)
    launched.instance_type = req.instance_type  # the instance's own type once it runs
    launched.ami = images[req.instance_type]["ImageId"]
    launched.spot = True
    launched.persistent = True


def provision(clients: Clients, req: LaunchRequest, progress: Progress | None = None) -> Launched:
    """Validate, then launch (or take over) the instance and wait until SSM can reach it.

    On any failure after something was created, that is terminated before the
    exception propagates (see `terminate_launched`).
    """
    say = progress or (lambda state, detail: None)
    launched = Launched(keep=req.keep, volume=req.volume)
    say("provisioning", "checking credentials")
    clients.identity()
    if req.instance_id:
        _reuse(clients, req, launched)
        if req.volume and volume_zone(clients, req.volume) != launched.availability_zone:
            raise VolumeZoneMismatch(
                f"volume {req.volume} is in {volume_zone(clients, req.volume)} but instance {req.instance_id} "
                f"is in {launched.availability_zone}; use an instance in the volume's zone"
            )
    else:
        if req.fallback and "on-demand" in req.fallback[:-1]:
            raise LaunchError("--fallback: on-demand can only come last (TYPE,...,on-demand)")
        tries = candidates(req)
        infos = {name: validate_instance_type(clients, name) for name, _ in tries}
        say("provisioning", infos[req.instance_type].describe())
        images = {name: resolve_ami(clients, info, req.ami) for name, info in infos.items()}
        zone = volume_zone(clients, req.volume) if req.volume else None
        subnets = choose_subnets(clients, req.subnet, zone)
        security_group = req.security_group or _find_security_group(clients, subnets[0]["VpcId"])
        errors: list[str] = []
        if req.persistent:
            _launch_fleet(clients, req, launched, tries, images, subnets, security_group, errors)
            say("provisioning", f"the spot fleet launched {launched.instance_id or 'nothing'}")
        for name, spot in tries:
            if launched.instance_id is not None:
                break
            if req.persistent and spot:
                continue  # the fleet had these
            attempt = replace(req, instance_type=name, spot=spot)
            for subnet in subnets:
                where = (
                    f"{name} ({'spot' if spot else 'on-demand'}) in {subnet['AvailabilityZone']}"
                )
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
    try:
        if not launched.reused:
            say("provisioning", f"waiting for {launched.instance_id} to run")
            inst = wait_running(clients, launched.instance_id, poll=req.poll)
            launched.availability_zone = inst["Placement"]["AvailabilityZone"]
            launched.instance_type = inst.get("InstanceType") or launched.instance_type
            launched.ami = inst.get("ImageId") or launched.ami  # a fleet may pick a fallback
            if req.volume:
                say("provisioning", f"attaching {req.volume}")
                attach_volume(clients, req.volume, launched.instance_id, poll=req.poll)
        say("starting", f"waiting for the SSM agent of {launched.instance_id}")
        wait_ssm_online(clients, launched.instance_id, timeout=req.ssm_timeout, poll=req.poll)
    except BaseException:
        terminate_launched(clients, launched)
        raise
    return launched


def terminate_launched(clients: Clients, launched: Launched) -> list[str]:
    """Terminate what this launch created (never a reused instance); returns what was ended.

    Each step is tried on its own so one failure does not leave the rest running.
    """
    ended = []
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
    elif launched.spot_request_id:  # a one-time spot request ends with its instance
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
