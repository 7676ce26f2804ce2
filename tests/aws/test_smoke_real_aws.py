"""Opt-in smoke suite against real AWS: every launch mode once, each under a dollar bound,
and nothing left behind afterwards (checked by the tag `runctl:project=runctl-smoke`).

Runs only with RUNCTL_AWS_SMOKE=1 and real credentials, on its own (docs/aws.md,
"The real-AWS smoke suite"):

    RUNCTL_AWS_SMOKE=1 AWS_PROFILE=... RUNCTL_SMOKE_REGION=us-east-1 \\
        python -m pytest tests/aws/test_smoke_real_aws.py -n 0 -v

Each test drives the `runctl` parser (cli.build_call) and a Session, as the shell does,
with `--max-hours` and `--cost-limit` on every run; its bound is computed from the bundled
prices before anything is launched and asserted under the test's cap. Every instance's
life is bounded by the SSM wait + the bootstrap timeout + --max-hours (+ the idle minutes
of a kept one), all set here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(
    os.environ.get("RUNCTL_AWS_SMOKE") != "1",
    reason="real-AWS smoke test: set RUNCTL_AWS_SMOKE=1 with credentials",
)

PROJECT = "runctl-smoke"
PROJECT_TAG = "runctl:project"
REGION = os.environ.get("RUNCTL_SMOKE_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
SMALL = "t3.micro"  # the smallest type in the bundled table
CLUSTER = "c5.large"  # cluster placement groups refuse burstable (t2/t3) types
ROOT_GB = 20  # gp3 root of every instance (the AL2023 image needs 8)
MAX_HOURS = 0.25  # every run stops itself after 15 minutes
SSM_TIMEOUT = 600.0
BOOTSTRAP_TIMEOUT = 900.0
IDLE_MINUTES = 10  # a kept instance stops itself after this
TEARDOWN_HOURS = 10 / 60  # the slack this suite gives teardown
# the most each test may cost, asserted against its bound before launch
CAP = {
    "on_demand": 0.02,
    "spot": 0.02,
    "keep_reuse": 0.05,
    "sweep": 0.05,
    "volume": 0.02,
    "nodes": 0.25,
}
SCRIPT = """
from runctl_jupyter import runctl
for i in range(3):
    runctl.log(step=i, loss=1 / (i + 1))
