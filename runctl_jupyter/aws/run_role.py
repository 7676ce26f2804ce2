"""A run's own IAM role and instance profile: one run's reach (docs/aws.md, "Who can reach what").

Every instance a run launches for itself runs under `runctl-run-<run id>` (path
`/runctl/`), tagged with the run's tags. Its permissions are the managed policy
`runctl-run-<bucket>` (`policy.run_policy`, made by `runctl aws setup`), written once
with the policy variable `${aws:PrincipalTag/runctl:run-id}`: the role's own tag
decides which S3 prefix and which instances, spot requests, fleets and templates it
reaches. EC2 hands an instance no tags of its own as principal tags, so a per-run role
is what gives each run its own principal. The user attaches only that policy (and
SSM core) to these roles (`runctl aws policy`, condition `iam:PolicyARN`), so a run
role never holds more.

An admin's own policy `/runctl/runctl-data` (read access to a data bucket, say), when it
exists, is attached too: the user cannot write it, only attach it.

The role is deleted when its launch fails and by `runctl cleanup` once its run is over
(the `role` kind of `runctl resources`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import policy, tags
from .clients import AWSError, Clients, error_code

PATH = "/runctl/"
PREFIX = "runctl-run-"
# an admin's own policy (say, read access to a data bucket) that every run role gets too
DATA_POLICY = "runctl-data"


def name(run_id: str) -> str:
    return f"{PREFIX}{run_id}"


def policy_name(bucket: str) -> str:
    return f"{PREFIX}{bucket}"


def policy_arn(account: str, bucket: str) -> str:
    return f"arn:aws:iam::{account}:policy{PATH}{policy_name(bucket)}"


def data_policy_arn(account: str) -> str:
    return f"arn:aws:iam::{account}:policy{PATH}{DATA_POLICY}"


def _data_policy(clients: Clients, account: str) -> list[str]:
    """The admin's `runctl-data` policy, when there is one."""
    try:
        clients.iam.get_policy(PolicyArn=data_policy_arn(account))
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return []
    return [data_policy_arn(account)]


def ensure_policy(clients: Clients, account: str, bucket: str, ecr_repository: str = "") -> bool:
    """Create the run roles' managed policy, or make its document the current one (a new
    default version; the oldest other one goes when IAM's five are used). True if made."""
    iam = clients.iam
    arn = policy_arn(account, bucket)
    document = json.dumps(policy.run_policy(bucket, ecr_repository))
    try:
        found = iam.get_policy(PolicyArn=arn)["Policy"]
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        iam.create_policy(
            PolicyName=policy_name(bucket),
            Path=PATH,
            PolicyDocument=document,
            Description="runctl-jupyter: one run's reach, by the role's runctl:run-id tag",
            Tags=tags.tag_list(tags.setup_tags()),
        )
        return True
    current = iam.get_policy_version(PolicyArn=arn, VersionId=found["DefaultVersionId"])
    text = current["PolicyVersion"]["Document"]
    if (json.loads(text) if isinstance(text, str) else text) != json.loads(document):
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        old = sorted(
            (v for v in versions if not v["IsDefaultVersion"]), key=lambda v: v["CreateDate"]
        )
        if len(versions) >= 5 and old:
            iam.delete_policy_version(PolicyArn=arn, VersionId=old[0]["VersionId"])
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=document, SetAsDefault=True)
    return False


def exists(clients: Clients, run_name: str) -> bool:
    try:
        clients.iam.get_role(RoleName=run_name)
    except Exception as exc:
        if error_code(exc) != "NoSuchEntity":
            raise
        return False
    return True


