"""Launch: validation before anything is created, tags/IMDSv2/encryption, cleanup on failure."""

from __future__ import annotations

import pytest

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.ami import resolve_ami
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.instance_types import validate_instance_type
from runctl_jupyter.aws.launch import LaunchRequest, provision
from runctl_jupyter.aws.launch_errors import (
    InvalidInstanceType,
    LaunchError,
    NoCapacity,
    VolumeZoneMismatch,
)
from runctl_jupyter.aws.setup import setup


def _instances(aws: Clients, states=("pending", "running")) -> list[dict]:
    res = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": list(states)}]
    )
    return [i for r in res["Reservations"] for i in r["Instances"]]


def _req(**kw) -> LaunchRequest:
    base = dict(
        run_id="r1", owner="ann", project="proj", instance_type="t3.micro", poll=0.05, ssm_timeout=5
    )
    base.update(kw)
    return LaunchRequest(**base)


@pytest.fixture
def ready(aws: Clients) -> Clients:
    setup(aws)
    return aws


def test_unknown_instance_type_suggests_the_closest(aws: Clients):
    with pytest.raises(InvalidInstanceType, match="did you mean g5.xlarge"):
        validate_instance_type(aws, "g5.xlarg")


def test_gpu_instance_type_reports_gpus(aws: Clients):
    info = validate_instance_type(aws, "g5.xlarge")
    assert info.gpus == 1 and info.gpu_name == "A10G"
    assert "1 x A10G" in info.describe()


def test_gpu_types_get_the_deep_learning_ami_and_cpu_types_amazon_linux(aws: Clients):
    gpu = resolve_ami(aws, validate_instance_type(aws, "g5.xlarge"))
    cpu = resolve_ami(aws, validate_instance_type(aws, "t3.micro"))
    assert gpu["ImageId"] == aws.test_amis["dlami-gpu"]
    assert cpu["ImageId"] == aws.test_amis["al2023-x86"]


def test_ami_override_must_exist(aws: Clients):
    info = validate_instance_type(aws, "t3.micro")
    assert (
        resolve_ami(aws, info, aws.test_amis["dlami-gpu"])["ImageId"] == aws.test_amis["dlami-gpu"]
    )
    with pytest.raises(LaunchError, match="does not exist"):
        resolve_ami(aws, info, "ami-0000000000000dead")


def test_launch_tags_requires_imdsv2_and_encrypts_root(ready: Clients):
    states = []
    launched = provision(ready, _req(spot=True), progress=lambda s, d: states.append(s))
    inst = _instances(ready)[0]
    assert inst["InstanceId"] == launched.instance_id
    t = tags.tag_dict(inst["Tags"])
    assert t == {
        "runctl:managed": "true",
        "runctl:run-id": "r1",
        "runctl:owner": "ann",
        "runctl:project": "proj",
        "runctl:team": "",  # no team set: the cost-allocation key, empty
    }
    assert inst["MetadataOptions"]["HttpTokens"] == "required"
    assert inst["InstanceLifecycle"] == "spot"
    vol_id = inst["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    assert ready.ec2.describe_volumes(VolumeIds=[vol_id])["Volumes"][0]["Encrypted"] is True
    assert states[0] == "provisioning" and states[-1] == "starting"
    assert launched.facts()["spot"] is True and launched.facts()["reused"] is False


def test_on_demand_and_keep(ready: Clients):
    provision(ready, _req(spot=False, keep=True))
    inst = _instances(ready)[0]
    assert "InstanceLifecycle" not in inst
    assert tags.tag_dict(inst["Tags"])[tags.KEEP] == "true"


def test_typo_creates_nothing(ready: Clients):
    with pytest.raises(InvalidInstanceType):
        provision(ready, _req(instance_type="t3.mirco"))
    assert ready.calls.get("ec2.RunInstances", 0) == 0


@pytest.mark.parametrize(
    "operation",
    [
        "ec2.DescribeInstances",
        "ssm.DescribeInstanceInformation",
        "ec2.AttachVolume",
        "ec2.DescribeVolumes",
    ],
)
def test_failure_after_launch_terminates_the_instance(
    ready: Clients, operation: str, fail, data_volume
):
    vol = data_volume(ready, "us-east-1a", 10)
    # DescribeVolumes is called once for the AZ check before launch: fail the later (attach wait) calls
    skip = 1 if operation == "ec2.DescribeVolumes" else 0
    injected = fail(ready, operation, code="InjectedFailure", skip=skip)
    with pytest.raises(Exception, match="InjectedFailure"):
        provision(ready, _req(volume=vol))
    injected.remove()
    assert injected.count >= 1
    assert _instances(ready) == []
    assert len(_instances(ready, states=("shutting-down", "terminated"))) == 1


def test_ssm_never_online_terminates_with_advice(ready: Clients):
    # the instance never runs: the SSM registry (moto extension) only reports running instances
    ready.ec2.meta.events.register(
        "after-call.ec2.RunInstances",
        lambda parsed, **_: ready.ec2.stop_instances(
            InstanceIds=[parsed["Instances"][0]["InstanceId"]]
        ),
    )
    with pytest.raises(LaunchError, match="stopped before it ran|SSM"):
        provision(ready, _req(spot=False))
    assert _instances(ready) == []


def test_spot_capacity_tries_every_zone_then_says_on_demand(ready: Clients, fail):
    injected = fail(ready, "ec2.RunInstances", code="InsufficientInstanceCapacity")
    with pytest.raises(NoCapacity, match="--on-demand"):
        provision(ready, _req(spot=True))
    zones = ready.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"
    ]
    assert injected.count == len(zones)
    assert _instances(ready) == []


