"""Multi-node and multi-GPU launches on the moto server: what is created, what each
node's SSM script says, what is refused before launch, and that nothing outlives a run."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.store.folders import create_run, read_spec

REGION = "us-east-1"


class SSMAnswers:
    """Answers every bootstrap sent through SSM as a healthy instance would (Success),
    without running it: these tests look at the launch, not at the agent."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[str]] = {}  # instance id -> scripts sent to it
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        from moto.ssm.models import ssm_backends

        seen: set[str] = set()
        while not self._stop.is_set():
            for command in list(ssm_backends["123456789012"][REGION]._commands):
                if command.command_id in seen:
                    continue
                seen.add(command.command_id)
                for invocation in command.invocations:
                    script = "\n".join(command.parameters["commands"])
                    self.scripts.setdefault(invocation["InstanceId"], []).append(script)
                    invocation.update(Status="Success", StatusDetails="Success", ResponseCode=0)
            self._stop.wait(0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def ssm_ok(aws):
    answers = SSMAnswers()
    yield answers
    answers.close()


@pytest.fixture
def run_instances_calls(aws: Clients) -> list[dict]:
    """The parameters of every RunInstances call (the calls still go to moto)."""
    calls: list[dict] = []

    def record(params: dict, **_: object) -> None:
        calls.append(json.loads(json.dumps(params, default=str)))

    aws.ec2.meta.events.register("provide-client-params.ec2.RunInstances", record)
    return calls


def _run(tmp_path: Path, **options) -> tuple[Path, dict]:
    runs = tmp_path / "home" / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    spec = create_run(
        runs,
        kind="cell",
        code="print(1)\n",
        params={},
        experiment="e",
        name="n",
        project="p",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options={"pip": ["none"], **options},
        environment={"packages": {}},
    )
    return runs / spec["run_id"], spec


def _instances(aws: Clients, states=("pending", "running")) -> list[dict]:
    res = aws.ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": list(states)}]
    )
    return [i for r in res["Reservations"] for i in r["Instances"]]


def _run_groups(aws: Clients) -> tuple[list[dict], list[dict]]:
    """The placement groups and security groups runctl made for runs (not setup's)."""
    pgs = aws.ec2.describe_placement_groups()["PlacementGroups"]
    sgs = aws.ec2.describe_security_groups(
        Filters=[{"Name": f"tag:{tags.RUN_ID}", "Values": ["*"]}]
    )["SecurityGroups"]
    return pgs, sgs


def _backend(aws: Clients) -> AWSBackend:
    return AWSBackend(clients=aws, aws_poll=0.05, bootstrap_timeout=30, ssm_timeout=10)


def test_nodes_launch_in_one_placement_group_and_zone_with_efa_and_a_self_only_group(
    aws, ssm_ok, run_instances_calls, tmp_path
):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nodes=2, nproc_per_node=2)
    facts = _backend(aws).start(run_dir, spec, attempt=1)

    # one RunInstances for both nodes: all or none, one subnet (one AZ), EFA, the run's groups
    assert len(run_instances_calls) == 1
    call = run_instances_calls[0]
    cluster = facts["cluster"]
    assert (call["MinCount"], call["MaxCount"]) == (2, 2)
    assert call["Placement"]["GroupName"] == cluster["placement_group"]
    (interface,) = call["NetworkInterfaces"]
    assert interface["InterfaceType"] == "efa" and cluster["efa"] is True
    assert interface["Groups"] == [cluster["security_group"]]
    assert "SecurityGroupIds" not in call and "SubnetId" not in call
    assert call["MetadataOptions"]["HttpTokens"] == "required"
    assert call["BlockDeviceMappings"][0]["Ebs"]["Encrypted"] is True
    nodes = _instances(aws)
    assert len(nodes) == 2
    assert {n["Placement"]["AvailabilityZone"] for n in nodes} == {cluster["availability_zone"]}
    for node in nodes:
        node_tags = tags.tag_dict(node["Tags"])
        assert node_tags[tags.RUN_ID] == spec["run_id"] and node_tags[tags.MANAGED] == "true"

    # the placement group: cluster strategy, tagged like everything else
    (pg,) = aws.ec2.describe_placement_groups()["PlacementGroups"]
    assert pg["GroupName"] == cluster["placement_group"] and pg["Strategy"] == "cluster"
    assert tags.tag_dict(pg["Tags"])[tags.RUN_ID] == spec["run_id"]

    # the security group: its only inbound rule lets its own members in, nothing else
    (sg,) = aws.ec2.describe_security_groups(GroupIds=[cluster["security_group"]])["SecurityGroups"]
    assert tags.tag_dict(sg["Tags"])[tags.RUN_ID] == spec["run_id"]
    (rule,) = sg["IpPermissions"]
    assert rule["IpProtocol"] == "-1" and not rule.get("IpRanges") and not rule.get("Ipv6Ranges")
    assert [p["GroupId"] for p in rule["UserIdGroupPairs"]] == [sg["GroupId"]]

    # each node's bootstrap: its own rank, node 0's private address as the rendezvous
    node0 = cluster["nodes"][0]
    endpoint = f"{node0['private_ip']}:29500"
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+:29500", endpoint)
    for rank, node in enumerate(cluster["nodes"]):
        (script,) = ssm_ok.scripts[node["instance_id"]]
        assert f"export RUNCTL_NODE_RANK={rank}\n" in script
        assert f"export RUNCTL_RDZV_ENDPOINT={endpoint}\n" in script
        assert '--setenv=RUNCTL_NODE_RANK="$RUNCTL_NODE_RANK"' in script
    assert facts["instance_id"] == node0["instance_id"]
    assert read_spec(run_dir)["distributed"]["nodes"] == 2


