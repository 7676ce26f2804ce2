"""AWS schedules: an EventBridge Scheduler schedule made by `schedule add --backend aws`,
fired as the Scheduler fires it (scheduler_fire.py reads the Target back from moto and
performs it), the instance played by the fixture running the launch template's UserData:
the fired run appears in `schedules` and `runs` with why it fired. Real IPython shell,
moto on 127.0.0.1, the strict layer on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import iam_eval
import pytest
import strict_aws
from IPython.core.error import UsageError
from IPython.utils.capture import capture_output
from scheduler_fire import contexts, fire_target, role_policies

from runctl_jupyter.aws import scheduler
from runctl_jupyter.aws.setup import setup

SCRIPT = "import json\nprint('scheduled training ran')\nrunctl.log(step=0, acc=0.75)\n"


def _magic(ip, line: str) -> str:
    with capture_output() as cap:
        result = ip.run_line_magic("runctl", line)
    return cap.stdout + str(result if result is not None else "")


@pytest.fixture
def aws_shell(ip, aws):
    setup(aws)
    ip.run_line_magic("config", "AWSBackend.aws_poll = 0.1")
    Path("train.py").write_text("from runctl_jupyter import runctl\n" + SCRIPT)
    return ip


def _made(aws) -> dict:
    """What exists of an AWS schedule: Scheduler schedules, launch templates, roles."""
    return {
        "schedules": [
            s["Name"] for s in aws.client("scheduler").list_schedules().get("Schedules", [])
        ],
        "templates": [
            t["LaunchTemplateName"] for t in aws.ec2.describe_launch_templates()["LaunchTemplates"]
        ],
        "roles": sorted(
            r["RoleName"] for r in aws.iam.list_roles()["Roles"] if "run-sched" in r["RoleName"]
        ),
    }


def test_an_aws_schedule_fires_with_this_machine_off_and_its_run_appears(
    aws_shell, aws, instance, home
):
    ip = aws_shell
    out = _magic(
        ip,
        'schedule add train.py --cron "0 3 * * 1" --backend aws --timezone Europe/Paris '
        "--schedule-name nightly --instance-type t3.micro",
    )
    assert "next fires:" in out and "CET" in out, out
    assert (
        "EventBridge Scheduler schedule runctl-nightly (cron(0 3 ? * MON *), Europe/Paris)" in out
    )
    made = aws.client("scheduler").get_schedule(Name="runctl-nightly", GroupName="default")
    assert made["ScheduleExpression"] == "cron(0 3 ? * MON *)"
    assert made["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert made["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert made["Target"]["RoleArn"].endswith(":role/runctl/runctl-scheduler")
    assert "crontab" not in out  # no entry of this machine's: nothing here needs to be on

    instance_id = fire_target(aws, "runctl-nightly")  # the Scheduler, at Monday 03:00
    deadline = time.monotonic() + 200
    row = None
    while time.monotonic() < deadline:
        table = ip.run_line_magic("runctl", "schedules")
        row = table.rows[0]
        if row["status"] and row["status"].startswith(("succeeded", "failed")):
            break
        time.sleep(1)
    boots = [r for r in instance.runs if r["instance_id"] == instance_id]
    assert row and row["status"] == "succeeded", (row, [b["stderr"][-2000:] for b in boots])
    run_id = row["last_run"]
    spec = json.loads((home / "runs" / run_id / "spec.json").read_text())
    why = spec["trigger"]
    assert why["schedule"] == "nightly" and why["instance"] == instance_id
    assert why["clock"] == "eventbridge-scheduler" and why["fired"] > spec["created"] - 1
    assert run_id in str(ip.run_line_magic("runctl", "runs"))
    assert "fired by" in _magic(ip, f"show {run_id}")
    assert "scheduled training ran" in str(ip.run_line_magic("runctl", f"logs {run_id}"))
    # its objects are under the schedule's own prefix, the reach of its own role
    keys = [
        o["Key"]
        for o in aws.s3.list_objects_v2(Bucket=spec["sync"]["bucket"], Prefix="runctl/runs/")[
            "Contents"
        ]
    ]
    assert all(k.startswith("runctl/runs/sched-nightly/") for k in keys), keys
    assert f"runctl/runs/sched-nightly/runs/{run_id}/spec.json" in keys
    assert aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
        "State"
    ]["Name"] in ("shutting-down", "terminated")
    shown = _magic(ip, "schedule show nightly")
    assert run_id in shown and "started" in shown


def test_pause_resume_run_and_remove_map_to_the_scheduler(aws_shell, aws):
    ip = aws_shell
    _magic(ip, 'schedule add train.py --rate "6 hours" --backend aws --instance-type t3.micro')
    sched = aws.client("scheduler")
    assert sched.get_schedule(Name="runctl-train")["ScheduleExpression"] == "rate(6 hours)"
    _magic(ip, "schedule pause train")
    paused = sched.get_schedule(Name="runctl-train")
    assert paused["State"] == "DISABLED" and paused["ScheduleExpression"] == "rate(6 hours)"
    _magic(ip, "schedule resume train")
    assert sched.get_schedule(Name="runctl-train")["State"] == "ENABLED"
    before = len(aws.ec2.describe_instances()["Reservations"])
    assert "starts a new run at boot" in _magic(ip, "schedule run train")
    assert len(aws.ec2.describe_instances()["Reservations"]) == before + 1
    assert _made(aws) == {
        "schedules": ["runctl-train"],
        "templates": ["runctl-sched-train"],
        "roles": ["runctl-run-sched-train"],
    }
    assert "removed" in _magic(ip, "schedule remove train")
    assert _made(aws) == {"schedules": [], "templates": [], "roles": []}


@pytest.mark.parametrize(
    "line, says",
    [
        ('--cron "0 3 * *"', "--cron"),
        ('--cron "0 3 1 * 1"', "EventBridge Scheduler cannot fire on a day of the month OR"),
        ('--rate "0 hours"', "--rate"),
        ('--cron "0 3 * * 1" --timezone Mars/Base', "not an IANA time zone"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(aws_shell, aws, home, line, says):
    with pytest.raises(UsageError) as caught:
        aws_shell.run_line_magic("runctl", f"schedule add train.py {line} --backend aws")
    message = str(caught.value).strip()
    assert says in message and "\n" not in message
    assert _made(aws) == {"schedules": [], "templates": [], "roles": []}
    assert not list((home / "schedules").glob("*.json")) if (home / "schedules").exists() else True


def test_the_scheduler_role_is_least_privilege(aws):
    setup(aws)
    trust, policies = role_policies(aws, scheduler.ROLE_NAME)
    assert trust["Statement"][0]["Principal"] == {"Service": "scheduler.amazonaws.com"}
    # it may pass a schedule's instance role to EC2, never runctl's shared one, nor to others
    sched_role = "arn:aws:iam::123456789012:role/runctl/runctl-run-sched-nightly"
    shared = "arn:aws:iam::123456789012:role/runctl-instance"
    ec2 = {"iam:passedtoservice": "ec2.amazonaws.com"}
    assert iam_eval.decide(policies, iam_eval.Context("iam:PassRole", sched_role, ec2)) == "Allow"
    for arn, keys in ((shared, ec2), (sched_role, {"iam:passedtoservice": "lambda.amazonaws.com"})):
        assert iam_eval.decide(policies, iam_eval.Context("iam:PassRole", arn, keys)) != "Allow"
    # RunInstances only from a runctl-managed template; nothing else (no terminate, no S3)
    other = aws.ec2.create_launch_template(
        LaunchTemplateName="someone-elses",
        LaunchTemplateData={"ImageId": aws.test_amis["al2023-x86"]},
    )["LaunchTemplate"]["LaunchTemplateId"]
    arn = f"arn:aws:ec2:us-east-1:123456789012:launch-template/{other}"
    assert iam_eval.decide(policies, iam_eval.Context("ec2:RunInstances", arn, {})) != "Allow"
    for action, resource in (
        ("ec2:TerminateInstances", "arn:aws:ec2:us-east-1:123456789012:instance/i-1"),
        ("s3:GetObject", "arn:aws:s3:::runctl-123456789012-us-east-1/runctl/runs/x"),
        ("ec2:RunInstances", "arn:aws:ec2:us-east-1:123456789012:instance/*"),
    ):
        assert iam_eval.decide(policies, iam_eval.Context(action, resource, {})) != "Allow"
    # the user may pass the scheduler role only to the Scheduler
    from runctl_jupyter.aws.user_policy import user_policy

    user = [user_policy("123456789012", "us-east-1")]
    role = scheduler.role_arn("123456789012")
    to = {"iam:passedtoservice": "scheduler.amazonaws.com"}
    assert iam_eval.decide(user, iam_eval.Context("iam:PassRole", role, to)) == "Allow"
    to_ec2 = iam_eval.Context("iam:PassRole", role, {"iam:passedtoservice": "ec2.amazonaws.com"})
    assert iam_eval.decide(user, to_ec2) != "Allow"
    assert contexts  # the fixture's contexts are the same evaluation, at each fire
    assert not strict_aws.REFUSED or all(
        r[0] != "iam_trust_service_principal" for r in strict_aws.REFUSED
    )


HOLD = (
    "import os, time\nfrom runctl_jupyter import runctl\n"
    "while not os.path.exists({flag!r}):\n    time.sleep(0.2)\nprint('held run ended')\n"
)


def _row_when(ip, ok, seconds: float = 200) -> dict:
    deadline, row = time.monotonic() + seconds, None
    while time.monotonic() < deadline:
        row = ip.run_line_magic("runctl", "schedules").rows[0]
        if ok(row):
            return row
        time.sleep(1)
    raise AssertionError(row)


def _fired_ids(aws, name: str) -> list[str]:
    bucket = aws.s3.list_buckets()["Buckets"][0]["Name"]
    pages = aws.s3.list_objects_v2(
        Bucket=bucket, Prefix=f"runctl/runs/sched-{name}/runs/", Delimiter="/"
    )
    return sorted(p["Prefix"].split("/")[-2] for p in pages.get("CommonPrefixes") or [])


def _is(status: str):
    return lambda row: bool(row["status"]) and row["status"].startswith(status)


@pytest.mark.parametrize("allow", [False, True])
def test_a_fire_never_overlaps_its_schedules_running_run_unless_allowed(
    aws_shell, aws, instance, tmp_path, allow
):
    ip = aws_shell
    release = tmp_path / "release"
    Path("hold.py").write_text(HOLD.format(flag=str(release)))
    flag = " --allow-overlap" if allow else ""
    _magic(
        ip, f'schedule add hold.py --rate "1 hours" --backend aws --instance-type t3.micro{flag}'
    )
    fire_target(aws, "runctl-hold")
    first = _row_when(ip, _is("running"))["last_run"]
    second = fire_target(aws, "runctl-hold")  # the first run holds until `release` exists
    if allow:
        both = _row_when(ip, lambda r: r["last_run"] != first and _is("running")(r))
        assert sorted([first, both["last_run"]]) == _fired_ids(aws, "hold")
    else:
        row = _row_when(ip, lambda r: "overlap" in r["note"])
        assert row["note"] == (
            f"last fire skipped: overlap: run {first} of this schedule is still running; "
            "--allow-overlap to run both"
        )
        deadline, state = time.monotonic() + 60, ""
        while state not in ("shutting-down", "terminated") and time.monotonic() < deadline:
            time.sleep(0.5)  # the instance ends itself just after it said why
            found = aws.ec2.describe_instances(InstanceIds=[second])["Reservations"][0]
            state = found["Instances"][0]["State"]["Name"]
        assert state in ("shutting-down", "terminated"), state
        assert _fired_ids(aws, "hold") == [first] and row["last_run"] == first
    release.touch()
    _row_when(ip, _is("succeeded"))
    assert ip.run_line_magic("runctl", "runs")  # both (or the one) ended
    if not allow:  # once the run ended, the next fire runs again
        fire_target(aws, "runctl-hold")
        row = _row_when(ip, lambda r: r["last_run"] != first and _is("succeeded")(r))
        assert len(_fired_ids(aws, "hold")) == 2 and not row["note"]
    for run_id in _fired_ids(aws, "hold"):
        ip.run_line_magic("runctl", "schedules")
        assert "held run ended" in str(ip.run_line_magic("runctl", f"logs {run_id}"))
