"""`resources` and `cleanup` never fail whole: a describe call that answers an error is
named (service, operation, region, code), everything else is listed, the shell exits 3,
and `cleanup` deletes on a partial listing only with --yes --partial. --region (repeated
or R1,R2) and --all-regions look in several regions."""

from __future__ import annotations

import pytest

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.commands import cleanup_orphans, resources
from runctl_jupyter.aws.inventory import Failure
from runctl_jupyter.aws.resources import list_resources

OTHER = "eu-west-1"


def _instance(clients: Clients, run: str, owner: str = "moto", image: str | None = None) -> str:
    spec = [{"ResourceType": "instance", "Tags": tags.tag_list(tags.run_tags(run, owner, "p"))}]
    return clients.ec2.run_instances(
        ImageId=image or clients.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=spec,
    )["Instances"][0]["InstanceId"]


def _volume(clients: Clients, run: str, **kwargs) -> str:
    spec = [{"ResourceType": "volume", "Tags": tags.tag_list(tags.run_tags(run, "moto", "p"))}]
    return clients.ec2.create_volume(
        AvailabilityZone=f"{clients.region}a", TagSpecifications=spec, **kwargs
    )["VolumeId"]


def _state(clients: Clients, iid: str) -> str:
    found = clients.ec2.describe_instances(InstanceIds=[iid])
    return found["Reservations"][0]["Instances"][0]["State"]["Name"]


def _other_region_instance(run: str) -> tuple[Clients, str]:
    """An instance in eu-west-1 (its own AMI: the fixture registers them in us-east-1)."""
    other = Clients(region=OTHER)
    image = other.ec2.register_image(
        Name="al2023-eu",
        Architecture="x86_64",
        RootDeviceName="/dev/xvda",
        BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
    )["ImageId"]
    return other, _instance(other, run, image=image)


@pytest.fixture
def fail_everywhere(monkeypatch, fail):
    """Make `service.Operation` answer `code` in every Clients made from now on (the
    session and the shell make their own), or only in `region`."""

    def arm(operation: str, code: str, region: str | None = None) -> None:
        service = operation.split(".")[0]
        original = Clients.client
        armed: set[int] = set()

        def client(self: Clients, name: str):
            made = original(self, name)
            if name == service and (region is None or self.region == region):
                if id(made) not in armed:
                    armed.add(id(made))
                    fail(self, operation, code=code)
            return made

        monkeypatch.setattr(Clients, "client", client)

    return arm


def test_one_failing_describe_lists_everything_else_and_names_it(aws: Clients, fail):
    iid = _instance(aws, "r1")
    vol = _volume(aws, "r1", Size=5)
    fail(aws, "ec2.DescribeVolumes", code="UnauthorizedOperation")
    listing = list_resources(aws)
    ids = {r.id for r in listing}
    assert iid in ids and vol not in ids
    assert listing.partial
    assert listing.failures == [
        Failure("ec2", "DescribeVolumes", "us-east-1", "UnauthorizedOperation", "volume")
    ]
    assert listing.gaps() == [
        "could not read ec2 DescribeVolumes in us-east-1 (volumes): UnauthorizedOperation"
    ]


def test_an_unreachable_endpoint_is_named_once_and_not_tried_again(aws: Clients):
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    calls = []

    def unreachable(**_):
        calls.append(1)
        raise EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com")

    clients = Clients(region="us-east-1")
    clients.config = clients.config.merge(Config(retries={"total_max_attempts": 1}))
    clients.ec2.meta.events.register("before-send.ec2", unreachable)
    listing = list_resources(clients)
    assert len(calls) == 1  # the first call: the others are named, not sent
    first, *rest = listing.failures
    assert first.code == "EndpointConnectionError" and first.operation == "DescribeInstances"
    assert rest and all(f.code == "not tried (EndpointConnectionError)" for f in rest)
    assert {f.operation for f in rest} >= {"DescribeVolumes", "DescribeFleets"}


def test_the_shell_lists_the_rest_names_the_failure_and_exits_3(
    aws_clients_env, fail_everywhere, tmp_path, monkeypatch, capsys
):
    from runctl_jupyter import cli

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    iid = _instance(aws_clients_env, "r-unknown")
    fail_everywhere("ec2.DescribeSpotInstanceRequests", "UnauthorizedOperation")
    assert cli.main(["resources"]) == 3
    out = capsys.readouterr().out
    assert iid in out and "burn rate" in out
    assert (
        "could not read ec2 DescribeSpotInstanceRequests in us-east-1 (spot-requests): "
        "UnauthorizedOperation" in out
    )
    assert "partial listing: 1 describe call failed" in out
    assert "Traceback" not in out


def test_the_notebook_table_shows_a_warning_line(aws_clients_env, fail_everywhere, tmp_path):
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    iid = _instance(aws_clients_env, "r-nb")
    fail_everywhere("ec2.DescribeLaunchTemplates", "UnauthorizedOperation")
    table = Session(config=Runctl(home=str(tmp_path / "home")), shell=None).resources()
    page = table._repr_html_()
    assert iid in page and "&#9888;" in page
    assert "ec2 DescribeLaunchTemplates in us-east-1 (launch-templates): UnauthorizedOperation" in (
        page
    )
    assert table.exit_code == 3


