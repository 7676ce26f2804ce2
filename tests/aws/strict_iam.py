"""The strict layer's IAM: a request is evaluated against the policies of the principal
that signed it, with the resources' real tags from moto (moto evaluates no IAM).

Principals, told apart by the access key a request is signed with:
- an instance (the fixture's instance player signs each instance's requests with
  `instance_key(instance_id)`): the role of the instance profile the instance carries,
  its inline and attached policies and its tags (`aws:PrincipalTag`), as stored in moto;
- anyone else is the runctl user, whose policy is `runctl aws policy`'s
  (aws/user_policy.py), enforced for the actions in USER_ACTIONS.

Request context (AWS, *Actions, resources and condition keys for Amazon EC2* and
*... for Amazon S3*: https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html,
https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html):
each EC2 resource a request names is authorized on its own, by its ARN, with
`aws:ResourceTag/K` and `ec2:ResourceTag/K` its tags; S3 objects by
`arn:aws:s3:::bucket/key`, ListBucket by the bucket with `s3:prefix`. A role session
carries the role's tags as `aws:PrincipalTag/K`
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html#condition-keys-principaltag)
and, for EC2 role credentials, `ec2:SourceInstanceARN`
(https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/iam-roles-for-amazon-ec2.html).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import iam_eval
except ImportError:  # imported from tests/ as aws.strict_iam
    from aws import iam_eval

# the user's actions evaluated against `runctl aws policy` (the volume-mutating ones)
USER_ACTIONS = ("AttachVolume", "DetachVolume", "DeleteVolume")
# the EC2 actions evaluated for an instance's role (every one the agent calls, and the
# volume actions code on an instance could try)
INSTANCE_ACTIONS = (
    "StopInstances",
    "TerminateInstances",
    "StartInstances",
    "AttachVolume",
    "DetachVolume",
    "DeleteVolume",
    "CancelSpotInstanceRequests",
    "DeleteFleets",
    "DeleteLaunchTemplate",
    "CreateTags",
)
ACCESS_DENIED_EC2 = "UnauthorizedOperation"


def instance_key(instance_id: str) -> str:
    """The access key an instance's requests are signed with (20 of [A-Z0-9], as AWS's)."""
    return ("ASIA" + instance_id.replace("i-", "").upper() + "0" * 16)[:20]


def _loads(document: Any) -> dict:
    if isinstance(document, dict):
        return document
    from urllib.parse import unquote

    text = str(document)
    return json.loads(text if text.lstrip().startswith("{") else unquote(text))


# -- principals ---------------------------------------------------------------------------


class Principal:
    def __init__(self, arn: str, policies: list[dict], keys: dict[str, Any]):
        self.arn, self.policies, self.keys = arn, policies, keys


def _ec2(account: str, region: str) -> Any:
    from moto.ec2.models import ec2_backends

    return ec2_backends[account][region]


def _iam(account: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account]["global"]


def _profile_of(ec2: Any, instance: Any) -> str | None:
    """The instance profile an instance carries: its association, else (an instance an
    EC2 Fleet launched, which moto does not associate) its launch template's, then
    associated as AWS does at launch (it stays when the fleet and template are deleted)."""
    assoc = ec2.iam_instance_profile_associations.get(instance.id)
    if assoc is not None:
        return assoc.iam_instance_profile.name
    name = _template_profile(ec2, instance)
    if name:
        ec2.associate_iam_instance_profile(instance.id, iam_instance_profile_name=name)
    return name


def _template_profile(ec2: Any, instance: Any) -> str | None:
    for fleet in ec2.fleets.values():
        if any(r.instance.id == instance.id for r in fleet.spot_requests):
            for cfg in fleet.launch_template_configs or []:
                spec = cfg.get("LaunchTemplateSpecification") or {}
                tid = spec.get("LaunchTemplateId")
                try:
                    template = (
                        ec2.get_launch_template(tid)
                        if tid
                        else ec2.get_launch_template_by_name(spec.get("LaunchTemplateName"))
                    )
                except Exception:  # noqa: BLE001 - deleted since
                    continue
                data = template.default_version().data or {}
                profile = data.get("IamInstanceProfile") or {}
                name = profile.get("Name") or (profile.get("Arn") or "").rsplit("/", 1)[-1]
                if name:
                    return name
    return None


def role_principal(account: str, role_name: str, instance_arn: str | None = None) -> Principal:
    """A session of role `role_name` (its policies and tags, as moto stores them)."""
    iam = _iam(account)
    role = iam.get_role(role_name)
    policies = [_loads(doc) for doc in role.policies.values()]
    for managed in role.managed_policies.values():
        default = next(v for v in managed.versions if v.is_default)
        policies.append(_loads(default.document))
    found = role.tags or []  # moto keeps a list of {Key, Value} (older: a dict of them)
    keys: dict[str, Any] = {
        f"aws:principaltag/{t['Key']}".lower(): t["Value"]
        for t in (found.values() if isinstance(found, dict) else found)
    }
    if instance_arn:
        keys["ec2:sourceinstancearn"] = instance_arn
    return Principal(role.arn, policies, keys)


def instance_principal(account: str, region: str, instance_id: str) -> Principal:
    """The role session of the instance `instance_id` (no role: no permission at all)."""
    ec2 = _ec2(account, region)
    instance = ec2.get_instance(instance_id)
    arn = f"arn:aws:ec2:{region}:{account}:instance/{instance_id}"
    name = _profile_of(ec2, instance)
    if not name:
        return Principal(arn, [], {"ec2:sourceinstancearn": arn})
    roles = _iam(account).get_instance_profile(name).roles
    if not roles:
        return Principal(arn, [], {"ec2:sourceinstancearn": arn})
    return role_principal(account, roles[0].name, arn)


def user_principal(account: str, region: str) -> Principal:
    from runctl_jupyter.aws.policy import bucket_name
    from runctl_jupyter.aws.user_policy import user_policy

    policy = user_policy(account, region, bucket_name(account, region))
    return Principal(f"arn:aws:iam::{account}:user/test", [policy], {})


def iam_user_principal(account: str, user_name: str) -> Principal:
    """An IAM user of moto's account (a team member, tests/aws/test_team_store.py): the
    inline and attached policies moto stores for it."""
    user = _iam(account).get_user(user_name)
    policies = [_loads(doc) for doc in user.policies.values()]
    for managed in user.managed_policies.values():
        default = next(v for v in managed.versions if v.is_default)
        policies.append(_loads(default.document))
    # aws:username: IAM's policy variable for an IAM user's own name (IAM UG,
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html)
    return Principal(user.arn, policies, {"aws:username": user.name})


# -- EC2 request contexts -----------------------------------------------------------------


def _ids(params: dict, key: str) -> list[str]:
    value = params.get(key)
    if value is None:
        return []
    if isinstance(value, dict):  # moto's parsed `Key.N` lists
        return [str(v) for _, v in sorted(value.items())]
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


# the request parameters naming resources, as moto parses them (lists are plural)
_RESOURCE_KINDS = {
    "InstanceId": "instance",
    "InstanceIds": "instance",
    "VolumeId": "volume",
    "SpotInstanceRequestIds": "spot-instances-request",
    "FleetIds": "fleet",
    "LaunchTemplateId": "launch-template",
    "Resources": None,  # CreateTags: the kind from the id's prefix
}
_PREFIX_KINDS = {
    "i-": "instance",
    "vol-": "volume",
    "sir-": "spot-instances-request",
    "fleet-": "fleet",
    "lt-": "launch-template",
    "snap-": "snapshot",
    "sg-": "security-group",
}


def _tags_of(ec2: Any, resource_id: str) -> dict[str, str]:
    found = ec2.describe_tags(filters={"resource-id": [resource_id]})
    return {t["key"]: t["value"] for t in found}


def ec2_contexts(req: Any, action: str) -> list[Any]:
    """One context a resource the request names (its ARN and tags), as AWS authorizes it."""
    ec2 = _ec2(req.account, req.region)
    resources: list[tuple[str, str]] = []
    for param, kind in _RESOURCE_KINDS.items():
        for rid in _ids(req.params, param):
            kind = kind or next((k for p, k in _PREFIX_KINDS.items() if rid.startswith(p)), "")
            resources.append((kind, rid))
    if action == "DetachVolume" and not _ids(req.params, "InstanceId"):
        for vid in _ids(req.params, "VolumeId"):  # the instance it is attached to counts too
            attachment = getattr(ec2.get_volume(vid), "attachment", None)
            if attachment is not None:
                resources.append(("instance", attachment.instance.id))
    contexts = []
    for kind, rid in resources:
        keys: dict[str, Any] = {}
        for key, value in _tags_of(ec2, rid).items():
            keys[f"aws:resourcetag/{key}".lower()] = value
            keys[f"ec2:resourcetag/{key}".lower()] = value
        arn = f"arn:aws:ec2:{req.region}:{req.account}:{kind}/{rid}"
        contexts.append(iam_eval.Context(f"ec2:{action}", arn, keys))
    return contexts or [iam_eval.Context(f"ec2:{action}", "*")]


def refused(principal: Principal, contexts: list[Any]) -> Any:
    """The first context the principal may not act on, None when it may on all."""
    for ctx in contexts:
        ctx.keys.update(principal.keys)
    return iam_eval.allowed(principal.policies, contexts)


def denial_message(principal: Principal, ctx: Any) -> str:
    return (
        f"You are not authorized to perform this operation. User: {principal.arn} is not "
        f"authorized to perform: {ctx.action} on resource: {ctx.resource} because no "
        "identity-based policy allows the action"
    )


# -- S3 ----------------------------------------------------------------------------------

_S3_METHODS = {
    "GET": "s3:GetObject",
    "HEAD": "s3:GetObject",
    "PUT": "s3:PutObject",
    "POST": "s3:PutObject",
    "DELETE": "s3:DeleteObject",
}


def s3_object_context(method: str, bucket: str, key: str) -> Any:
    return iam_eval.Context(_S3_METHODS.get(method, "s3:GetObject"), f"arn:aws:s3:::{bucket}/{key}")


def s3_list_context(bucket: str, prefix: str | None) -> Any:
    keys = {} if prefix is None else {"s3:prefix": prefix}
    return iam_eval.Context("s3:ListBucket", f"arn:aws:s3:::{bucket}", keys)