print("smoke ok")
"""
VOLUME_SCRIPT = """
from runctl_jupyter import runctl
first = open("volume/etc/os-release").read().splitlines()[0]  # the volume, mounted by the agent
print(first)
runctl.log(step=0, found=1.0 if first.startswith("NAME=") else 0.0)
"""
NODES_SCRIPT = """
import torch
import torch.distributed as dist
from runctl_jupyter import runctl
dist.init_process_group("gloo")
t = torch.ones(1) * (dist.get_rank() + 1)
dist.all_reduce(t)
runctl.log(step=0, rank_sum=float(t.item()))
dist.destroy_process_group()
"""
TORCH_CPU = "--extra-index-url https://download.pytorch.org/whl/cpu\ntorch\n"


# -- the bound ---------------------------------------------------------------------------
def instance_hours(runs: int = 1, idle_minutes: float = 0.0) -> float:
    """The longest one instance can live: per run the SSM wait, the bootstrap and the run,
    then a kept instance's idle minutes, and teardown's slack (EC2's minimum is a minute)."""
    per_run = (SSM_TIMEOUT + BOOTSTRAP_TIMEOUT) / 3600 + MAX_HOURS
    return max(runs * per_run + idle_minutes / 60 + TEARDOWN_HOURS, 1 / 60)


def bound(instance_type: str, instances: int, hours: float, extra_gb: float = 0.0) -> float:
    """Dollars at most: the bundled on-demand price (a spot price never exceeds it, as the
    spot max price is the on-demand price) and gp3 root volumes, for `hours` each."""
    from runctl_jupyter.cost.prices import HOURS_PER_MONTH, table

    rows = table()["on_demand"]
    rate = (rows.get(REGION) or rows["us-east-1"])[instance_type]
    gp3 = table()["ebs_gb_month"].get(REGION, table()["ebs_gb_month"]["us-east-1"])["gp3"]
    ebs = (instances * ROOT_GB + extra_gb) * gp3 / HOURS_PER_MONTH
    return round(instances * rate * hours + ebs * hours, 4)


def within(test: str, dollars: float) -> float:
    assert dollars <= CAP[test], f"{test}: bound ${dollars:.4f} is over its cap ${CAP[test]}"
    return dollars


# -- the session and its runs ------------------------------------------------------------
@pytest.fixture(scope="module")
def clients() -> Any:
    assert os.environ.get("AWS_ACCESS_KEY_ID") != "testing" and not os.environ.get(
        "AWS_ENDPOINT_URL"
    ), "run the smoke suite on its own, with real credentials and no AWS_ENDPOINT_URL"
    from runctl_jupyter.aws.clients import Clients
    from runctl_jupyter.aws.setup import setup

    made = Clients(region=REGION)
    made.identity()
    setup(made)  # idempotent; its bucket, role and group are kept (role=setup)
    return made


@pytest.fixture
def session(clients: Any, tmp_path: Path) -> Iterator[Any]:
    from traitlets.config import Config

    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    settings = Config()
    settings.AWSBackend.region = REGION
    settings.AWSBackend.root_gb = ROOT_GB
    settings.AWSBackend.ssm_timeout = SSM_TIMEOUT
    settings.AWSBackend.bootstrap_timeout = BOOTSTRAP_TIMEOUT
    config = Runctl(config=settings, home=str(tmp_path / "home"), project=PROJECT)
    yield Session(config=config, shell=None)
    sweep_up(clients)  # whatever a failed test left, so it stops billing


def run(session: Any, tmp_path: Path, code: str, *options: str, dollars: float) -> Any:
    """`runctl train SCRIPT --backend aws ...` as the shell parses it, blocking until it ends."""
    from runctl_jupyter.cli import build_call

    script = tmp_path / "smoke.py"
    script.write_text(code)
    argv = ["train", str(script), "--backend", "aws", "--project", PROJECT]
    argv += ["--max-hours", str(MAX_HOURS), "--cost-limit", f"{dollars:.4f}", "--yes", *options]
    method, kwargs = build_call(argv)
    return getattr(session, method)(**kwargs)


def target(session: Any, run_id: str) -> dict:
    from runctl_jupyter.backends.aws_target import read_target
    from runctl_jupyter.store.folders import read_spec

    run_dir = session.store.run_dir(run_id)
    return read_target(run_dir, read_spec(run_dir))


def succeeded(result: Any) -> None:
    row = result.row
    assert row["status"] == "succeeded", f"run {result.id}: {row['status']} ({row.get('reason')})"


# -- what is left, by tag ----------------------------------------------------------------
def _tagged(key: str = PROJECT_TAG) -> list[dict]:
    return [{"Name": f"tag:{key}", "Values": [PROJECT]}]


def leftovers(clients: Any) -> dict[str, list[str]]:
    """Everything tagged runctl:project=runctl-smoke that still exists (or bills)."""
    from runctl_jupyter.aws import tags

    ec2 = clients.ec2
    alive = ["pending", "running", "stopping", "stopped", "shutting-down"]
    res = ec2.describe_instances(
        Filters=[*_tagged(), {"Name": "instance-state-name", "Values": alive}]
    )
    fleets = [
        f["FleetId"]
        for f in ec2.describe_fleets()["Fleets"]
        if tags.tag_dict(f.get("Tags")).get(PROJECT_TAG) == PROJECT
        and not f.get("FleetState", "").startswith("deleted")
    ]
    requests = ec2.describe_spot_instance_requests(
        Filters=[*_tagged(), {"Name": "state", "Values": ["open", "active"]}]
    )["SpotInstanceRequests"]
    groups = ec2.describe_placement_groups(Filters=_tagged())["PlacementGroups"]
    return {
        "instances": [i["InstanceId"] for r in res["Reservations"] for i in r["Instances"]],
        "volumes": [v["VolumeId"] for v in ec2.describe_volumes(Filters=_tagged())["Volumes"]],
        "fleets": fleets,
        "launch-templates": [
            t["LaunchTemplateId"]
            for t in ec2.describe_launch_templates(Filters=_tagged())["LaunchTemplates"]
        ],
        "spot-requests": [r["SpotInstanceRequestId"] for r in requests],
        "placement-groups": [g["GroupName"] for g in groups if g.get("State") != "deleted"],
        "security-groups": [
            g["GroupId"] for g in ec2.describe_security_groups(Filters=_tagged())["SecurityGroups"]
        ],
    }


def assert_nothing_left(clients: Any, minutes: float = 12.0) -> None:
    """runctl's own teardown ends everything it made: wait for it (a multi-node run's groups
    are deleted in the background once its nodes are gone), then nothing may be left."""
    deadline = time.monotonic() + minutes * 60
    while True:
        left = {k: v for k, v in leftovers(clients).items() if v}
        if not left or time.monotonic() > deadline:
            break
        time.sleep(15)
    assert not left, f"left behind (tag {PROJECT_TAG}={PROJECT}): {left}"


def sweep_up(clients: Any) -> None:
    """End whatever is left, in cleanup's order (fleets and requests before instances)."""
    ec2 = clients.ec2
    left = leftovers(clients)
    if left["fleets"]:
        ec2.delete_fleets(FleetIds=left["fleets"], TerminateInstances=True)
    if left["spot-requests"]:
        ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=left["spot-requests"])
    if left["instances"]:
        ec2.terminate_instances(InstanceIds=left["instances"])
        ec2.get_waiter("instance_terminated").wait(InstanceIds=left["instances"])
    for template in left["launch-templates"]:
        ec2.delete_launch_template(LaunchTemplateId=template)
    for name in left["placement-groups"]:
        ec2.delete_placement_group(GroupName=name)
    for group in left["security-groups"]:
        ec2.delete_security_group(GroupId=group)
    for volume in leftovers(clients)["volumes"]:
        ec2.get_waiter("volume_available").wait(VolumeIds=[volume])
        ec2.delete_volume(VolumeId=volume)
    from runctl_jupyter.aws import run_role
    from runctl_jupyter.aws.listers import run_roles

    for role in run_roles(clients):  # free of charge, but not to be left behind
        if role.tags.get(PROJECT_TAG) == PROJECT:
            run_role.delete(clients, role.id)


