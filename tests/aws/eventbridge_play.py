"""EventBridge and SSM Automation, played: moto keeps rules, targets and documents and
runs none of them, so a test delivers an S3 event as AWS would. `deliver` builds the
"Object Created" event S3 sends to EventBridge for an uploaded object, matches it against
each enabled runctl rule's event pattern, and performs each matching target: an SSM
Automation document started with the target's role (it must trust events.amazonaws.com
and, evaluated by iam_eval.py, allow the start and the pass of the automation role), with
the target's input transformer applied; the document's `aws:executeScript` step is then
run as SSM runs it (its Python handler, with the document's assumeRole, whose policy
must allow what the step calls).
https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-transform-target-input.html
https://docs.aws.amazon.com/systems-manager/latest/userguide/automation-action-executeScript.html
"""

from __future__ import annotations

import json
import time
from typing import Any

try:
    import iam_eval
    from scheduler_fire import role_policies
except ImportError:
    from aws import iam_eval
    from aws.scheduler_fire import role_policies

ACCOUNT = "123456789012"


def s3_event(bucket: str, key: str, size: int, region: str) -> dict:
    return {
        "version": "0",
        "id": f"ev-{time.monotonic_ns()}",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {"key": key, "size": size},
            "reason": "PutObject",
        },
    }


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge's matching of the forms runctl uses: value lists, {"prefix": ...}."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(
            k in event and matches(v, event[k]) for k, v in pattern.items()
        )
    for allowed in pattern:
        if isinstance(allowed, dict) and "prefix" in allowed:
            if isinstance(event, str) and event.startswith(allowed["prefix"]):
                return True
        elif allowed == event:
            return True
    return False


def _assumable(clients: Any, role_arn: str, service: str) -> list[dict]:
    trust, policies = role_policies(clients, role_arn.rsplit("/", 1)[-1])
    services = [s.get("Principal", {}).get("Service") for s in trust["Statement"]]
    assert services == [service], trust
    return policies


def _transform(target: dict, event: dict) -> dict:
    transformer = target["InputTransformer"]
    text = transformer["InputTemplate"]
    for name, path in transformer["InputPathsMap"].items():
        value: Any = event
        for part in path.removeprefix("$.").split("."):
            value = value[part]
        text = text.replace(f"<{name}>", str(value))
    return dict(json.loads(text))


def _run_automation(clients: Any, target: dict, event: dict) -> Any:
    policies = _assumable(clients, target["RoleArn"], "events.amazonaws.com")
    params = _transform(target, event)
    automation_role = params["AutomationAssumeRole"][0]
    wanted = [
        iam_eval.Context("ssm:StartAutomationExecution", target["Arn"], {}),
        iam_eval.Context(
            "iam:PassRole", automation_role, {"iam:passedtoservice": "ssm.amazonaws.com"}
        ),
    ]
    refused = iam_eval.allowed(policies, wanted)
    assert refused is None, f"the events role may not {refused}"
    name = target["Arn"].split("automation-definition/", 1)[1].rsplit(":", 1)[0]
    doc = json.loads(clients.ssm.get_document(Name=name, DocumentFormat="JSON")["Content"])
    assert doc["assumeRole"] == "{{ AutomationAssumeRole }}"
    step_policies = _assumable(clients, automation_role, "ssm.amazonaws.com")
    (step,) = doc["mainSteps"]
    assert step["action"] == "aws:executeScript"
    namespace: dict = {}
    exec(compile(step["inputs"]["Script"], f"<document {name}>", "exec"), namespace)
    settings = namespace["SETTINGS"]
    arn = f"arn:aws:scheduler:{clients.region}:{ACCOUNT}:schedule/default/{settings['name']}"
    role = settings["target"]["RoleArn"]
    step_calls = [
        iam_eval.Context(f"scheduler:{a}", arn, {})
        for a in ("GetSchedule", "CreateSchedule", "UpdateSchedule")
    ]
    step_calls.append(
        iam_eval.Context("iam:PassRole", role, {"iam:passedtoservice": "scheduler.amazonaws.com"})
    )
    refused = iam_eval.allowed(step_policies, step_calls)
    assert refused is None, f"the automation role may not {refused}"
    payload = {
        k: v.replace("{{ EventTime }}", params["EventTime"][0])
        for k, v in step["inputs"]["InputPayload"].items()
    }
    return namespace[step["inputs"]["Handler"]](payload, None)


def deliver(clients: Any, event: dict) -> int:
    """Deliver one event to the enabled runctl rules it matches; the targets performed."""
    events = clients.client("events")
    done = 0
    for rule in events.list_rules(NamePrefix="runctl-")["Rules"]:
        if rule.get("State") != "ENABLED" or not matches(json.loads(rule["EventPattern"]), event):
            continue
        for target in events.list_targets_by_rule(Rule=rule["Name"])["Targets"]:
            assert ":automation-definition/" in target["Arn"], target
            _run_automation(clients, target, event)
            done += 1
    return done


def install_eventbridge_notifications() -> None:
    """moto keeps a bucket's `EventBridgeConfiguration` but leaves it out of
    GetBucketNotificationConfiguration; AWS returns it (an empty structure when on:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetBucketNotificationConfiguration.html).
    Played here: the answer carries it when the bucket has it."""
    from moto.core.responses import ActionResult
    from moto.s3.responses import S3Response

    if getattr(S3Response, "_runctl_eventbridge", False):
        return
    original = S3Response.get_bucket_notification

    def get_bucket_notification(self: Any) -> Any:
        config = self.backend.get_bucket_notification_configuration(self.bucket_name)
        if not config or config.event_bridge is None:
            return original(self)
        captured: dict = {}
        serialized = self.serialized

        def keep(result: Any) -> Any:
            captured.update(result.result if hasattr(result, "result") else {})
            return result

        self.serialized = keep  # type: ignore[method-assign]
        try:
            original(self)
        finally:
            self.serialized = serialized  # type: ignore[method-assign]
        captured["EventBridgeConfiguration"] = {}
        return self.serialized(ActionResult(captured))

    S3Response.get_bucket_notification = get_bucket_notification
    S3Response._runctl_eventbridge = True
