"""AWS data triggers: `schedule add --on-new-data s3://... --backend aws` makes S3 ->
EventBridge -> SSM Automation -> a one-shot Scheduler schedule, so new data fires a run
with this machine off. moto on 127.0.0.1, the strict layer on; EventBridge and the
Automation step played as AWS performs them (eventbridge_play.py), the settle schedule
fired as the Scheduler fires it (scheduler_fire.py), the instance played by the fixture."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

import iam_eval
import pytest
from eventbridge_play import deliver, install_eventbridge_notifications, s3_event
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from scheduler_fire import fire_target, role_policies

from runctl_jupyter.aws import data_rule
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.schedules.data import list_prefix, manifest_digest, manifest_of

BUCKET = "training-data"


def _magic(ip, line: str) -> str:
    with capture_output() as cap:
        result = ip.run_line_magic("runctl", line)
    return cap.stdout + str(result if result is not None else "")


@pytest.fixture
def data_shell(ip, aws):
    install_eventbridge_notifications()
    setup(aws)
    ip.run_line_magic("config", "AWSBackend.aws_poll = 0.1")
    Path("train.py").write_text("print('training on new data')\n")
    aws.s3.create_bucket(Bucket=BUCKET)
    queue = aws.client("sqs").create_queue(QueueName="users-own")["QueueUrl"]
    arn = aws.client("sqs").get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    users = {
        "QueueConfigurations": [
            {
                "Id": "users-own",
                "QueueArn": arn["Attributes"]["QueueArn"],
                "Events": ["s3:ObjectRemoved:*"],
            }
        ]
    }
    aws.s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration=users)
    return ip


def _notifications(aws) -> dict:
    found = aws.s3.get_bucket_notification_configuration(Bucket=BUCKET)
    found.pop("ResponseMetadata", None)
    return found


def _upload(aws, key: str) -> int:
    """PutObject, then what S3 sends EventBridge when the bucket has it turned on."""
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=b"1,2,3\n")
    if "EventBridgeConfiguration" not in _notifications(aws):
        return 0
    return deliver(aws, s3_event(BUCKET, key, 6, aws.region))


def _wait_note(ip, says: str, timeout: float = 200) -> dict:
    """`schedules` until its note says `says` (the instance's refusal, read from S3)."""
    deadline = time.monotonic() + timeout
    row: dict = {}
    while time.monotonic() < deadline:
        row = ip.run_line_magic("runctl", "schedules").rows[0]
        if says in (row.get("note") or ""):
            return row
        time.sleep(1)
    raise AssertionError(f"never noted {says!r}: {row}")


def _made(aws) -> dict:
    events = aws.client("events")
    docs = aws.ssm.list_documents(Filters=[{"Key": "Owner", "Values": ["Self"]}])
    return {
        "rules": [r["Name"] for r in events.list_rules(NamePrefix="runctl-")["Rules"]],
        "documents": [d["Name"] for d in docs["DocumentIdentifiers"]],
        "schedules": [
            s["Name"] for s in aws.client("scheduler").list_schedules().get("Schedules", [])
        ],
    }


def test_a_burst_of_50_uploads_fires_one_run_with_this_machine_off(data_shell, aws, instance, home):
    ip = data_shell
    before = _notifications(aws)
    out = _magic(
        ip,
        f"schedule add train.py --on-new-data s3://{BUCKET}/incoming/ --backend aws "
        "--settle 2m --schedule-name ingest --instance-type t3.micro",
    )
    assert "EventBridge rule runctl-ingest-data" in out and "crontab" not in out, out
    rule = aws.client("events").describe_rule(Name="runctl-ingest-data")
    assert json.loads(rule["EventPattern"]) == {
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": {"bucket": {"name": [BUCKET]}, "object": {"key": [{"prefix": "incoming/"}]}},
    }
    config = _notifications(aws)
    assert config["EventBridgeConfiguration"] == {}
    assert config["QueueConfigurations"] == before["QueueConfigurations"]  # the user's kept

    assert _upload(aws, "elsewhere/not-ours.csv") == 0  # outside the prefix: no target
    started = time.time()
    for i in range(50):
        assert _upload(aws, f"incoming/part-{i:03d}.csv") == 1
    schedules = _made(aws)["schedules"]
    assert schedules == ["runctl-ingest-settle"]  # 50 events, one pending fire
    settle = aws.client("scheduler").get_schedule(Name="runctl-ingest-settle")
    assert settle["ActionAfterCompletion"] == "DELETE"
    at = calendar.timegm(time.strptime(settle["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)"))
    assert started + 120 - 2 <= at <= time.time() + 120 + 2

    instance_id = fire_target(aws, "runctl-ingest-settle")  # the Scheduler, 2 minutes later
    aws.client("scheduler").delete_schedule(Name="runctl-ingest-settle")  # its DELETE
    deadline = time.monotonic() + 200
    row = None
    while time.monotonic() < deadline:
        row = ip.run_line_magic("runctl", "schedules").rows[0]
        if row["status"] and row["status"].startswith(("succeeded", "failed")):
            break
        time.sleep(1)
    boots = [r for r in instance.runs if r["instance_id"] == instance_id]
    assert row and row["status"] == "succeeded", (row, [b["stderr"][-2000:] for b in boots])
    assert len(boots) == 1
    run_id = row["last_run"]
    spec = json.loads((home / "runs" / run_id / "spec.json").read_text())
    why = spec["trigger"]
    assert why["schedule"] == "ingest" and why["instance"] == instance_id
    assert why["new_objects"] == 50 and why["data"] == f"s3://{BUCKET}/incoming/"
    listed = list_prefix(aws.s3, BUCKET, "incoming/")
    assert why["manifest"] == manifest_digest(manifest_of(listed))
    assert why["objects"][0].startswith(f"s3://{BUCKET}/incoming/part-")
    assert run_id in str(ip.run_line_magic("runctl", "runs"))
    shown = _magic(ip, f"show {run_id}")
    assert "50 new objects" in shown and why["manifest"] in shown

    # fired again with nothing new (`schedule run`, or a late duplicate): no second run
    _magic(ip, "schedule run ingest")
    _wait_note(ip, "no new data in s3://training-data/incoming/")
    assert len([p for p in (home / "runs").glob("*/spec.json")]) == 1

    said = _magic(ip, "schedule remove ingest")
    assert "removed" in said and "left behind" not in said, said
    roles = [r["RoleName"] for r in aws.iam.list_roles()["Roles"]]
    assert "runctl-run-sched-ingest" not in roles  # its inline data policy went first
    assert _made(aws) == {"rules": [], "documents": [], "schedules": []}
    assert _notifications(aws) == before  # the bucket's configuration as the user had it


def test_stale_data_is_refused_on_the_instance_with_its_reason_on_the_schedule(
    data_shell, aws, instance, home
):
    ip = data_shell
    _magic(
        ip,
        f"schedule add train.py --on-new-data s3://{BUCKET}/incoming/ --backend aws "
        "--settle 1s --max-data-age 1s --schedule-name fresh --instance-type t3.micro",
    )
    assert _upload(aws, "incoming/old.csv") == 1
    time.sleep(2.5)  # older than --max-data-age by the time the instance looks
    fire_target(aws, "runctl-fresh-settle")
    row = _wait_note(ip, "stale data: the newest object s3://training-data/incoming/old.csv")
    assert row["note"].startswith("last fire refused: stale data") and "\n" not in row["note"]
    assert "--max-data-age" in row["note"] and row["last_run"] is None
    assert not list((home / "runs").glob("*/spec.json"))  # nothing trained
    assert "removed" in _magic(ip, "schedule remove fresh")


def test_two_data_triggers_on_one_bucket_keep_its_notifications_until_the_last_goes(
    data_shell, aws
):
    ip = data_shell
    before = _notifications(aws)
    for name, prefix in (("first", "incoming/"), ("second", "other/")):
        _magic(
            ip,
            f"schedule add train.py --on-new-data s3://{BUCKET}/{prefix} --backend aws "
            f"--schedule-name {name} --instance-type t3.micro",
        )
    _magic(ip, "schedule pause second")
    assert aws.client("events").describe_rule(Name="runctl-second-data")["State"] == "DISABLED"
    assert _upload(aws, "other/a.csv") == 0  # a paused trigger starts nothing
    _magic(ip, "schedule resume second")
    _magic(ip, "schedule remove first")
    assert "EventBridgeConfiguration" in _notifications(aws)  # the second still needs them
    assert _upload(aws, "other/b.csv") == 1
    _magic(ip, "schedule remove second")
    assert _notifications(aws) == before
    assert _made(aws) == {"rules": [], "documents": [], "schedules": []}


def test_the_data_trigger_roles_are_least_privilege(aws):
    setup(aws)
    trust, events_policies = role_policies(aws, data_rule.EVENTS_ROLE)
    assert trust["Statement"][0]["Principal"] == {"Service": "events.amazonaws.com"}
    trust, step_policies = role_policies(aws, data_rule.AUTOMATION_ROLE)
    assert trust["Statement"][0]["Principal"] == {"Service": "ssm.amazonaws.com"}
    acct = "123456789012"
    ours = f"arn:aws:ssm:us-east-1:{acct}:automation-definition/runctl-x-data:$DEFAULT"
    other = f"arn:aws:ssm:us-east-1:{acct}:automation-definition/AWS-RestartEC2Instance:$DEFAULT"
    start = "ssm:StartAutomationExecution"
    assert iam_eval.decide(events_policies, iam_eval.Context(start, ours, {})) == "Allow"
    assert iam_eval.decide(events_policies, iam_eval.Context(start, other, {})) != "Allow"
    step_role = data_rule.role_arn(acct, data_rule.AUTOMATION_ROLE)
    to_ec2 = {"iam:passedtoservice": "ec2.amazonaws.com"}
    assert (
        iam_eval.decide(events_policies, iam_eval.Context("iam:PassRole", step_role, to_ec2))
        != "Allow"
    )
    settle = f"arn:aws:scheduler:us-east-1:{acct}:schedule/default/runctl-x-settle"
    clock = f"arn:aws:scheduler:us-east-1:{acct}:schedule/default/runctl-x"
    create = "scheduler:CreateSchedule"
    assert iam_eval.decide(step_policies, iam_eval.Context(create, settle, {})) == "Allow"
    assert iam_eval.decide(step_policies, iam_eval.Context(create, clock, {})) != "Allow"
    for action, resource in (
        ("scheduler:DeleteSchedule", settle),
        ("ec2:RunInstances", f"arn:aws:ec2:us-east-1:{acct}:instance/*"),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/incoming/a.csv"),
    ):
        assert iam_eval.decide(step_policies, iam_eval.Context(action, resource, {})) != "Allow"


@pytest.mark.parametrize("uri", ["s3:///incoming/", "s3://"])
def test_an_s3_uri_without_a_bucket_is_one_line_and_makes_nothing(data_shell, aws, home, uri):
    before = _notifications(aws)
    with pytest.raises(UsageError) as caught:
        data_shell.run_line_magic(
            "runctl", f"schedule add train.py --on-new-data {uri} --backend aws"
        )
    message = str(caught.value).strip()
    assert "no bucket" in message and "\n" not in message
    assert _made(aws) == {"rules": [], "documents": [], "schedules": []}
    assert _notifications(aws) == before
    assert not list((home / "schedules").glob("*.json")) if (home / "schedules").exists() else True


def test_a_bucket_that_does_not_exist_is_one_line_and_leaves_nothing(data_shell, aws, home):
    with pytest.raises(UsageError) as caught:
        data_shell.run_line_magic(
            "runctl",
            "schedule add train.py --on-new-data s3://no-such-data-bucket/in/ --backend aws "
            "--instance-type t3.micro",
        )
    message = str(caught.value).strip()
    assert "NoSuchBucket" in message or "does not exist" in message, message
    assert "\n" not in message and "Traceback" not in message
    assert _made(aws) == {"rules": [], "documents": [], "schedules": []}
    templates = aws.ec2.describe_launch_templates()["LaunchTemplates"]
    assert [t for t in templates if t["LaunchTemplateName"].startswith("runctl-sched-")] == []
    roles = [r["RoleName"] for r in aws.iam.list_roles()["Roles"]]
    assert not [r for r in roles if r.startswith("runctl-run-sched-")]
    assert not list((home / "schedules").glob("*.json")) if (home / "schedules").exists() else True
