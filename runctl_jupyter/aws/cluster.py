"""The instances of a multi-node run (`--nodes M`): launched together, ended together.

    check_plan()  the run's distributed plan against the raw instance type entry
                  (`--gpus all` resolved, `--gpus 4` on a 1-GPU type refused, cluster
                  placement and EFA support), before anything is created
    provision()   a per-run security group whose only inbound rule is "all traffic
                  from itself", a cluster placement group, then M instances in ONE
                  RunInstances call (all or none, one subnet, so one AZ) with EFA
                  interfaces where the type supports them; waits for every node
    teardown()    terminates every node (spot requests cancelled), then deletes the
                  placement group and the security group once no node is in them

Every resource carries the run's tags (aws/tags.py), so `runctl resources` lists
them and `runctl cleanup` removes them when a run ended without its teardown.
The cluster's facts (a plain dict kept in spec["target"]["cluster"]):

    {"nodes": [{"instance_id": "i-..", "private_ip": "10.0.0.5", "spot_request_id": null}],
     "placement_group": "runctl-<run>-<attempt>-<hex>", "security_group": "sg-..", "availability_zone":
     "us-east-1a", "efa": true, "port": 29500}
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from .. import distributed
from . import tags
from .ami import resolve_ami
from .candidates import choose_subnets
from .clients import Clients, error_code
from .instance_ready import wait_running, wait_ssm_online
from .instance_spec import add_one_time_spot, instance_settings
from .instance_types import validate_instance_type
from .launch import LaunchRequest
from .launch_errors import CAPACITY_ERRORS, LaunchError, NoCapacity
from .run_role import launch_when_ready

RDZV_PORT = 29500  # torchrun's usual master port, on node 0's private address
IN_USE = {"InvalidPlacementGroup.InUse", "DependencyViolation", "InvalidGroup.InUse"}
ENDING = {"shutting-down", "terminated"}
GONE = {"InvalidPlacementGroup.Unknown", "InvalidGroup.NotFound", "InvalidGroupId.NotFound"}

Progress = Callable[[str, str], None]


def instance_type_entry(clients: Clients, name: str) -> dict:
    """The raw `describe_instance_types` entry (unknown types raise with suggestions)."""
    validate_instance_type(clients, name)
    return clients.ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"][0]


def check_plan(clients: Clients, plan: dict, req: LaunchRequest) -> dict:
    """The plan completed against the instance type, or a RunctlError; creates nothing."""
    nodes = int(plan.get("nodes") or 1)
    if nodes > 1:
        for given, flag, why in (
            (req.instance_id, "--instance", "one running instance cannot be several nodes"),
            (req.volume, "--volume", "one EBS volume attaches to one node only"),
            (req.data_size, "--data-size", "one EBS volume attaches to one node only"),
            (req.keep, "--keep", "the nodes of a multi-node run end with it"),
        ):
            if given:
                raise LaunchError(f"{flag} with --nodes {nodes}: {why}; drop {flag}")
    if req.instance_id:  # a reused instance: check against its own type
        res = clients.ec2.describe_instances(InstanceIds=[req.instance_id])["Reservations"]
        name = res[0]["Instances"][0]["InstanceType"] if res else req.instance_type
    else:
        name = req.instance_type
    return distributed.check_instance_type(plan, instance_type_entry(clients, name))


def _suffix() -> str:
    """Group names must be unique while an earlier launch's groups are still being deleted."""
    return secrets.token_hex(3)


def _security_group(clients: Clients, req: LaunchRequest, vpc_id: str, attempt: int) -> str:
    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
    group = clients.ec2.create_security_group(
        GroupName=f"runctl-run-{req.run_id}-{attempt}-{_suffix()}",
        Description=f"runctl run {req.run_id}: traffic between its nodes only",
        VpcId=vpc_id,
        TagSpecifications=[{"ResourceType": "security-group", "Tags": tags.tag_list(run_tags)}],
    )["GroupId"]
    # The one inbound rule: every protocol and port, from members of this group (NCCL/gloo,
    # the rendezvous, EFA). Outbound stays the default (SSM and S3 are reached outbound).
    clients.ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "-1",
                "UserIdGroupPairs": [{"GroupId": group, "Description": "runctl nodes"}],
            }
        ],
    )
    return group


def _placement_group(clients: Clients, req: LaunchRequest, attempt: int) -> str:
    # one per launch: a resumed run's new nodes never wait for the old group's deletion
    name = f"runctl-{req.run_id}-{attempt}-{_suffix()}"
    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
    clients.ec2.create_placement_group(
        GroupName=name,
        Strategy="cluster",
        TagSpecifications=[{"ResourceType": "placement-group", "Tags": tags.tag_list(run_tags)}],
    )
    return name