def test_capacity_in_one_zone_moves_to_the_next(ready: Clients, fail):
    fail(ready, "ec2.RunInstances", code="InsufficientInstanceCapacity", times=1)
    launched = provision(ready, _req(spot=True))
    assert launched.availability_zone == "us-east-1b"


def test_throttling_is_retried_by_the_client(ready: Clients, fail):
    injected = fail(ready, "ec2.DescribeInstanceTypes", code="Throttling", times=2)
    validate_instance_type(ready, "t3.micro")
    assert injected.count == 2


def test_volume_in_another_zone_than_the_subnet_is_refused_before_launch(
    ready: Clients, data_volume
):
    vol = data_volume(ready, "us-east-1b", 10)
    subnet_a = ready.ec2.describe_subnets(
        Filters=[
            {"Name": "availability-zone", "Values": ["us-east-1a"]},
            {"Name": "default-for-az", "Values": ["true"]},
        ]
    )["Subnets"][0]["SubnetId"]
    with pytest.raises(VolumeZoneMismatch, match="us-east-1b"):
        provision(ready, _req(volume=vol, subnet=subnet_a))
    assert ready.calls.get("ec2.RunInstances", 0) == 0


def test_volume_places_the_instance_in_its_zone_and_attaches(ready: Clients, data_volume):
    vol = data_volume(ready, "us-east-1c", 10)
    launched = provision(ready, _req(volume=vol))
    assert launched.availability_zone == "us-east-1c"
    att = ready.ec2.describe_volumes(VolumeIds=[vol])["Volumes"][0]["Attachments"]
    assert att[0]["InstanceId"] == launched.instance_id


def test_reuse_a_running_instance_creates_nothing_and_is_never_terminated(ready: Clients):
    first = provision(ready, _req(keep=True))
    before = ready.calls.get("ec2.RunInstances", 0)
    again = provision(ready, _req(run_id="r2", instance_id=first.instance_id))
    assert again.reused and again.instance_id == first.instance_id
    assert ready.calls.get("ec2.RunInstances", 0) == before
    from runctl_jupyter.aws.launch import terminate_launched

    assert terminate_launched(ready, again) == []
    assert len(_instances(ready)) == 1


def test_reuse_of_a_missing_instance_says_so(ready: Clients):
    with pytest.raises(LaunchError, match="not found"):
        provision(ready, _req(instance_id="i-0123456789abcdef0"))
