"""EventBridge Scheduler: the clock of an AWS schedule, which fires with this machine off.

A schedule `NAME` is the Scheduler schedule `runctl-NAME` (group `default`) whose
target is the *universal target* `ec2:RunInstances` with the launch template
`runctl-sched-NAME` (made by schedules/aws_clock.py). The template's UserData is the
fire script (aws/bootstrap.py `fire_script`): at boot the instance takes a new run id,
fetches the schedule's bundle from S3 and starts the run there (agent/fired.py).

The Scheduler assumes one role, `runctl-scheduler` (made by `runctl aws setup`), whose
only rights are to start instances from runctl's launch templates and to pass the
schedules' own instance roles (`runctl-run-sched-*`) to EC2.
https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html
"""

from __future__ import annotations

import json
from typing import Any

from . import tags
from .clients import Clients, error_code

ROLE_NAME = "runctl-scheduler"
ROLE_PATH = "/runctl/"
SCHEDULE_PREFIX = "runctl-"
TEMPLATE_PREFIX = "runctl-sched-"
RUN_ID_PREFIX = "sched-"  # a schedule's instances carry runctl:run-id=sched-NAME
RUN_INSTANCES = "arn:aws:scheduler:::aws-sdk:ec2:runInstances"
GROUP = "default"


def unwind(undo: list) -> None:
    """Undo what a failed `schedule add` made, last first (each step on its own: the
    error that stopped the add is the one to say)."""
    for step in reversed(undo):
        try:
            step()
        except Exception:  # noqa: BLE001
            pass


def schedule_name(name: str) -> str:
    return f"{SCHEDULE_PREFIX}{name}"


def template_name(name: str) -> str:
    return f"{TEMPLATE_PREFIX}{name}"


def role_run_id(name: str) -> str:
    """The run id the schedule's role and instances are tagged with (their S3 reach)."""
    return f"{RUN_ID_PREFIX}{name}"


def role_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:role{ROLE_PATH}{ROLE_NAME}"


def trust_policy() -> dict:
    """Only EventBridge Scheduler, for schedules of this account, assumes the role.
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role"""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "scheduler.amazonaws.com"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount}"}},
            }
        ],
    }


def role_policy(account: str) -> dict:
    """What the Scheduler may do when a schedule fires: RunInstances from a runctl
    launch template (everything else the instance gets comes from the template), tag
    what it launches, and pass only the schedules' instance roles to EC2."""
    template = f"arn:aws:ec2:*:{account}:launch-template/*"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "LaunchFromRunctlTemplate",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances"],
                "Resource": template,
                "Condition": {"StringEquals": {f"aws:ResourceTag/{tags.MANAGED}": "true"}},
            },
            {
                "Sid": "LaunchWhatTheTemplateSays",
                "Effect": "Allow",
                "Action": ["ec2:RunInstances"],
                "Resource": [
                    "arn:aws:ec2:*:*:instance/*",
                    "arn:aws:ec2:*:*:volume/*",
                    "arn:aws:ec2:*:*:network-interface/*",
                    "arn:aws:ec2:*:*:subnet/*",
                    "arn:aws:ec2:*:*:security-group/*",
                    "arn:aws:ec2:*::image/*",
                ],
                "Condition": {"ArnLike": {"ec2:LaunchTemplate": template}},
            },
            {
                "Sid": "TagAtLaunch",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags"],
                "Resource": ["arn:aws:ec2:*:*:instance/*", "arn:aws:ec2:*:*:volume/*"],
                "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}},
            },
            {
                "Sid": "PassScheduleInstanceRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": f"arn:aws:iam::{account}:role/runctl/runctl-run-{RUN_ID_PREFIX}*",
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
        ],
    }