# -- the launch modes --------------------------------------------------------------------
def test_on_demand(session: Any, clients: Any, tmp_path: Path):
    dollars = within("on_demand", bound(SMALL, 1, instance_hours()))
    result = run(session, tmp_path, SCRIPT, "--instance-type", SMALL, "--on-demand",
                 "--pip", "none", dollars=dollars)  # fmt: skip
    succeeded(result)
    assert len(result.history(["loss"])["loss"]) == 3
    assert_nothing_left(clients)


def test_spot(session: Any, clients: Any, tmp_path: Path):
    dollars = within("spot", bound(SMALL, 1, instance_hours()))
    result = run(session, tmp_path, SCRIPT, "--instance-type", SMALL, "--spot",
                 "--pip", "none", dollars=dollars)  # fmt: skip
    succeeded(result)
    instance = target(session, result.id)["instance_id"]
    found = clients.ec2.describe_instances(InstanceIds=[instance])["Reservations"][0]
    assert found["Instances"][0].get("InstanceLifecycle") == "spot"
    assert_nothing_left(clients)


def test_spot_keep_then_a_second_run_reuses_it(session: Any, clients: Any, tmp_path: Path):
    hours = instance_hours(runs=2, idle_minutes=IDLE_MINUTES)
    dollars = within("keep_reuse", bound(SMALL, 1, hours))
    first = run(session, tmp_path, SCRIPT, "--instance-type", SMALL, "--spot", "--keep",
                "--idle-minutes", str(IDLE_MINUTES), "--pip", "none", dollars=dollars)  # fmt: skip
    succeeded(first)
    kept = target(session, first.id)["instance_id"]
    state = clients.ec2.describe_instances(InstanceIds=[kept])["Reservations"][0]["Instances"][0]
    assert state["State"]["Name"] in ("running", "stopping", "stopped")  # kept, not terminated
    second = run(session, tmp_path, SCRIPT, "--instance", kept, "--pip", "none", dollars=dollars)
    succeeded(second)
    assert target(session, second.id)["instance_id"] == kept
    sweep_up(clients)  # a kept instance is the user's to end: end it (and its request or fleet)
    assert_nothing_left(clients)


