"""Cost-allocation tags (issue 18, item 3): every resource a launch makes carries
`runctl:owner`, `runctl:project` and `runctl:team`, so Cost Explorer (once the keys are
activated in the Billing console, docs/cost.md) splits the bill as `runctl cost --by` does.

Each launch goes through the backend for real against moto (the run's role, the bundle,
the fleet and its template, a one-time or persistent spot request, a cluster's groups and
nodes); the strict layer keeps every request that tags something, as moto parsed it
(strict_aws.SEEN), and each tag set in each of them is checked here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import strict_aws
from test_cluster_launch import SSMAnswers

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.store.folders import create_run

WANTED = {tags.OWNER: "alice", tags.PROJECT: "detr", tags.TEAM: "vision"}


@pytest.fixture
def ssm_ok(aws):
    answers = SSMAnswers()
    yield answers
    answers.close()


def _run(tmp_path: Path, name: str, **options) -> tuple[Path, dict]:
    """A run as `train` writes it in team vision: its team and owner in its options."""
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    spec = create_run(
        runs, kind="cell", code="print(1)\n", params={}, experiment="e", name=name,
        project="detr", owner="alice", backend="aws", workdir=str(tmp_path),
        options={"pip": ["none"], "team": "vision", "owner": "alice", **options},
        environment={"packages": {}},
    )  # fmt: skip
    return runs / spec["run_id"], spec


def _tag_sets(req) -> list[tuple[str, dict[str, str]]]:
    """(what, tags) for each resource a request tags."""
    if req.service == "iam":
        found = req.params.get("Tags") or []
        return [(req.action, {t["Key"]: t["Value"] for t in found})]
    if req.action == "CreateTags":
        return [(f"CreateTags {req.params.get('Resources')}", tags.tag_dict(req.params["Tags"]))]
    return [
        (f"{req.action} {spec.get('ResourceType')}", tags.tag_dict(spec.get("Tags")))
        for spec in strict_aws._all_tag_specs(req)
    ]


def test_every_resource_a_launch_makes_carries_owner_project_and_team(
    aws: Clients, ssm_ok, tmp_path
):
    setup(aws)
    strict_aws.SEEN.clear()  # setup's own resources are the account's, not a run's
    backend = AWSBackend(clients=aws, aws_poll=0.05, bootstrap_timeout=30, ssm_timeout=10)
    launches = [
        {"instance_type": "t3.micro"},  # spot: a fleet from a launch template
        {"instance_type": "t3.micro", "spot": False},  # on-demand: RunInstances
        {"instance_type": "t3.micro", "keep": True},  # kept spot: a persistent request
        {"instance_type": "g5.12xlarge", "nodes": 2, "nproc_per_node": 1},  # a cluster
    ]
    for n, options in enumerate(launches):
        run_dir, spec = _run(tmp_path, f"n{n}", **options)
        backend.start(run_dir, spec, attempt=1)
    seen = [(what, found) for req in strict_aws.SEEN for what, found in _tag_sets(req)]
    kinds = {what.split(" [")[0] for what, _ in seen}
    assert kinds >= {
        "CreateRole",
        "CreateInstanceProfile",
        "CreateLaunchTemplate launch-template",
        "CreateLaunchTemplate instance",
        "CreateLaunchTemplate volume",
        "CreateFleet fleet",
        "RunInstances instance",
        "RunInstances volume",
        "RunInstances spot-instances-request",
        "CreateSecurityGroup security-group",
        "CreatePlacementGroup placement-group",
    }, kinds
    for what, found in seen:
        assert {k: found.get(k) for k in WANTED} == WANTED, what
    # and what AWS holds says the same: every instance, volume, fleet and template
    described = [
        *(i for r in aws.ec2.describe_instances()["Reservations"] for i in r["Instances"]),
        *aws.ec2.describe_volumes()["Volumes"],
        *aws.ec2.describe_fleets()["Fleets"],
        *aws.ec2.describe_launch_templates()["LaunchTemplates"],
    ]
    assert len(described) >= 9
    for resource in described:
        assert {k: tags.tag_dict(resource.get("Tags")).get(k) for k in WANTED} == WANTED


def test_tag_values_are_ones_every_service_takes():
    found = tags.run_tags("r1", "ann,b", "x" * 300, "vision")
    assert found[tags.OWNER] == "ann_b"  # an IAM user name's comma: IAM tags refuse it
    assert len(found[tags.PROJECT]) == 256
    assert found[tags.TEAM] == "vision"
    assert tags.run_tags("r1", "ann", "p")[tags.TEAM] == ""  # no team: the key, empty
    assert tags.tag_value("détection 2026/v1 @lab") == "détection 2026/v1 @lab"