def instances_request(
    req: LaunchRequest,
    image: dict,
    subnet: dict,
    security_group: str,
    placement_group: str,
    nodes: int,
    efa: bool,
) -> dict:
    """RunInstances parameters for all nodes: the single-node launch's (IMDSv2, encrypted
    root, tags) plus the placement group, the per-run group and EFA interfaces."""
    run_tags = tags.run_tags(req.run_id, req.owner, req.project)
    interface: dict[str, Any] = {
        "DeviceIndex": 0,
        "SubnetId": subnet["SubnetId"],
        "Groups": [security_group],
        "DeleteOnTermination": True,
    }
    if efa:
        interface["InterfaceType"] = "efa"
    kwargs: dict[str, Any] = {
        "ImageId": image["ImageId"],
        "InstanceType": req.instance_type,
        "MinCount": nodes,  # all or none: a partial cluster cannot train
        "MaxCount": nodes,
        "NetworkInterfaces": [interface],
        "Placement": {
            "GroupName": placement_group,
            "AvailabilityZone": subnet["AvailabilityZone"],
        },
        **instance_settings(req.instance_profile, req.root_gb, image, run_tags),
    }
    if req.spot:
        add_one_time_spot(kwargs, run_tags)
    return kwargs


def provision(
    clients: Clients,
    req: LaunchRequest,
    plan: dict,
    attempt: int = 1,
    progress: Progress | None = None,
) -> dict:
    """Launch the run's nodes and wait until SSM reaches each; returns the cluster facts.
    Any failure ends what was created (`teardown`) before the exception propagates."""
    say = progress or (lambda state, detail: None)
    nodes = int(plan["nodes"])
    efa = bool(plan.get("efa"))
    info = validate_instance_type(clients, req.instance_type)
    image = resolve_ami(clients, info, req.ami)
    subnets = choose_subnets(clients, req.subnet, None)
    cluster: dict[str, Any] = {
        "nodes": [],
        "placement_group": None,
        "security_group": None,
        "availability_zone": None,
        "efa": efa,
        "port": RDZV_PORT,
    }
    try:
        say("provisioning", f"a security group and a cluster placement group for {nodes} nodes")
        cluster["security_group"] = _security_group(clients, req, subnets[0]["VpcId"], attempt)
        cluster["placement_group"] = _placement_group(clients, req, attempt)
        errors = []
        launched: list[dict] = []
        for subnet in subnets:
            if subnet["VpcId"] != subnets[0]["VpcId"]:
                continue  # the security group belongs to one VPC
            zone = subnet["AvailabilityZone"]
            kind = "spot" if req.spot else "on-demand"
            say("provisioning", f"launching {nodes} x {req.instance_type} ({kind}) in {zone}")
            kwargs = instances_request(
                req,
                image,
                subnet,
                cluster["security_group"],
                cluster["placement_group"],
                nodes,
                efa,
            )
            try:
                answer = launch_when_ready(lambda kw=kwargs: clients.ec2.run_instances(**kw))
                launched = answer["Instances"]
            except Exception as exc:
                if error_code(exc) in CAPACITY_ERRORS:
                    errors.append(f"{zone}: {error_code(exc)}")
                    continue
                raise
            cluster["availability_zone"] = zone
            break
        if not launched:
            alt = "--on-demand, " if req.spot else ""
            raise NoCapacity(
                f"no capacity for {nodes} x {req.instance_type} in one placement group "
                f"({'; '.join(errors)}); try {alt}fewer --nodes, another type or region"
            )
        # node order is launch order (AMI launch index): node 0 is the rendezvous host
        launched.sort(key=lambda i: int(i.get("AmiLaunchIndex", 0)))
        cluster["nodes"] = [
            {
                "instance_id": i["InstanceId"],
                "private_ip": i.get("PrivateIpAddress"),
                "spot_request_id": i.get("SpotInstanceRequestId"),
            }
            for i in launched
        ]
        for rank, node in enumerate(cluster["nodes"]):
            say("provisioning", f"waiting for node {rank} ({node['instance_id']}) to run")
            inst = wait_running(clients, node["instance_id"], poll=req.poll)
            node["private_ip"] = inst.get("PrivateIpAddress") or node["private_ip"]
        for rank, node in enumerate(cluster["nodes"]):
            say("starting", f"waiting for the SSM agent of node {rank} ({node['instance_id']})")
            wait_ssm_online(clients, node["instance_id"], timeout=req.ssm_timeout, poll=req.poll)
    except BaseException:
        teardown(clients, cluster)
        raise
    return cluster


