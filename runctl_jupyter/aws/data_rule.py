"""An AWS data trigger: S3 -> EventBridge -> SSM Automation -> a one-shot Scheduler schedule.

`schedule add X --on-new-data s3://B/P/ --backend aws` makes (after the role, bundle and
launch template of schedules/aws_clock.py, in this order, undone when a step fails):
1. EventBridge notifications on bucket B (PutBucketNotificationConfiguration with
   `EventBridgeConfiguration: {}`, merged into the bucket's configuration: the user's
   other notifications are kept; removed again only when runctl turned it on);
2. the Automation document `runctl-NAME-data`: one `aws:executeScript` step that
   creates, or moves later, the one-shot Scheduler schedule `runctl-NAME-settle` at
   `at(event time + settle)` (ActionAfterCompletion DELETE) whose target is the same
   `ec2:RunInstances` of the launch template a clock schedule has. Each upload pushes
   the fire later, so a burst of uploads fires once, `settle` after its last object;
3. the EventBridge rule `runctl-NAME-data` (source aws.s3, "Object Created", the bucket,
   the key prefix) whose target starts that document with the role `runctl-events`.
Nothing of ours runs between fires. The instance checks the data again (agent/fired.py).
https://docs.aws.amazon.com/AmazonS3/latest/userguide/EventBridge.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-ssm-automation.html
"""

from __future__ import annotations

import json
from typing import Any

from . import scheduler, tags
from .clients import Clients, error_code

EVENTS_ROLE = "runctl-events"  # EventBridge starts the document with it
AUTOMATION_ROLE = "runctl-automation"  # the document's step runs with it
RULE_SUFFIX = "-data"
SETTLE_SUFFIX = "-settle"

SETTLE_SCRIPT = '''import json
from datetime import datetime, timedelta, timezone

import boto3

SETTINGS = json.loads(SETTINGS_JSON)


def handler(events, context):
    """Create, or move later, the one-shot schedule that starts the run."""
    when = datetime.strptime(events["EventTime"], "%Y-%m-%dT%H:%M:%SZ")
    when = max(when.replace(tzinfo=timezone.utc), datetime.now(timezone.utc))
    at = (when + timedelta(seconds=SETTINGS["settle"])).strftime("%Y-%m-%dT%H:%M:%S")
    client = boto3.client("scheduler")
    args = dict(
        Name=SETTINGS["name"],
        GroupName="default",
        ScheduleExpression="at(" + at + ")",
        ScheduleExpressionTimezone="UTC",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Description="runctl-jupyter: new data settles, then one run",
        Target=SETTINGS["target"],
    )
    try:
        found = client.get_schedule(Name=SETTINGS["name"], GroupName="default")
    except client.exceptions.ResourceNotFoundException:
        found = None
    if found is None:
        try:
            client.create_schedule(**args)
            return {"at": at}
        except client.exceptions.ConflictException:
            found = client.get_schedule(Name=SETTINGS["name"], GroupName="default")
    if found["ScheduleExpression"] >= args["ScheduleExpression"]:
        return {"at": found["ScheduleExpression"]}
    client.update_schedule(**args)
    return {"at": at}
'''


def rule_name(name: str) -> str:  # the rule's and the document's
    return f"{scheduler.SCHEDULE_PREFIX}{name}{RULE_SUFFIX}"


def settle_name(name: str) -> str:
    return f"{scheduler.SCHEDULE_PREFIX}{name}{SETTLE_SUFFIX}"


def role_arn(account: str, role: str) -> str:
    return f"arn:aws:iam::{account}:role{scheduler.ROLE_PATH}{role}"


def event_pattern(bucket: str, prefix: str) -> dict:
    detail: dict[str, Any] = {"bucket": {"name": [bucket]}}
    if prefix:
        detail["object"] = {"key": [{"prefix": prefix}]}
    return {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": detail}


def document(account: str, name: str, settle: float, template_id: str) -> dict:
    """The Automation document: its one step upserts the one-shot settle schedule."""
    settings = {
        "name": settle_name(name),
        "settle": int(settle),
        "target": scheduler.target(account, template_id),
    }
    script = SETTLE_SCRIPT.replace("SETTINGS_JSON", repr(json.dumps(settings)), 1)
    return {
        "schemaVersion": "0.3",
        "description": f"runctl-jupyter data trigger {name}: settle, then one run",
        "assumeRole": "{{ AutomationAssumeRole }}",
        "parameters": {"EventTime": {"type": "String"}, "AutomationAssumeRole": {"type": "String"}},
        "mainSteps": [
            {
                "name": "settle",
                "action": "aws:executeScript",
                "inputs": {
                    "Runtime": "python3.11",
                    "Handler": "handler",
                    "Script": script,
                    "InputPayload": {"EventTime": "{{ EventTime }}"},
                },
            }
        ],
    }


def _notifications(s3: Any, bucket: str) -> dict:
    found = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    return {k: v for k, v in found.items() if k != "ResponseMetadata"}


def enable_events(s3: Any, bucket: str) -> bool:
    """Turn on EventBridge notifications, keeping the others; True when runctl turned them on."""
    config = _notifications(s3, bucket)
    if "EventBridgeConfiguration" in config:
        return False
    config["EventBridgeConfiguration"] = {}
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
    return True


def disable_events(s3: Any, bucket: str) -> None:
    """Remove the EventBridge configuration runctl added; the others stay as they are."""
    config = _notifications(s3, bucket)
    if config.pop("EventBridgeConfiguration", None) is None:
        return
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)