def create(clients: Clients, run_tags: dict[str, str], bucket: str) -> str:
    """The run's role and instance profile (both named `runctl-run-<run id>`; what exists
    already is kept: a resumed run's); returns the profile's name. Deleted again if a
    step fails."""
    iam = clients.iam
    account = clients.identity()["Account"]
    run_name = name(run_tags[tags.RUN_ID])
    tag_list = tags.tag_list(run_tags)
    policies = [policy_arn(account, bucket), policy.SSM_CORE_POLICY_ARN]
    policies += _data_policy(clients, account)
    # (the step, the answer meaning it is done already: a resumed run finds its role made)
    steps: list[tuple[Any, str]] = [
        (
            lambda: iam.create_role(
                RoleName=run_name,
                Path=PATH,
                AssumeRolePolicyDocument=json.dumps(policy.assume_role_policy()),
                Description="runctl-jupyter: the instances of one run",
                Tags=tag_list,
            ),
            "EntityAlreadyExists",
        ),
        *(
            (lambda arn=arn: iam.attach_role_policy(RoleName=run_name, PolicyArn=arn), "")
            for arn in policies
        ),
        (
            lambda: iam.create_instance_profile(
                InstanceProfileName=run_name, Path=PATH, Tags=tag_list
            ),
            "EntityAlreadyExists",
        ),
        (  # a profile holds one role: LimitExceeded when it holds this one already
            lambda: iam.add_role_to_instance_profile(
                InstanceProfileName=run_name, RoleName=run_name
            ),
            "LimitExceeded",
        ),
    ]
    try:
        for step, done in steps:
            try:
                step()
            except Exception as exc:
                if error_code(exc) == "NoSuchEntity" and policies[0] in str(exc):
                    raise AWSError(
                        f"the run roles' policy {policy_name(bucket)} is missing; "
                        "run `runctl aws setup`, then launch again"
                    ) from exc
                if not done or error_code(exc) != done:
                    raise
    except BaseException:
        delete(clients, run_name)
        raise
    return run_name


def delete(clients: Clients, run_name: str) -> list[str]:
    """Delete a run role and its profile, each step on its own (a missing one is done);
    returns the steps that failed, as `call: code`."""
    iam = clients.iam
    steps: list[tuple[str, Any]] = [
        (
            "RemoveRoleFromInstanceProfile",
            lambda: iam.remove_role_from_instance_profile(
                InstanceProfileName=run_name, RoleName=run_name
            ),
        ),
        (
            "DeleteInstanceProfile",
            lambda: iam.delete_instance_profile(InstanceProfileName=run_name),
        ),
    ]
    try:
        attached = iam.list_attached_role_policies(RoleName=run_name)["AttachedPolicies"]
    except Exception:  # noqa: BLE001 - no role (or no answer): the steps below say which
        attached = []
    for item in attached:
        arn = item["PolicyArn"]
        steps.append(
            (
                "DetachRolePolicy",
                lambda arn=arn: iam.detach_role_policy(RoleName=run_name, PolicyArn=arn),
            )
        )
    try:  # inline: a data-triggered schedule's read of its data prefix (aws/data_rule.py)
        inline = iam.list_role_policies(RoleName=run_name)["PolicyNames"]
    except Exception:  # noqa: BLE001 - as above
        inline = []
    for policy_name_ in inline:
        steps.append(
            (
                "DeleteRolePolicy",
                lambda n=policy_name_: iam.delete_role_policy(RoleName=run_name, PolicyName=n),
            )
        )
    steps.append(("DeleteRole", lambda: iam.delete_role(RoleName=run_name)))
    failed = []
    for call, step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - each step on its own
            if error_code(exc) != "NoSuchEntity":
                failed.append(f"{call}: {error_code(exc) or exc}")
    return failed


def profile_not_ready(exc: BaseException) -> bool:
    """EC2's answer for an instance profile IAM has not propagated to it yet
    (`InvalidParameterValue` naming the profile: IAM is eventually consistent)."""
    return error_code(exc) == "InvalidParameterValue" and "iamInstanceProfile" in str(exc)


def launch_when_ready(call: Any, timeout: float = 60.0, poll: float = 2.0) -> Any:
    """`call()`, retried while EC2 does not know a just-made profile yet (bounded)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return call()
        except Exception as exc:
            if not profile_not_ready(exc) or time.monotonic() > end:
                raise
            time.sleep(poll)