def rendezvous_endpoint(cluster: dict) -> str:
    """Node 0's private address and the rendezvous port: what every node's torchrun joins."""
    return f"{cluster['nodes'][0]['private_ip']}:{int(cluster.get('port') or RDZV_PORT)}"


def instance_ids(cluster: dict) -> list[str]:
    return [n["instance_id"] for n in cluster.get("nodes") or [] if n.get("instance_id")]


def terminate_nodes(clients: Clients, cluster: dict) -> list[str]:
    """Terminate every node and cancel their spot requests; returns the ids ended.
    Each call is tried on its own so one failure does not leave the rest running."""
    try:
        states = node_states(clients, cluster)
    except Exception:  # noqa: BLE001 - cannot tell: terminate them all
        states = {}
    # ended already (node 0's agent ends them all): nothing to do, and EC2 may refuse again
    ids = [i for i in instance_ids(cluster) if states.get(i) not in ENDING]
    requests = [
        n["spot_request_id"] for n in cluster.get("nodes") or [] if n.get("spot_request_id")
    ]
    if requests:
        try:
            clients.ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=requests)
        except Exception:  # noqa: BLE001 - terminating the instances matters more
            pass
    if not ids:
        return []
    last: Exception | None = None
    for attempt in range(5):
        try:
            clients.ec2.terminate_instances(InstanceIds=ids)
            return ids
        except Exception as exc:  # noqa: BLE001
            if error_code(exc).startswith("InvalidInstanceID.NotFound") or _all_ending(
                clients, cluster, ids
            ):
                return ids  # someone else (node 0's agent) terminated them meanwhile
            last = exc
            time.sleep(min(2**attempt, 10) * 0.2)
    raise LaunchError(
        f"could not terminate the nodes {', '.join(ids)} ({error_code(last) or last}); "
        "terminate them in the console or with `runctl cleanup --yes`"
    ) from last


def _all_ending(clients: Clients, cluster: dict, ids: list[str]) -> bool:
    try:
        states = node_states(clients, cluster)
    except Exception:  # noqa: BLE001
        return False
    return all(states.get(i) in ENDING for i in ids)


def delete_groups(clients: Clients, cluster: dict, wait: float = 0.0, poll: float = 2.0) -> bool:
    """Delete the placement group and the security group; both stay in use until every
    node is terminated, so this retries for up to `wait` seconds. True when both are gone."""
    deadline = time.monotonic() + wait
    pending = {
        "placement_group": cluster.get("placement_group"),
        "security_group": cluster.get("security_group"),
    }
    while True:
        for key, value in list(pending.items()):
            if not value:
                pending.pop(key)
                continue
            try:
                if key == "placement_group":
                    clients.ec2.delete_placement_group(GroupName=value)
                else:
                    clients.ec2.delete_security_group(GroupId=value)
                pending.pop(key)
            except Exception as exc:  # noqa: BLE001
                code = error_code(exc)
                if code in GONE:
                    pending.pop(key)
                elif code not in IN_USE:
                    raise
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def teardown(clients: Clients, cluster: dict, wait: float = 0.0, poll: float = 2.0) -> bool:
    """End the cluster: every node now, then the groups (at once when AWS lets us, else
    retried in a background thread for up to 10 minutes; `runctl cleanup` removes what
    a closed kernel left). True when everything is gone already."""
    terminate_nodes(clients, cluster)
    if delete_groups(clients, cluster, wait=wait, poll=poll):
        return True

    def later() -> None:
        try:
            delete_groups(clients, cluster, wait=600.0, poll=10.0)
        except Exception:  # noqa: BLE001 - `runctl cleanup` is the fallback
            pass

    threading.Thread(target=later, name="runctl-cluster-groups", daemon=True).start()
    return False


def node_states(clients: Clients, cluster: dict) -> dict[str, str]:
    """Instance id -> EC2 state of every node (a missing one: terminated)."""
    ids = instance_ids(cluster)
    states = dict.fromkeys(ids, "terminated")
    if not ids:  # no filter at all would describe every instance of the account
        return states
    try:
        res = clients.ec2.describe_instances(InstanceIds=ids)["Reservations"]
    except Exception as exc:  # noqa: BLE001
        if not error_code(exc).startswith("InvalidInstanceID"):
            raise
        return states
    for r in res:
        for inst in r["Instances"]:
            states[inst["InstanceId"]] = inst["State"]["Name"]
    return states