def create(
    clients: Clients, name: str, bucket: str, prefix: str, settle: float, template_id: str
) -> dict:
    """Notifications, document, rule and target; their facts. Undone if a step fails."""
    account = clients.identity()["Account"]
    events, ssm = clients.client("events"), clients.ssm
    undo: list[Any] = []
    facts: dict[str, Any] = {"data_bucket": bucket, "rule": rule_name(name)}
    try:
        facts["events_turned_on"] = enable_events(clients.s3, bucket)
        if facts["events_turned_on"]:
            undo.append(lambda: disable_events(clients.s3, bucket))
        ssm.create_document(
            Name=rule_name(name),
            DocumentType="Automation",
            DocumentFormat="JSON",
            Content=json.dumps(document(account, name, settle, template_id)),
            Tags=tags.tag_list(tags.setup_tags()),
        )
        undo.append(lambda: ssm.delete_document(Name=rule_name(name)))
        events.put_rule(
            Name=rule_name(name),
            EventPattern=json.dumps(event_pattern(bucket, prefix)),
            State="ENABLED",
            Description=f"runctl-jupyter data trigger {name}",
            Tags=tags.tag_list(tags.setup_tags()),
        )
        undo.append(lambda: events.delete_rule(Name=rule_name(name)))
        template = json.dumps(
            {"EventTime": ["<time>"], "AutomationAssumeRole": [role_arn(account, AUTOMATION_ROLE)]}
        )
        events.put_targets(
            Rule=rule_name(name),
            Targets=[
                {
                    "Id": "settle",
                    "Arn": f"arn:aws:ssm:{clients.region}:{account}:automation-definition/"
                    f"{rule_name(name)}:$DEFAULT",
                    "RoleArn": role_arn(account, EVENTS_ROLE),
                    "InputTransformer": {
                        "InputPathsMap": {"time": "$.time"},
                        "InputTemplate": template,
                    },
                }
            ],
        )
        return facts
    except BaseException:
        scheduler.unwind(undo)  # what was made, last first; the first error is raised
        raise


def delete(clients: Clients, name: str, facts: dict) -> list[str]:
    """Rule (its targets first), document, the pending settle schedule, notifications."""
    events = clients.client("events")
    failed = []
    steps = [
        lambda: events.remove_targets(Rule=rule_name(name), Ids=["settle"]),
        lambda: events.delete_rule(Name=rule_name(name)),
        lambda: clients.ssm.delete_document(Name=rule_name(name)),
        lambda: clients.client("scheduler").delete_schedule(
            Name=settle_name(name), GroupName=scheduler.GROUP
        ),
    ]
    if facts.get("events_turned_on"):
        steps.append(lambda: disable_events(clients.s3, facts["data_bucket"]))
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - each step on its own
            code = error_code(exc)
            if "NotFound" not in code and code != "InvalidDocument":
                failed.append(code or str(exc))
    return failed


READ_POLICY = "runctl-data-trigger"


def grant_read(clients: Clients, role: str, bucket: str, prefix: str) -> None:
    """The schedule's instance role may list the data prefix (key, size, ETag: the
    manifest the instance compares), nothing else of the bucket."""
    listing: dict[str, Any] = {
        "Sid": "ListDataPrefix",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": f"arn:aws:s3:::{bucket}",
    }
    if prefix:
        listing["Condition"] = {"StringLike": {"s3:prefix": [f"{prefix}*"]}}
    clients.iam.put_role_policy(
        RoleName=role,
        PolicyName=READ_POLICY,
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [listing]}),
    )


def trust_policy(service: str) -> dict:
    """Only `service` (events or ssm), for this account, assumes the role."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"aws:SourceAccount": "${aws:PrincipalAccount}"}},
            }
        ],
    }


def events_policy(account: str) -> dict:
    """EventBridge: start runctl's data documents, passing only the automation role to SSM."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "StartRunctlDataDocuments",
                "Effect": "Allow",
                "Action": ["ssm:StartAutomationExecution"],
                "Resource": f"arn:aws:ssm:*:{account}:automation-definition/"
                f"{scheduler.SCHEDULE_PREFIX}*{RULE_SUFFIX}:*",
            },
            {
                "Sid": "PassAutomationRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": role_arn(account, AUTOMATION_ROLE),
                "Condition": {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}},
            },
        ],
    }