def test_a_node_that_fails_to_start_ends_every_node_and_both_groups(aws, ssm_ok, fail, tmp_path):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="c5n.18xlarge", nodes=3, nproc_per_node=1)
    fail(aws, "ssm.SendCommand", code="InjectedFailure", skip=1)  # node 1's bootstrap
    with pytest.raises(Exception, match="InjectedFailure"):
        _backend(aws).start(run_dir, spec, attempt=1)
    assert aws.calls.get("ec2.RunInstances") == 1
    assert _instances(aws) == []
    assert len(_instances(aws, states=("terminated", "shutting-down"))) == 3
    assert _run_groups(aws) == ([], [])


def test_when_the_run_ends_the_notebook_side_ends_the_nodes_and_deletes_the_groups(
    aws, ssm_ok, tmp_path
):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nodes=2, nproc_per_node=1)
    backend = _backend(aws)
    spec["target"] = backend.start(run_dir, spec, attempt=1)
    assert len(_instances(aws)) == 2
    bucket = spec["target"]["bucket"]
    aws.s3.put_object(
        Bucket=bucket,
        Key=f"runctl/runs/{spec['run_id']}/events/000001.jsonl",
        Body=b'{"seq":1,"t":1,"type":"exit","status":"succeeded","attempt":1}\n',
    )
    backend.pull(run_dir, spec, force=True)
    assert _instances(aws) == []
    assert _run_groups(aws) == ([], [])


def test_a_forced_stop_ends_every_node_and_the_groups(aws, ssm_ok, tmp_path):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nodes=2, nproc_per_node=1)
    backend = _backend(aws)
    spec["target"] = backend.start(run_dir, spec, attempt=1)
    assert backend.is_alive(run_dir, spec) is None  # every node running: heartbeats decide
    backend.stop(run_dir, spec, force=True)
    assert _instances(aws) == []
    assert _run_groups(aws) == ([], [])
    backend._alive.clear()
    assert backend.is_alive(run_dir, spec) is False


