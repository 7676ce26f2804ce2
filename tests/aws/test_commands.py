"""The command-level functions the session, magic and shell call."""

from __future__ import annotations

import json

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.commands import aws, cleanup_orphans, resources
from runctl_jupyter.backends.aws import AWSBackend


def _instance(clients, run: str, owner: str = "moto") -> str:
    spec = [{"ResourceType": "instance", "Tags": tags.tag_list(tags.run_tags(run, owner, "p"))}]
    return clients.ec2.run_instances(
        ImageId=clients.test_amis["al2023-x86"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=spec,
    )["Instances"][0]["InstanceId"]


def test_aws_setup_then_doctor_is_ok(aws_clients_env):
    config = AWSBackend(region="us-east-1")
    before = aws("doctor", config)
    assert not before.ok and "runctl aws setup" in before.text
    assert "created" in aws("setup", config).text
    after = aws("doctor", config)
    assert after.ok, after.text


def test_aws_policy_names_the_account(aws_clients_env):
    doc = json.loads(aws("policy").text)
    pass_role = next(s for s in doc["Statement"] if s["Sid"] == "PassInstanceRole")
    assert pass_role["Resource"] == "arn:aws:iam::123456789012:role/runctl-instance"


def test_resources_lists_with_run_status(aws_clients_env):
    iid = _instance(aws_clients_env, "r-live")
    listed = resources({"r-live": "running"}.get)
    row = next(r for r in listed.rows() if r["id"] == iid)
    assert row["run_status"] == "running" and row["owner"] == "moto"
    assert listed.regions == ["us-east-1"]


def test_cleanup_is_a_dry_run_unless_yes_or_confirmed(aws_clients_env):
    iid = _instance(aws_clients_env, "r-done")  # owner "moto": the user name in moto's caller ARN
    status = {"r-done": "succeeded"}.get
    text = cleanup_orphans(status)
    assert "dry run" in text and iid in text

    def state():
        return aws_clients_env.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
            "Instances"
        ][0]["State"]["Name"]

    assert state() == "running"
    asked = []
    text = cleanup_orphans(status, confirm=lambda q: asked.append(q) or False)
    assert asked and state() == "running"
    text = cleanup_orphans(status, yes=True)
    assert f"instance {iid}: terminated" in text
    assert state() in ("shutting-down", "terminated")


def test_the_shell_commands_reach_aws_through_the_session(
    aws_clients_env, tmp_path, monkeypatch, capsys
):
    """`runctl resources | cleanup | aws doctor` through the one parser and the Session."""
    from runctl_jupyter import cli

    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    iid = _instance(aws_clients_env, "r-unknown")
    assert cli.main(["resources"]) == 0
    listing = capsys.readouterr().out
    assert iid in listing and "usd_per_h" in listing
    t3_micro = (
        0.0104  # us-east-1 on-demand, the bundled table's price for an unknown run's instance
    )
    assert f"{t3_micro}" in listing and "burn rate $0.010/h" in listing
    assert cli.main(["cleanup"]) == 0  # no terminal: a dry run that lists the orphan
    out = capsys.readouterr().out
    assert iid in out and "dry run" in out
    state = aws_clients_env.ec2.describe_instances(InstanceIds=[iid])["Reservations"][0][
        "Instances"
    ][0]
    assert state["State"]["Name"] == "running"
    assert cli.main(["aws", "doctor"]) == 2  # nothing set up yet: the report and a non-zero exit
    assert "runctl aws setup" in capsys.readouterr().err