def automation_policy(account: str) -> dict:
    """The document's step: the settle schedules only, passing only the scheduler role."""
    settle = (
        f"arn:aws:scheduler:*:{account}:schedule/{scheduler.GROUP}/"
        f"{scheduler.SCHEDULE_PREFIX}*{SETTLE_SUFFIX}"
    )
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "SettleSchedules",
                "Effect": "Allow",
                "Action": [
                    "scheduler:GetSchedule",
                    "scheduler:CreateSchedule",
                    "scheduler:UpdateSchedule",
                ],
                "Resource": settle,
            },
            {
                "Sid": "PassSchedulerRole",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": scheduler.role_arn(account),
                "Condition": {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}},
            },
        ],
    }


ROLES = (
    (EVENTS_ROLE, "events.amazonaws.com", events_policy, "EventBridge starts data triggers"),
    (AUTOMATION_ROLE, "ssm.amazonaws.com", automation_policy, "a data trigger's settle step"),
)


def ensure_roles(clients: Clients) -> list[str]:
    """Make the events and automation roles, or bring their policies up to date; the made."""
    account = clients.identity()["Account"]
    made = []
    for role, service, policy, what in ROLES:
        try:
            clients.iam.get_role(RoleName=role)
        except Exception as exc:
            if error_code(exc) != "NoSuchEntity":
                raise
            clients.iam.create_role(
                RoleName=role,
                Path=scheduler.ROLE_PATH,
                AssumeRolePolicyDocument=json.dumps(trust_policy(service)),
                Description=f"runctl-jupyter: {what}",
                Tags=tags.tag_list(tags.setup_tags()),
            )
            made.append(role)
        clients.iam.put_role_policy(
            RoleName=role, PolicyName=role, PolicyDocument=json.dumps(policy(account))
        )
    return made


def user_statements(acct: str) -> list[dict]:
    """The user's part (aws/user_policy.py): runctl's rules and documents, any bucket's
    notification configuration (the data bucket is the user's), passing the two roles."""
    name = f"{scheduler.SCHEDULE_PREFIX}*{RULE_SUFFIX}"
    roles = [role_arn(acct, r) for r in (EVENTS_ROLE, AUTOMATION_ROLE)]
    return [
        {
            "Sid": "RunctlDataRules",
            "Effect": "Allow",
            "Action": [  # DescribeRule: `doctor`-style reading back; TagResource: PutRule's Tags
                f"events:{a}"
                for a in ("PutRule", "PutTargets", "RemoveTargets", "DeleteRule", "DescribeRule")
                + ("EnableRule", "DisableRule", "TagResource")
            ],
            "Resource": f"arn:aws:events:*:{acct}:rule/{name}",
        },
        {
            "Sid": "RunctlDataDocuments",
            "Effect": "Allow",
            "Action": ["ssm:CreateDocument", "ssm:DeleteDocument", "ssm:AddTagsToResource"],
            "Resource": f"arn:aws:ssm:*:{acct}:document/{name}",
        },
        {
            "Sid": "DataBucketNotifications",
            "Effect": "Allow",
            "Action": ["s3:GetBucketNotification", "s3:PutBucketNotification"],
            "Resource": "arn:aws:s3:::*",
        },
        {
            "Sid": "RunctlSettleSchedules",
            "Effect": "Allow",
            "Action": ["scheduler:DeleteSchedule"],
            "Resource": f"arn:aws:scheduler:*:{acct}:schedule/{scheduler.GROUP}/"
            f"{scheduler.SCHEDULE_PREFIX}*{SETTLE_SUFFIX}",
        },
        {
            "Sid": "PassDataTriggerRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": roles[0],
            "Condition": {"StringEquals": {"iam:PassedToService": "events.amazonaws.com"}},
        },
        {
            "Sid": "ScheduleRoleReadsItsData",
            "Effect": "Allow",
            "Action": ["iam:PutRolePolicy", "iam:DeleteRolePolicy", "iam:ListRolePolicies"],
            "Resource": f"arn:aws:iam::{acct}:role{scheduler.ROLE_PATH}runctl-run-"
            f"{scheduler.RUN_ID_PREFIX}*",
        },
        {
            "Sid": "SetupDataTriggerRoles",
            "Effect": "Allow",
            "Action": ["iam:CreateRole", "iam:GetRole", "iam:PutRolePolicy", "iam:TagRole"],
            "Resource": roles,
        },
    ]