def user_statements(acct: str) -> list[dict]:
    """The user's part (aws/user_policy.py): runctl's schedules only, and passing only
    the scheduler role, only to EventBridge Scheduler."""
    return [
        {
            "Sid": "RunctlSchedules",
            "Effect": "Allow",
            "Action": [
                "scheduler:CreateSchedule",
                "scheduler:GetSchedule",
                "scheduler:UpdateSchedule",
                "scheduler:DeleteSchedule",
            ],
            "Resource": f"arn:aws:scheduler:*:{acct}:schedule/{GROUP}/{SCHEDULE_PREFIX}*",
        },
        {
            "Sid": "PassSchedulerRole",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": f"arn:aws:iam::{acct}:role{ROLE_PATH}{ROLE_NAME}",
            "Condition": {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
        },
        {
            # `runctl aws setup`: the scheduler role and its inline policy
            "Sid": "SetupSchedulerRole",
            "Effect": "Allow",
            "Action": ["iam:CreateRole", "iam:GetRole", "iam:PutRolePolicy", "iam:TagRole"],
            "Resource": f"arn:aws:iam::{acct}:role{ROLE_PATH}{ROLE_NAME}",
        },
    ]


def ensure_role(clients: Clients) -> bool:
    """Make the scheduler role, or bring its policy up to date; True when made."""
    account = clients.identity()["Account"]
    made = False
    try:
        clients.iam.get_role(RoleName=ROLE_NAME)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        clients.iam.create_role(
            RoleName=ROLE_NAME,
            Path=ROLE_PATH,
            AssumeRolePolicyDocument=json.dumps(trust_policy()),
            Description="runctl-jupyter: EventBridge Scheduler starts scheduled runs",
            Tags=tags.tag_list(tags.setup_tags()),
        )
        made = True
    clients.iam.put_role_policy(
        RoleName=ROLE_NAME,
        PolicyName="runctl-scheduler",
        PolicyDocument=json.dumps(role_policy(account)),
    )
    return made


def target(account: str, template_id: str) -> dict:
    """The universal target: RunInstances of one instance from the schedule's template."""
    run = {"MinCount": 1, "MaxCount": 1, "LaunchTemplate": {"LaunchTemplateId": template_id}}
    return {
        "Arn": RUN_INSTANCES,
        "RoleArn": role_arn(account),
        "Input": json.dumps(run),
        "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
    }


def create(
    clients: Clients, name: str, expression: str, zone: str, template_id: str, enabled: bool = True
) -> str:
    account = clients.identity()["Account"]
    answer = clients.client("scheduler").create_schedule(
        Name=schedule_name(name),
        GroupName=GROUP,
        ScheduleExpression=expression,
        ScheduleExpressionTimezone=zone or "UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        State="ENABLED" if enabled else "DISABLED",
        Description=f"runctl-jupyter schedule {name}",
        Target=target(account, template_id),
    )
    return str(answer["ScheduleArn"])


def get(clients: Clients, name: str) -> dict | None:
    try:
        return dict(
            clients.client("scheduler").get_schedule(Name=schedule_name(name), GroupName=GROUP)
        )
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return None


def set_state(clients: Clients, name: str, enabled: bool) -> None:
    """UpdateSchedule replaces the whole schedule: the current one, its State changed."""
    found = get(clients, name)
    if found is None:
        from .clients import AWSError

        raise AWSError(
            f"EventBridge schedule {schedule_name(name)} is gone (deleted by hand?): "
            f"`schedule remove {name}` and add it again"
        )
    keep = ("ScheduleExpression", "ScheduleExpressionTimezone", "FlexibleTimeWindow", "Target")
    kwargs: dict[str, Any] = {k: found[k] for k in keep if k in found}
    kwargs.update(Name=schedule_name(name), GroupName=GROUP)
    kwargs["State"] = "ENABLED" if enabled else "DISABLED"
    if found.get("Description"):
        kwargs["Description"] = found["Description"]
    clients.client("scheduler").update_schedule(**kwargs)


def delete(clients: Clients, name: str) -> bool:
    try:
        clients.client("scheduler").delete_schedule(Name=schedule_name(name), GroupName=GROUP)
    except Exception as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        return False
    return True