def test_a_stop_reaches_the_agent_of_every_node(aws, ssm_ok, tmp_path):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nodes=2, nproc_per_node=1)
    backend = _backend(aws)
    spec["target"] = backend.start(run_dir, spec, attempt=1)
    backend.stop(run_dir, spec)
    for node in spec["target"]["cluster"]["nodes"]:
        bootstrap_script, stop_script = ssm_ok.scripts[node["instance_id"]]
        assert "control.json" in stop_script and '"reason": "user"' in stop_script
    # delivered: node 0's agent ends the nodes when its run ends, not the notebook
    assert len(_instances(aws)) == 2


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"instance_type": "t3.micro", "nodes": 2, "nproc_per_node": 1},
            r"t3.micro cannot be placed in a cluster placement group",
        ),
        (
            {"instance_type": "g5.xlarge", "nodes": 2, "nproc_per_node": 1, "efa": True},
            r"EFA was asked for, but g5.xlarge does not support it",
        ),
        ({"instance_type": "g5.xlarge", "gpus": 4}, r"--gpus 4: g5.xlarge has 1 GPU"),
        ({"instance_type": "t3.micro", "gpus": 1}, r"t3.micro has no GPU; use --nproc-per-node"),
        (
            {"instance_type": "g5.12xlarge", "nodes": 2, "nproc_per_node": 1, "keep": True},
            r"--keep with --nodes 2: .*drop --keep",
        ),
    ],
)
def test_what_cannot_work_is_refused_before_anything_is_created(aws, tmp_path, options, message):
    setup(aws)
    run_dir, spec = _run(tmp_path, **options)
    with pytest.raises(RunctlError, match=message) as info:
        _backend(aws).start(run_dir, spec, attempt=1)
    assert "\n" not in str(info.value)
    assert aws.calls.get("ec2.RunInstances", 0) == 0
    assert aws.calls.get("ec2.CreatePlacementGroup", 0) == 0
    assert aws.calls.get("ec2.CreateSecurityGroup", 0) <= 1  # setup's own group only
    assert _run_groups(aws) == ([], [])


def test_gpus_all_on_one_node_resolves_to_the_types_gpus_in_the_spec(aws, ssm_ok, tmp_path):
    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", gpus="all")
    facts = _backend(aws).start(run_dir, spec, attempt=1)
    assert "cluster" not in facts
    plan = read_spec(run_dir)["distributed"]
    assert (plan["gpus"], plan["nproc_per_node"], plan["nodes"]) == (4, 4, 1)
    (script,) = ssm_ok.scripts[facts["instance_id"]]
    assert "RUNCTL_NODE_RANK=" not in script.split("NODE_ENV=()")[0]  # one node: no rank


def test_orphaned_groups_of_an_ended_run_are_listed_and_cleaned(aws, ssm_ok, tmp_path):
    from runctl_jupyter.aws import resources

    setup(aws)
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nodes=2, nproc_per_node=1)
    facts = _backend(aws).start(run_dir, spec, attempt=1)
    found = resources.list_resources(aws)
    kinds = sorted(r.kind for r in found if r.run_id == spec["run_id"] and r.kind != "volume")
    # and the run's own role (every node runs under it), deleted last
    assert kinds == ["instance", "instance", "placement-group", "role", "security-group"]
    orphans = resources.orphans(found, lambda run_id: "failed", owner="", all_owners=True)
    results = resources.cleanup(aws, orphans)
    assert all(ok for _, ok, _ in results), results
    assert [r.kind for r, _, _ in results][-1] == "role"
    assert _instances(aws) == []
    roles = [r["RoleName"] for r in aws.iam.list_roles()["Roles"]]
    assert f"runctl-run-{spec['run_id']}" not in roles
    assert _run_groups(aws) == ([], [])
    assert facts["cluster"]["placement_group"] not in {
        g["GroupName"] for g in aws.ec2.describe_placement_groups()["PlacementGroups"]
    }


def test_a_node_script_takes_only_a_rank_and_a_host_port_quoted():
    from runctl_jupyter.aws import bootstrap

    script = bootstrap.script("b", "k", REGION, "r1", 1, node=(1, "10.0.0.5:29500"))
    assert "export RUNCTL_NODE_RANK=1\nexport RUNCTL_RDZV_ENDPOINT=10.0.0.5:29500\n" in script
    with pytest.raises(RunctlError, match="is not host:port"):
        bootstrap.script("b", "k", REGION, "r1", 1, node=(1, "10.0.0.5:29500; reboot"))


def test_a_distributed_run_installs_pytorch_for_torchrun_even_if_the_code_never_imports_it(
    tmp_path,
):
    import importlib.metadata

    from runctl_jupyter.aws import bundle

    pytest.importorskip("torch")
    run_dir, spec = _run(tmp_path, instance_type="g5.12xlarge", nproc_per_node=2)
    version = importlib.metadata.version("torch")
    assert bundle.requirements_for(run_dir, spec, "auto") == [f"torch=={version}"]
    plain_dir, plain = _run(tmp_path / "plain", instance_type="g5.12xlarge")
    assert bundle.requirements_for(plain_dir, plain, "auto") == []