def test_cleanup_refuses_on_a_partial_listing_and_deletes_with_partial(aws_clients_env, fail):
    iid = _instance(aws_clients_env, "r-done")
    status = {"r-done": "succeeded"}.get
    original = Clients.client
    armed: set[int] = set()

    def client(self: Clients, name: str):  # every Clients the command makes fails DescribeFleets
        made = original(self, name)
        if name == "ec2" and id(made) not in armed:
            armed.add(id(made))
            fail(self, "ec2.DescribeFleets", code="UnauthorizedOperation")
        return made

    mp = pytest.MonkeyPatch()
    mp.setattr(Clients, "client", client)
    try:
        report = cleanup_orphans(status, yes=True)
        assert iid in report and "could not read ec2 DescribeFleets" in report
        assert "not deleting: the listing is partial" in report
        assert "--yes --partial" in report and report.failures
        assert _state(aws_clients_env, iid) == "running"
        asked = []
        cleanup_orphans(status, confirm=lambda q: asked.append(q) or True)
        assert asked == [] and _state(aws_clients_env, iid) == "running"  # not even asked
        dry = cleanup_orphans(status, partial=True)
        assert "run `runctl cleanup --yes --partial`" in dry
        assert _state(aws_clients_env, iid) == "running"
        done = cleanup_orphans(status, yes=True, partial=True)
        assert f"instance {iid}: terminated" in done and done.failures
        assert _state(aws_clients_env, iid) in ("shutting-down", "terminated")
    finally:
        mp.undo()


def test_the_shell_cleanup_exits_3_and_deletes_only_with_yes_partial(
    aws_clients_env, fail_everywhere, tmp_path, monkeypatch, capsys
):
    from runctl_jupyter import cli

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    iid = _instance(aws_clients_env, "r-gone")  # unknown to the store: an orphan
    fail_everywhere("ec2.DescribePlacementGroups", "UnauthorizedOperation")
    assert cli.main(["cleanup", "--yes"]) == 3
    out = capsys.readouterr().out
    assert iid in out and "not deleting: the listing is partial" in out
    assert _state(aws_clients_env, iid) == "running"
    assert cli.main(["cleanup", "--yes", "--partial"]) == 3
    out = capsys.readouterr().out
    assert f"instance {iid}: terminated" in out
    assert _state(aws_clients_env, iid) in ("shutting-down", "terminated")


def test_region_flags_list_both_regions(aws_clients_env):
    here = _instance(aws_clients_env, "r-east")
    other, there = _other_region_instance("r-west")
    both = resources({}.get, regions=["us-east-1", OTHER])
    by_id = {r.id: r.region for r in both}
    assert by_id[here] == "us-east-1" and by_id[there] == OTHER
    assert both.regions == ["us-east-1", OTHER] and not both.partial
    only_other = resources({}.get, regions=[OTHER])
    assert there in {r.id for r in only_other} and here not in {r.id for r in only_other}

    everywhere = resources({}.get, all_regions=True)
    enabled = [r["RegionName"] for r in aws_clients_env.ec2.describe_regions()["Regions"]]
    assert sorted(everywhere.regions) == sorted(enabled) and len(enabled) > 2
    assert {here, there} <= {r.id for r in everywhere}


def test_the_shell_takes_a_comma_list_of_regions_and_cleans_both(
    aws_clients_env, tmp_path, monkeypatch, capsys
):
    from runctl_jupyter import cli

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    here = _instance(aws_clients_env, "r-a")
    other, there = _other_region_instance("r-b")
    assert cli.main(["resources", "--region", f"us-east-1,{OTHER}"]) == 0
    out = capsys.readouterr().out
    assert here in out and there in out
    assert cli.main(["cleanup", "--region", "us-east-1", "--region", OTHER, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"instance {here}: terminated" in out and f"instance {there}: terminated" in out
    assert _state(other, there) in ("shutting-down", "terminated")


def test_one_region_failing_leaves_the_other_listed(aws_clients_env, fail_everywhere):
    here = _instance(aws_clients_env, "r-ok")
    _, there = _other_region_instance("r-hidden")
    fail_everywhere("ec2.DescribeInstances", "AuthFailure", region=OTHER)
    listing = resources({}.get, regions=["us-east-1", OTHER])
    ids = {r.id for r in listing}
    assert here in ids and there not in ids
    assert [f.describe() for f in listing.failures] == [
        f"ec2 DescribeInstances in {OTHER} (instances): AuthFailure"
    ]


def test_all_regions_without_describe_regions_is_one_line(aws_clients_env, fail_everywhere):
    from runctl_jupyter.aws.clients import AWSError

    fail_everywhere("ec2.DescribeRegions", "UnauthorizedOperation")
    with pytest.raises(AWSError) as err:
        resources({}.get, all_regions=True)
    assert "\n" not in str(err.value)
    assert "DescribeRegions: UnauthorizedOperation" in str(err.value)
    assert "--region" in str(err.value)