def test_a_sweep_with_two_slots(session: Any, clients: Any, tmp_path: Path):
    from runctl_jupyter.cli import build_call

    dollars = within("sweep", bound(SMALL, 2, instance_hours()))
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT)
    method, kwargs = build_call([
        "sweep", str(script), "--backend", "aws", "--project", PROJECT,
        "--instance-type", SMALL, "--on-demand", "--pip", "none",
        "--grid", "lr=0.1,0.2", "--max-parallel", "2",
        "--max-hours", str(MAX_HOURS), "--cost-limit", f"{dollars:.4f}", "--yes",
    ])  # fmt: skip
    handle = getattr(session, method)(**kwargs)
    handle.wait()
    statuses = [session.store.get(rid)["status"] for rid in handle.run_ids]
    assert statuses == ["succeeded", "succeeded"], statuses
    assert_nothing_left(clients)


def test_a_volume_is_attached_and_mounted(session: Any, clients: Any, tmp_path: Path):
    from runctl_jupyter.aws.ami import CPU_AMI_PARAMETER

    ec2 = clients.ec2
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    offered = {
        o["Location"]
        for o in ec2.describe_instance_type_offerings(
            LocationType="availability-zone",
            Filters=[{"Name": "instance-type", "Values": [SMALL]}],
        )["InstanceTypeOfferings"]
    }
    zones = sorted(s["AvailabilityZone"] for s in subnets["Subnets"])
    zone = next(z for z in zones if z in offered)
    # A filesystem the agent can mount (it never formats): the arm64 AL2023 image's root
    # snapshot, an XFS whose UUID differs from the x86 instance's own root.
    name = CPU_AMI_PARAMETER.format(arch="arm64")
    ami = clients.ssm.get_parameter(Name=name)["Parameter"]["Value"]
    image = ec2.describe_images(ImageIds=[ami])["Images"][0]
    snapshot = image["BlockDeviceMappings"][0]["Ebs"]
    gb = int(snapshot["VolumeSize"])
    dollars = within("volume", bound(SMALL, 1, instance_hours(), extra_gb=gb))
    volume = ec2.create_volume(
        AvailabilityZone=zone,
        SnapshotId=snapshot["SnapshotId"],
        Size=gb,
        VolumeType="gp3",
        TagSpecifications=[  # opted in to runctl (docs/aws.md, *Who can reach what*)
            {
                "ResourceType": "volume",
                "Tags": [
                    {"Key": PROJECT_TAG, "Value": PROJECT},
                    {"Key": "runctl:managed", "Value": "true"},
                    {"Key": "runctl:persistent", "Value": "true"},
                ],
            }
        ],
    )["VolumeId"]
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume])
    result = run(session, tmp_path, VOLUME_SCRIPT, "--instance-type", SMALL, "--on-demand",
                 "--volume", volume, "--pip", "none", dollars=dollars)  # fmt: skip
    succeeded(result)
    assert result.metrics.get("found") == 1.0
    ec2.get_waiter("volume_available").wait(VolumeIds=[volume])  # detached with its instance
    ec2.delete_volume(VolumeId=volume)  # the user's volume: runctl never deletes it
    assert_nothing_left(clients)


def test_two_nodes(session: Any, clients: Any, tmp_path: Path):
    dollars = within("nodes", bound(CLUSTER, 2, instance_hours()))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(TORCH_CPU)  # the CPU wheel: torchrun and gloo, no CUDA download
    result = run(session, tmp_path, NODES_SCRIPT, "--instance-type", CLUSTER, "--on-demand",
                 "--nodes", "2", "--requirements", str(requirements), dollars=dollars)  # fmt: skip
    succeeded(result)
    assert result.metrics.get("rank_sum") == 3.0  # ranks 0 and 1 on two nodes: 1 + 2
    cluster = target(session, result.id)["cluster"]
    assert len(cluster["nodes"]) == 2 and cluster["placement_group"]
    assert_nothing_left(clients)
