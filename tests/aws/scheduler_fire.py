"""EventBridge Scheduler, played: moto keeps schedules and fires nothing, so a test fires
one as AWS would. `fire_target` reads the schedule's Target back from moto, checks it is
a universal target runctl's code would let the Scheduler perform (the target's role
trusts scheduler.amazonaws.com, and its policies, evaluated by iam_eval.py with the
launch template's real tags, allow the call and the instance role it passes), then
performs it: EC2 RunInstances with the target's Input. The instance player
(conftest.py) then boots the instance: its UserData is the fire script.
https://docs.aws.amazon.com/scheduler/latest/UserGuide/managing-targets-universal.html
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

try:
    import iam_eval
except ImportError:
    from aws import iam_eval

RUN_INSTANCES = "arn:aws:scheduler:::aws-sdk:ec2:runInstances"


def _document(text: Any) -> dict:
    return json.loads(unquote(text)) if isinstance(text, str) else dict(text)


def role_policies(clients: Any, role: str) -> tuple[dict, list[dict]]:
    """The role's trust policy and its inline policies, as IAM (moto) holds them."""
    iam = clients.iam
    trust = _document(iam.get_role(RoleName=role)["Role"]["AssumeRolePolicyDocument"])
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    docs = [
        _document(iam.get_role_policy(RoleName=role, PolicyName=n)["PolicyDocument"]) for n in names
    ]
    return trust, docs


def contexts(clients: Any, params: dict) -> list[Any]:
    """What RunInstances from a launch template is authorized on: the template (its
    tags), the instance (with ec2:LaunchTemplate), and iam:PassRole of its profile's role."""
    account = "123456789012"
    template_id = params["LaunchTemplate"]["LaunchTemplateId"]
    ec2 = clients.ec2
    template = ec2.describe_launch_templates(LaunchTemplateIds=[template_id])["LaunchTemplates"][0]
    template_arn = f"arn:aws:ec2:{clients.region}:{account}:launch-template/{template_id}"
    tag_keys = {f"aws:resourcetag/{t['Key']}".lower(): t["Value"] for t in template.get("Tags", [])}
    data = ec2.describe_launch_template_versions(LaunchTemplateId=template_id)[
        "LaunchTemplateVersions"
    ][0]["LaunchTemplateData"]
    profile = data["IamInstanceProfile"]["Name"]
    roles = clients.iam.get_instance_profile(InstanceProfileName=profile)["InstanceProfile"][
        "Roles"
    ]
    return [
        iam_eval.Context("ec2:RunInstances", template_arn, tag_keys),
        iam_eval.Context(
            "ec2:RunInstances",
            f"arn:aws:ec2:{clients.region}:{account}:instance/*",
            {"ec2:launchtemplate": template_arn},
        ),
        *(
            iam_eval.Context("iam:PassRole", r["Arn"], {"iam:passedtoservice": "ec2.amazonaws.com"})
            for r in roles
        ),
    ]


def fire_target(clients: Any, name: str, group: str = "default") -> str:
    """Fire the schedule `name` once, as EventBridge Scheduler does; the instance id."""
    schedule = clients.client("scheduler").get_schedule(Name=name, GroupName=group)
    target = schedule["Target"]
    assert target["Arn"] == RUN_INSTANCES, target["Arn"]
    role = target["RoleArn"].rsplit("/", 1)[-1]
    trust, policies = role_policies(clients, role)
    services = [s.get("Principal", {}).get("Service") for s in trust["Statement"]]
    assert services == ["scheduler.amazonaws.com"], trust
    params = json.loads(target["Input"])
    refused = iam_eval.allowed(policies, contexts(clients, params))
    assert refused is None, f"the scheduler role may not {refused}"
    return clients.ec2.run_instances(**params)["Instances"][0]["InstanceId"]


def install_template_launch() -> None:
    """moto's RunInstances from a launch template takes its image, type, UserData and
    groups but not its IamInstanceProfile nor its instance TagSpecifications; AWS applies
    both (https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/ec2-launch-templates.html).
    Played here: the profile associated, the tags put on each instance it launched."""
    from moto.ec2.models import instances

    backend_class = instances.InstanceBackend
    if getattr(backend_class, "_runctl_template_launch", False):
        return
    original = backend_class.run_instances

    def run_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        reservation = original(self, *args, **kwargs)
        if not kwargs.get("launch_template"):
            return reservation
        data = self._get_template_from_args(kwargs["launch_template"]).data or {}
        profile = (data.get("IamInstanceProfile") or {}).get("Name")
        wanted = {}
        for spec in data.get("TagSpecifications") or []:
            if spec.get("ResourceType") == "instance":
                wanted.update({t["Key"]: t["Value"] for t in spec.get("Tags", [])})
        for inst in reservation.instances:
            have = {t.get("key") for t in inst.get_tags()}
            inst.add_tags({k: v for k, v in wanted.items() if k not in have})
            if profile and inst.id not in self.iam_instance_profile_associations:
                self.associate_iam_instance_profile(inst.id, iam_instance_profile_name=profile)
        return reservation

    backend_class.run_instances = run_instances
    backend_class._runctl_template_launch = True
