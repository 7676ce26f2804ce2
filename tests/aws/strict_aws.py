"""The strict AWS layer: requests AWS refuses and moto accepts are refused here too.

moto accepts many requests that EC2, SSM, S3 and IAM reject, so a suite green on moto
can launch nothing on AWS (issue 14). `install()` wraps moto's one dispatch point
(`BaseResponse.call_action`, every query and JSON protocol request: EC2, IAM, SSM) and
S3's bucket PUT (CreateBucket) in this process; before moto answers, every rule
registered for the request's service and action looks at its parameters and may
refuse it with AWS's error code, HTTP status and message (botocore gets a real
ClientError). Each rule is one small function with the AWS documentation page that
states the limit; where AWS's exact message is not published, the message says the
documented rule in AWS's words and the code is the one the API reference names.

`off()` turns the layer off for a block (the tests that show moto alone accepts a
request); `REFUSED` keeps what was refused, for a test's failure message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ipaddress
import json
import re
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

try:
    import strict_iam
except ImportError:  # imported from tests/ as aws.strict_aws
    from aws import strict_iam

ACCOUNT = "123456789012"


def _shared() -> dict:
    """One state for the process, kept on moto's module: this file may be imported under
    two names (`strict_aws` from tests/aws, `aws.strict_aws` from tests/), and both must
    see one switch, one install and one record."""
    import moto.core.responses as moto_responses

    if not hasattr(moto_responses, "_runctl_strict"):
        moto_responses._runctl_strict = {
            "on": True,
            "installed": False,
            "lock": threading.Lock(),
            "refused": [],
            "members": {},
            "passable": {"runctl-instance"},
            "placement_groups": {},
            "principals": {},  # access key -> the instance whose role signs with it
            "seen": [],  # the requests that tag something, as moto parsed them
        }
    return moto_responses._runctl_strict


_state = _shared()
# iam:PassRole, simulated: the roles the test caller may pass to EC2 (runctl's policy
# allows only its own instance role: `runctl aws policy`). A test may add to it.
PASSABLE_ROLES: set[str] = _state["passable"]
RUN_ROLE_PREFIX = "runctl-run-"  # and each run's own role (`PassRunRoles`, aws/run_role.py)
# IAM's eventual consistency, played: an instance profile younger than this is unknown to
# RunInstances (0: off; a test turns it on). A setting, since AWS publishes no duration.
PROFILE_PROPAGATION: dict[str, float] = _state.setdefault("propagation", {"seconds": 0.0})
_lock = _state["lock"]
REFUSED: list[tuple[str, str, str, str]] = _state["refused"]  # (rule, action, code, message)
# cluster placement group name -> instance ids launched in it (moto has no groups)
_CLUSTER_MEMBERS: dict[tuple[str, str], list[str]] = _state["members"]
# access key -> instance id: requests signed with it are that instance role's (strict_iam.py)
INSTANCE_KEYS: dict[str, str] = _state["principals"]
# every request that puts tags on something (TAGGING, IAM_TAGGING), for a test to read
SEEN: list[Any] = _state.setdefault("seen", [])


class Refusal(Exception):
    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


@dataclass
class Request:
    service: str
    action: str
    params: dict
    region: str
    account: str = ACCOUNT
    response: Any = None
    access_key: str = ""

    def ec2(self) -> Any:
        from moto.ec2.models import ec2_backends

        return ec2_backends[self.account][self.region]

    def iam(self) -> Any:
        from moto.iam.models import iam_backends

        return iam_backends[self.account]["global"]


@dataclass
class Rule:
    name: str
    service: str
    actions: tuple[str, ...]
    doc: str
    check: Callable[[Request], None]
    summary: str = field(default="")


RULES: list[Rule] = []


def rule(service: str, actions: tuple[str, ...], doc: str) -> Callable:
    def register(fn: Callable[[Request], None]) -> Callable[[Request], None]:
        summary = (fn.__doc__ or "").strip().splitlines()[0]
        RULES.append(Rule(fn.__name__, service, actions, doc, fn, summary))
        return fn

    return register


@contextlib.contextmanager
def off() -> Iterator[None]:
    """moto alone, for the block (the layer stays installed)."""
    with _lock:
        before = _state["on"]
        _state["on"] = False
    try:
        yield
    finally:
        with _lock:
            _state["on"] = before


def reset() -> None:
    """Forget what moto's reset forgets (the cluster groups' members, the fixture's groups)."""
    _CLUSTER_MEMBERS.clear()
    _state["placement_groups"].clear()
    INSTANCE_KEYS.clear()
    SEEN.clear()
    PROFILE_PROPAGATION["seconds"] = 0.0


# -- helpers ------------------------------------------------------------------------


def _spec_of(req: Request) -> dict:
    """The launch specification a request carries (RunInstances, or a template's data)."""
    if req.action == "CreateLaunchTemplate":
        return req.params.get("LaunchTemplateData") or {}
    return req.params


def _instance_types() -> dict:
    from moto.ec2.models.instance_types import INSTANCE_TYPES

    return INSTANCE_TYPES


def _region_types(region: str) -> set[str]:
    from moto.ec2.models.instance_types import INSTANCE_TYPE_OFFERINGS

    return {o["InstanceType"] for o in INSTANCE_TYPE_OFFERINGS["region"].get(region, [])}


def _fleet_types(req: Request) -> list[str]:
    types = []
    for cfg in req.params.get("LaunchTemplateConfigs") or []:
        for o in cfg.get("Overrides") or []:
            if o.get("InstanceType"):
                types.append(o["InstanceType"])
    return types


def _template_data(req: Request, ref: dict | None) -> dict:
    """The data of the launch template a RunInstances/CreateFleet names (moto's copy)."""
    if not ref:
        return {}
    backend = req.ec2()
    tid, name = ref.get("LaunchTemplateId"), ref.get("LaunchTemplateName")
    try:
        template = (
            backend.get_launch_template(tid) if tid else backend.get_launch_template_by_name(name)
        )
    except Exception:
        return {}
    version = template.default_version()
    data = getattr(version, "data", {}) or {}
    return data if isinstance(data, dict) else {}


def _all_tag_specs(req: Request) -> list[dict]:
    specs = list(req.params.get("TagSpecifications") or [])
    if req.action == "CreateLaunchTemplate":
        specs += list((req.params.get("LaunchTemplateData") or {}).get("TagSpecifications") or [])
    return specs


def _tag_sets(req: Request) -> list[list[dict]]:
    """Every set of tags the request puts on one resource."""
    if req.action == "CreateTags":
        return [list(req.params.get("Tags") or [])]
    return [list(s.get("Tags") or []) for s in _all_tag_specs(req)]


TAGGING = (
    "RunInstances",
    "CreateLaunchTemplate",
    "CreateFleet",
    "CreateSecurityGroup",
    "CreatePlacementGroup",
    "CreateVolume",
    "RequestSpotInstances",
    "CreateTags",
)
LAUNCHING = ("RunInstances", "CreateLaunchTemplate")
IAM_TAGGING = (
    "CreateRole",
    "TagRole",
    "CreateInstanceProfile",
    "TagInstanceProfile",
    "CreatePolicy",
    "TagPolicy",
)


# -- EC2: spot ----------------------------------------------------------------------


@rule(
    "ec2",
    ("RunInstances",),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-behavior.html",
)
def one_time_spot_shutdown_stop(req: Request) -> None:
    """RunInstances: a one-time spot instance with InstanceInitiatedShutdownBehavior=stop."""
    # "Stop interrupted Spot Instances ... The Spot Instance request type must be
    # persistent": a one-time spot instance can be terminated, never stopped.
    market = req.params.get("InstanceMarketOptions") or {}
    if market.get("MarketType") != "spot":
        return
    kind = (market.get("SpotOptions") or {}).get("SpotInstanceType", "one-time")
    if kind == "one-time" and req.params.get("InstanceInitiatedShutdownBehavior") == "stop":
        raise Refusal(
            "InvalidParameterCombination",
            "The parameter instanceInitiatedShutdownBehavior=stop is not supported for spot instances.",
        )


@rule(
    "ec2",
    ("RunInstances", "CreateLaunchTemplate"),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_SpotMarketOptions.html",
)
def one_time_spot_interruption_stop(req: Request) -> None:
    """A one-time spot request whose InstanceInterruptionBehavior is stop or hibernate."""
    # SpotMarketOptions: persistent requests are supported only when the interruption
    # behaviour is hibernate or stop; the user guide: stop/hibernate need `persistent`.
    market = _spec_of(req).get("InstanceMarketOptions") or {}
    spot = market.get("SpotOptions") or {}
    if market.get("MarketType") != "spot":
        return
    behaviour = spot.get("InstanceInterruptionBehavior", "terminate")
    if spot.get("SpotInstanceType", "one-time") == "one-time" and behaviour in (
        "stop",
        "hibernate",
    ):
        raise Refusal(
            "InvalidParameterCombination",
            f"Interruption behavior '{behaviour}' is supported only for persistent Spot Instance requests.",
        )


@rule(
    "ec2",
    ("CreateFleet",),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/interruption-behavior.html",
)
def fleet_stop_needs_maintain(req: Request) -> None:
    """CreateFleet: stop/hibernate interruption behaviour on a fleet not of type maintain."""
    # "For EC2 Fleet or Spot Fleet, the request type must be maintain" (stop and hibernate).
    behaviour = (req.params.get("SpotOptions") or {}).get("InstanceInterruptionBehavior")
    kind = req.params.get("Type", "maintain")
    if behaviour in ("stop", "hibernate") and kind != "maintain":
        raise Refusal(
            "InvalidParameterCombination",
            f"InstanceInterruptionBehavior '{behaviour}' requires a fleet of type maintain, not {kind}.",
        )


@rule(
    "ec2",
    ("RunInstances",),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-groups-limitations.html",
)
def spot_stop_in_placement_group(req: Request) -> None:
    """RunInstances: a spot instance that stops or hibernates, in a placement group."""
    # "You can't launch a Spot Instance that is configured to stop or hibernate on
    # interruption in a placement group."
    market = req.params.get("InstanceMarketOptions") or {}
    behaviour = (market.get("SpotOptions") or {}).get("InstanceInterruptionBehavior")
    group = (req.params.get("Placement") or {}).get("GroupName")
    if market.get("MarketType") == "spot" and group and behaviour in ("stop", "hibernate"):
        raise Refusal(
            "InvalidParameterCombination",
            "You can't launch a Spot Instance configured to stop or hibernate on interruption "
            "in a placement group.",
        )


# -- EC2: instance types, placement, EFA ---------------------------------------------


@rule(
    "ec2",
    ("RunInstances", "CreateLaunchTemplate", "CreateFleet"),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instance-discovery.html",
)
def instance_type_in_region(req: Request) -> None:
    """An instance type that is not offered in the region (DescribeInstanceTypeOfferings)."""
    # Instance types differ by Region; a type not offered there cannot be launched. moto
    # launches any string. The offerings are moto's copy of AWS's per-region lists.
    wanted = [_spec_of(req).get("InstanceType")] if req.action != "CreateFleet" else []
    wanted += _fleet_types(req)
    offered = _region_types(req.region)
    for itype in filter(None, wanted):
        if itype not in offered:
            raise Refusal("InvalidParameterValue", f"Invalid value '{itype}' for InstanceType.")


@rule(
    "ec2",
    ("RunInstances",),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-groups-limitations.html",
)
def cluster_group_instance_type(req: Request) -> None:
    """RunInstances into a cluster placement group with a type that does not support cluster."""
    # Cluster placement groups: not burstable (T2...), Mac1, M7i-flex; DescribeInstanceTypes'
    # PlacementGroupInfo.SupportedStrategies says which types accept `cluster`.
    group = (req.params.get("Placement") or {}).get("GroupName")
    if not group or _group_strategy(req, group) != "cluster":
        return
    itype = req.params.get("InstanceType") or ""
    info = _instance_types().get(itype, {}).get("PlacementGroupInfo") or {}
    if "cluster" not in info.get("SupportedStrategies", []):
        raise Refusal(
            "Unsupported",
            f"Cluster placement groups do not support the instance type {itype}. "
            "The requested configuration is currently not supported. "
            "Please check the documentation for supported configurations.",
        )


def _group_strategy(req: Request, group: str) -> str | None:
    g = _state["placement_groups"].get(req.region, {}).get(group)
    return g.get("Strategy") if g else None


def _launch_az(req: Request) -> str | None:
    backend = req.ec2()
    az = (req.params.get("Placement") or {}).get("AvailabilityZone")
    subnet = req.params.get("SubnetId")
    for nic in req.params.get("NetworkInterfaces") or []:
        subnet = subnet or nic.get("SubnetId")
    if not az and subnet:
        with contextlib.suppress(Exception):
            az = backend.get_subnet(subnet).availability_zone
    return az


def _live(req: Request, ids: list[str]) -> list[Any]:
    out = []
    backend = req.ec2()
    for iid in ids:
        with contextlib.suppress(Exception):
            inst = backend.get_instance(iid)
            if inst.state not in ("terminated", "shutting-down"):
                out.append(inst)
    return out


@rule(
    "ec2",
    ("RunInstances",),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/placement-strategies.html",
)
def cluster_group_one_az(req: Request) -> None:
    """RunInstances into a cluster placement group whose instances are in another AZ."""
    # "A cluster placement group is a logical grouping of instances within a single
    # Availability Zone"; the limitations page: it can't span multiple AZs.
    group = (req.params.get("Placement") or {}).get("GroupName")
    if not group or _group_strategy(req, group) != "cluster":
        return
    az = _launch_az(req)
    for inst in _live(req, _CLUSTER_MEMBERS.get((req.region, group), [])):
        if az and inst._placement.zone != az:
            raise Refusal(
                "InvalidParameterCombination",
                f"The cluster placement group {group} has instances in {inst._placement.zone}; "
                f"a cluster placement group can't span multiple Availability Zones ({az}).",
            )


def _after_run_instances(req: Request, body: Any) -> None:
    text = body.decode() if isinstance(body, bytes) else str(body)
    ids = list(dict.fromkeys(re.findall(r"<instanceId>(i-[0-9a-f]+)</instanceId>", text)))
    profile = (req.params.get("IamInstanceProfile") or {}).get("Name")
    if profile:  # moto associates the profile with the first instance only; AWS with each
        backend = req.ec2()
        for iid in ids:
            if iid not in backend.iam_instance_profile_associations:
                backend.associate_iam_instance_profile(iid, iam_instance_profile_name=profile)
    group = (req.params.get("Placement") or {}).get("GroupName")
    if group:
        _CLUSTER_MEMBERS.setdefault((req.region, group), []).extend(ids)


@rule(
    "ec2",
    ("RunInstances", "CreateLaunchTemplate"),
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/efa.html",
)
def efa_needs_supported_type(req: Request) -> None:
    """A network interface of type efa on an instance type without EFA support."""
    # EFA works only on the supported instance types (DescribeInstanceTypes:
    # NetworkInfo.EfaSupported).
    spec = _spec_of(req)
    if not any(n.get("InterfaceType") == "efa" for n in spec.get("NetworkInterfaces") or []):
        return
    itype = spec.get("InstanceType") or ""
    if itype and not (_instance_types().get(itype, {}).get("NetworkInfo") or {}).get(
        "EfaSupported"
    ):
        raise Refusal(
            "Unsupported",
            f"The instance type {itype} does not support Elastic Fabric Adapter. "
            "The requested configuration is currently not supported. "
            "Please check the documentation for supported configurations.",
        )


# -- EC2: user data, metadata options --------------------------------------------------


@rule(
    "ec2",
    LAUNCHING,
    "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-add-user-data.html",
)
def user_data_16kb(req: Request) -> None:
    """UserData over 16 KB in raw form (before base64)."""
    # "User data is limited to 16 KB, in raw form, before it is base64-encoded."
    data = _spec_of(req).get("UserData")
    if not data:
        return
    try:
        raw = base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        raw = data.encode()
    if len(raw) > 16 * 1024:
        raise Refusal(
            "InvalidParameterValue", f"User data is limited to 16384 bytes (got {len(raw)})."
        )


@rule(
    "ec2",
    (*LAUNCHING, "ModifyInstanceMetadataOptions"),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceMetadataOptionsRequest.html",
)
def metadata_hop_limit(req: Request) -> None:
    """IMDS HttpPutResponseHopLimit outside 1-64."""
    # HttpPutResponseHopLimit: "Possible values: Integers from 1 to 64".
    opts = req.params if req.action == "ModifyInstanceMetadataOptions" else None
    opts = opts or _spec_of(req).get("MetadataOptions") or {}
    hop = opts.get("HttpPutResponseHopLimit")
    if hop is not None and not 1 <= int(hop) <= 64:
        raise Refusal(
            "InvalidParameterValue",
            f"The HttpPutResponseHopLimit {hop} is not valid: it must be an integer from 1 to 64.",
        )


@rule(
    "ec2",
    (*LAUNCHING, "ModifyInstanceMetadataOptions"),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_InstanceMetadataOptionsRequest.html",
)
def metadata_tokens_value(req: Request) -> None:
    """IMDS HttpTokens other than optional/required (or HttpEndpoint other than enabled/disabled)."""
    # HttpTokens valid values: optional | required; HttpEndpoint: disabled | enabled.
    opts = req.params if req.action == "ModifyInstanceMetadataOptions" else None
    opts = opts or _spec_of(req).get("MetadataOptions") or {}
    for key, allowed in (
        ("HttpTokens", {"optional", "required"}),
        ("HttpEndpoint", {"enabled", "disabled"}),
    ):
        value = opts.get(key)
        if value is not None and value not in allowed:
            raise Refusal(
                "InvalidParameterValue", f"Value ({value}) for parameter {key} is invalid."
            )


# -- EC2: tags ----------------------------------------------------------------------

TAG_DOC = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions"


@rule("ec2", TAGGING, TAG_DOC)
def tag_key_aws_prefix(req: Request) -> None:
    """A tag key starting with aws: (reserved for AWS)."""
    # "You can't use the aws: prefix in your tag names or values because it's reserved".
    for tags in _tag_sets(req):
        for t in tags:
            if str(t.get("Key", "")).lower().startswith("aws:"):
                raise Refusal(
                    "InvalidParameterValue",
                    f"Value ( {t['Key']} ) for parameter key is invalid. "
                    "Tag keys starting with 'aws:' are reserved for internal use",
                )


@rule("ec2", TAGGING, TAG_DOC)
def tag_key_128(req: Request) -> None:
    """A tag key over 128 characters."""
    # "Maximum key length: 128 Unicode characters in UTF-8".
    for tags in _tag_sets(req):
        for t in tags:
            if len(str(t.get("Key", ""))) > 128:
                raise Refusal(
                    "InvalidParameterValue",
                    "Tag key exceeds the maximum length of 128 characters.",
                )


@rule("ec2", TAGGING, TAG_DOC)
def tag_value_256(req: Request) -> None:
    """A tag value over 256 characters."""
    # "Maximum value length: 256 Unicode characters in UTF-8".
    for tags in _tag_sets(req):
        for t in tags:
            if len(str(t.get("Value", ""))) > 256:
                raise Refusal(
                    "InvalidParameterValue",
                    "Tag value exceeds the maximum length of 256 characters.",
                )


@rule("ec2", TAGGING, TAG_DOC)
def tags_50_per_resource(req: Request) -> None:
    """More than 50 tags on one resource (TagSpecifications, or CreateTags with those it has)."""
    # "Maximum number of tags per resource: 50".
    for tags in _tag_sets(req):
        keys = {t.get("Key") for t in tags}
        if req.action == "CreateTags":
            for rid in req.params.get("Resources") or []:
                have = set(req.ec2().tags.get(rid, {}))
                if len(have | keys) > 50:
                    raise Refusal(
                        "TagLimitExceeded",
                        f"The maximum number of Tags for a resource has been reached ({rid}).",
                    )
        elif len(keys) > 50:
            raise Refusal(
                "TagLimitExceeded", "The maximum number of Tags for a resource has been reached."
            )


# IAM's tags: "[\p{L}\p{Z}\p{N}_.:/=+\-@]" (the API reference's pattern), the
# characters the EC2 page names as what every service accepts: "letters (a-z, A-Z), numbers
# (0-9), and spaces representable in UTF-8, and the following characters: + - = . _ : / @"
# (EC2 itself takes any character; IAM refuses the rest).
_IAM_TAG_CHARS = re.compile(
    r"[\w \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000+\-=.:/@]*"
)


def _iam_tags(req: Request) -> list[tuple[str, str]]:
    found = req.params.get("Tags") or []
    if isinstance(found, dict):
        found = [v for _, v in sorted(found.items())]
    return [(str(t.get("Key", "")), str(t.get("Value", ""))) for t in found if isinstance(t, dict)]


@rule(
    "iam",
    IAM_TAGGING,
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_tags.html#id_tags_rules_creating "
    "and " + TAG_DOC,
)
def iam_tag_characters(req: Request) -> None:
    """An IAM tag key (1-128) or value (0-256) with a character IAM does not take."""
    for key, value in _iam_tags(req):
        if not key or len(key) > 128 or not _IAM_TAG_CHARS.fullmatch(key):
            raise Refusal(
                "ValidationError",
                f"1 validation error detected: Value '{key}' at 'tags.1.member.key' failed to "
                "satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            )
        if len(value) > 256 or not _IAM_TAG_CHARS.fullmatch(value):
            raise Refusal(
                "ValidationError",
                f"1 validation error detected: Value '{value}' at 'tags.1.member.value' failed "
                "to satisfy constraint: Member must satisfy regular expression pattern: "
                "[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            )


# -- EC2: names ---------------------------------------------------------------------


@rule(
    "ec2",
    ("CreateLaunchTemplate",),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplate.html",
)
def launch_template_name(req: Request) -> None:
    """CreateLaunchTemplate: LaunchTemplateName not 3-128 characters of [a-zA-Z0-9().-/_]."""
    # LaunchTemplateName: Length Constraints 3-128, Pattern [a-zA-Z0-9\(\)\.\-/_]+
    name = req.params.get("LaunchTemplateName") or ""
    if not re.fullmatch(r"[a-zA-Z0-9().\-/_]{3,128}", name):
        raise Refusal(
            "InvalidLaunchTemplateName.MalformedException",
            "A launch template name must be between 3 and 128 characters, and may contain "
            "letters, numbers, and the following characters: - ( ) . / _.'",
        )


SG_DOC = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateSecurityGroup.html"


@rule("ec2", ("CreateSecurityGroup",), SG_DOC)
def security_group_name(req: Request) -> None:
    """CreateSecurityGroup: GroupName over 255 characters or starting with sg-."""
    # GroupName: "Constraints: Up to 255 characters in length. Cannot start with sg-."
    name = req.params.get("GroupName") or ""
    if name.lower().startswith("sg-"):
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({name}) for parameter GroupName is invalid. Group names may not be in the format sg-*.",
        )
    if len(name) > 255:
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({name}) for parameter GroupName is invalid. Group name cannot exceed 255 characters.",
        )


@rule("ec2", ("CreateSecurityGroup",), SG_DOC)
def security_group_description(req: Request) -> None:
    """CreateSecurityGroup: Description over 255 characters or with characters a VPC group refuses."""
    # Description: "Up to 255 characters in length ... a-z, A-Z, 0-9, spaces, and
    # ._-:/()#,@[]+=&;{}!$*" (VPC security groups; EC2-Classic is gone).
    desc = req.params.get("Description") or ""
    if len(desc) > 255 or not re.fullmatch(r"[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]*", desc):
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({desc}) for parameter GroupDescription is invalid. "
            "Up to 255 characters: a-z, A-Z, 0-9, spaces, and ._-:/()#,@[]+=&;{}!$*",
        )


# -- EC2: volumes ----------------------------------------------------------------------


def _volume_and_instance(req: Request) -> tuple[Any, Any] | None:
    """An AttachVolume's volume and instance as moto holds them (None: an unknown id)."""
    backend = req.ec2()
    try:
        return (
            backend.get_volume(req.params.get("VolumeId")),
            backend.get_instance(req.params.get("InstanceId")),
        )
    except Exception:
        return None


@rule(
    "ec2",
    ("AttachVolume",),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_AttachVolume.html",
)
def attach_volume_same_az(req: Request) -> None:
    """AttachVolume: a volume in another Availability Zone than the instance."""
    # "The volume and instance must be within the same Availability Zone" (error code
    # InvalidVolume.ZoneMismatch in the EC2 error codes page).
    found = _volume_and_instance(req)
    if found is None:
        return  # moto answers the unknown id itself
    volume, inst = found
    vol_az = getattr(volume.zone, "name", volume.zone)
    inst_az = inst._placement.zone
    if vol_az != inst_az:
        raise Refusal(
            "InvalidVolume.ZoneMismatch",
            f"The volume '{volume.id}' is not in the same availability zone as instance '{inst.id}'",
        )


CREATE_VOLUME_DOC = "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateVolume.html"
# CreateVolume, Size: "gp2 and gp3: 1 - 16,384 GiB; io1: 4 - 16,384 GiB; io2: 4 - 65,536
# GiB; st1 and sc1: 125 - 16,384 GiB; standard: 1 - 1024 GiB"
VOLUME_SIZES = {
    "gp2": (1, 16384),
    "gp3": (1, 16384),
    "io1": (4, 16384),
    "io2": (4, 65536),
    "st1": (125, 16384),
    "sc1": (125, 16384),
    "standard": (1, 1024),
}


@rule("ec2", ("CreateVolume",), CREATE_VOLUME_DOC)
def create_volume_size_for_type(req: Request) -> None:
    """CreateVolume: a Size outside its VolumeType's range, an unknown type, or no size."""
    vtype = req.params.get("VolumeType") or "gp2"  # "Default: gp2"
    if vtype not in VOLUME_SIZES:
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({vtype}) for parameter volumeType is invalid. "
            f"Valid values: {', '.join(VOLUME_SIZES)}",
        )
    size = req.params.get("Size")
    if size is None:  # "You must specify either a snapshot ID or a volume size"
        if not req.params.get("SnapshotId"):
            raise Refusal(
                "MissingParameter", "The request must contain the parameter size or snapshotId"
            )
        return
    low, high = VOLUME_SIZES[vtype]
    if not low <= int(size) <= high:
        raise Refusal(
            "InvalidParameterValue",
            f"Volume of {size}GiB is out of range for a {vtype} volume ({low} - {high} GiB).",
        )


@rule("ec2", ("CreateVolume",), CREATE_VOLUME_DOC)
def create_volume_placement(req: Request) -> None:
    """CreateVolume: no AvailabilityZone (nor AvailabilityZoneId), or a tag set not for a 'volume'."""
    # "AvailabilityZone ... Either AvailabilityZone or AvailabilityZoneId must be
    # specified, but not both"; TagSpecifications: "The tags to apply to the volume
    # during creation" (ResourceType volume).
    zone, zone_id = req.params.get("AvailabilityZone"), req.params.get("AvailabilityZoneId")
    if bool(zone) == bool(zone_id):
        raise Refusal(
            "MissingParameter",
            "The request must contain either the parameter AvailabilityZone or AvailabilityZoneId",
        )
    for spec in req.params.get("TagSpecifications") or []:
        if spec.get("ResourceType") != "volume":
            raise Refusal(
                "InvalidParameterValue",
                f"'{spec.get('ResourceType')}' is not a valid taggable resource type for this operation.",
            )
    if req.params.get("KmsKeyId") and str(req.params.get("Encrypted")).lower() != "true":
        # KmsKeyId: "If KmsKeyId is specified, the encrypted state must be true."
        raise Refusal(
            "InvalidParameterDependency", "The parameter KmsKeyId requires the parameter Encrypted."
        )


# DescribeVolumes, Filter.N: the filter names the API reference lists (and tag:<key>)
VOLUME_FILTERS = {
    "attachment.attach-time",
    "attachment.delete-on-termination",
    "attachment.device",
    "attachment.instance-id",
    "attachment.status",
    "availability-zone",
    "availability-zone-id",
    "create-time",
    "encrypted",
    "fast-restored",
    "multi-attach-enabled",
    "operator.managed",
    "operator.principal",
    "size",
    "snapshot-id",
    "status",
    "tag-key",
    "volume-id",
    "volume-type",
}


@rule(
    "ec2",
    ("DescribeVolumes",),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_DescribeVolumes.html",
)
def describe_volumes_filter_names(req: Request) -> None:
    """DescribeVolumes: a filter name the API does not know (moto answers it with nothing)."""
    for f in req.params.get("Filters") or []:
        name = str(f.get("Name") or "")
        if name not in VOLUME_FILTERS and not (name.startswith("tag:") and len(name) > 4):
            raise Refusal("InvalidParameterValue", f"The filter '{name}' is invalid")


@rule(
    "ec2",
    ("AttachVolume",),
    "https://docs.aws.amazon.com/ebs/latest/userguide/device_naming.html",
)
def attach_volume_device_name(req: Request) -> None:
    """AttachVolume: a Device that is not an EBS device name of a Linux instance."""
    # "Available: /dev/sd[b-z], /dev/sd[b-y]d, /dev/xvd[b-c][a-z], /dev/xvd[d-z]
    # (recommended for EBS: /dev/sd[f-p])"; the root device (/dev/sda1, /dev/xvda) is taken.
    device = str(req.params.get("Device") or "")
    if not re.fullmatch(r"/dev/(sd[b-z]|sd[b-y]d|xvd[b-c][a-z]|xvd[d-z])", device):
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({device}) for parameter device is invalid. {device} is not a valid EBS device name.",
        )


MULTI_ATTACH_DOC = "https://docs.aws.amazon.com/ebs/latest/userguide/ebs-volumes-multi.html"


def _flag(value: Any) -> bool:
    return str(value).lower() == "true"


def _volume_type(req: Request) -> str | None:
    """The type a CreateVolume asks for, or a ModifyVolume's target (else the volume's)."""
    if req.action == "CreateVolume":
        return req.params.get("VolumeType") or "gp2"
    if req.params.get("VolumeType"):
        return req.params["VolumeType"]
    try:
        return req.ec2().get_volume(req.params.get("VolumeId")).volume_type
    except Exception:
        return None  # moto answers the unknown id itself


@rule("ec2", ("CreateVolume", "ModifyVolume"), MULTI_ATTACH_DOC)
def multi_attach_io_only(req: Request) -> None:
    """CreateVolume/ModifyVolume: Multi-Attach on a volume that is not io1 or io2."""
    # "Multi-Attach is supported exclusively on Provisioned IOPS SSD (io1 and io2) volumes"
    # (moto refuses it on CreateVolume, with another code, and accepts it on ModifyVolume)
    if _flag(req.params.get("MultiAttachEnabled")) and _volume_type(req) not in ("io1", "io2"):
        raise Refusal(
            "InvalidParameterCombination",
            "The parameter MultiAttachEnabled is only supported with io1 and io2 volume types",
        )


# -- S3: conditional writes -------------------------------------------------------------


def s3_condition_refusal(method: str, headers: Any) -> Refusal | None:
    """PutObject's If-None-Match takes only `*` (API_PutObject: "Expects the '*'
    (asterisk) character"; https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html,
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html); AWS's
    answer to another value is S3's NotImplemented (501), "A header you provided implies
    functionality that is not implemented" (the S3 error codes list). The code and message
    are AWS's; moto's serializer sends it with status 400 (botocore raises the same error)."""
    if not _state["on"] or method != "PUT":
        return None
    value = headers.get("If-None-Match")
    if value is not None and value.strip() != "*":
        refusal = Refusal(
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
            status=501,
        )
        REFUSED.append(("put_if_none_match_star", "PutObject", refusal.code, value))
        return refusal
    return None


# -- IAM: PassRole (simulated) ------------------------------------------------------


def _profile_roles(req: Request, profile: dict | None) -> list[str]:
    if not profile:
        return []
    name = profile.get("Name") or (profile.get("Arn") or "").rsplit("/", 1)[-1]
    try:
        prof = req.iam().get_instance_profile(name)
    except Exception:
        return []  # moto refuses an unknown profile itself
    return [r.name for r in prof.roles]


@rule(
    "ec2",
    ("RunInstances", "CreateFleet"),
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html",
)
def pass_role_allowed(req: Request) -> None:
    """A launch whose instance profile holds a role the caller may not pass (iam:PassRole)."""
    # FIXTURE RULE (moto evaluates no IAM): launching with an instance profile needs
    # iam:PassRole on its role; the caller here may pass only PASSABLE_ROLES (runctl's
    # user policy allows `runctl-instance` only). EC2 answers UnauthorizedOperation, 403.
    profiles = [req.params.get("IamInstanceProfile")]
    if req.action == "RunInstances":
        profiles.append(
            _template_data(req, req.params.get("LaunchTemplate")).get("IamInstanceProfile")
        )
    for cfg in req.params.get("LaunchTemplateConfigs") or []:
        data = _template_data(req, cfg.get("LaunchTemplateSpecification"))
        profiles.append(data.get("IamInstanceProfile"))
    for profile in profiles:
        for role in _profile_roles(req, profile):
            if role not in PASSABLE_ROLES and not role.startswith(RUN_ROLE_PREFIX):
                raise Refusal(
                    "UnauthorizedOperation",
                    f"You are not authorized to perform this operation. User: "
                    f"arn:aws:iam::{req.account}:user/test is not authorized to perform: "
                    f"iam:PassRole on resource: arn:aws:iam::{req.account}:role/{role} "
                    "because no identity-based policy allows the iam:PassRole action",
                    status=403,
                )


# -- IAM: names -------------------------------------------------------------------------


def _iam_name(req: Request, key: str, limit: int) -> None:
    name = req.params.get(key) or ""
    field = key[0].lower() + key[1:]
    if len(name) > limit:
        raise Refusal(
            "ValidationError",
            f"1 validation error detected: Value '{name}' at '{field}' failed to satisfy "
            f"constraint: Member must have length less than or equal to {limit}",
        )
    if not re.fullmatch(r"[\w+=,.@-]+", name):
        raise Refusal(
            "ValidationError",
            f"1 validation error detected: Value '{name}' at '{field}' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]+",
        )


@rule(
    "iam",
    ("CreateRole",),
    "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html",
)
def iam_role_name(req: Request) -> None:
    """CreateRole: RoleName over 64 characters or outside [\\w+=,.@-]."""
    # RoleName: Length 1-64, Pattern [\w+=,.@-]+
    _iam_name(req, "RoleName", 64)


@rule(
    "iam",
    ("CreateInstanceProfile",),
    "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateInstanceProfile.html",
)
def iam_instance_profile_name(req: Request) -> None:
    """CreateInstanceProfile: InstanceProfileName over 128 characters or outside [\\w+=,.@-]."""
    # InstanceProfileName: Length 1-128, Pattern [\w+=,.@-]+
    _iam_name(req, "InstanceProfileName", 128)


@rule(
    "iam",
    ("CreateRole", "CreateInstanceProfile"),
    "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreateRole.html",
)
def iam_path(req: Request) -> None:
    """CreateRole/CreateInstanceProfile: a Path not /.../ of printable ASCII, or over 512."""
    # Path: Length 1-512, Pattern (\u002F)|(\u002F[\u0021-\u007E]+\u002F)
    path = req.params.get("Path")
    if path is None:
        return
    if len(path) > 512 or not re.fullmatch(r"/|/[\x21-\x7e]+/", path):
        raise Refusal(
            "ValidationError",
            f"1 validation error detected: Value '{path}' at 'path' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: "
            r"(\u002F)|(\u002F[\u0021-\u007E]+\u002F)",
        )


@rule(
    "iam",
    ("CreateRole",),
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html",
)
def iam_trust_service_principal(req: Request) -> None:
    """CreateRole: a trust policy that is not JSON, or names a Service principal that is not a service's."""
    # AssumeRolePolicyDocument is a JSON policy (MalformedPolicyDocument otherwise); a service
    # principal is the service's endpoint name, `<service>.amazonaws.com` (EventBridge
    # Scheduler's is scheduler.amazonaws.com:
    # https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role)
    text = req.params.get("AssumeRolePolicyDocument") or ""
    try:
        document = json.loads(text)
    except ValueError:
        raise Refusal("MalformedPolicyDocument", "This policy contains invalid Json") from None
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal") if isinstance(statement, dict) else None
        services = principal.get("Service", []) if isinstance(principal, dict) else []
        for service in services if isinstance(services, list) else [services]:
            if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)*\.amazonaws\.com(\.cn)?", str(service)):
                raise Refusal(
                    "MalformedPolicyDocument", "Invalid principal in policy: " + repr(service)
                )


SCHEDULER_DOC = "https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html"


def _scheduler_invalid(field_name: str, value: Any, constraint: str) -> Refusal:
    return Refusal(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy "
        f"constraint: {constraint}",
    )


@rule("scheduler", ("CreateSchedule", "UpdateSchedule"), SCHEDULER_DOC)
def schedule_name_pattern(req: Request) -> None:
    """CreateSchedule: Name not 1-64 characters of [0-9a-zA-Z-_.]."""
    # Name: Length 1-64, Pattern ^[0-9a-zA-Z-_.]+$
    name = req.params.get("Name") or ""
    if not re.fullmatch(r"[0-9a-zA-Z_.-]{1,64}", name):
        raise _scheduler_invalid(
            "name", name, "Member must satisfy regular expression pattern: ^[0-9a-zA-Z-_.]+$"
        )


_AT = r"at\(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\)"
_RATE = r"rate\((1 (minute|hour|day)|([2-9]|[1-9]\d+) (minutes|hours|days))\)"
_CRON = r"cron\(\S+ \S+ \S+ \S+ \S+ \S+\)"


@rule(
    "scheduler",
    ("CreateSchedule", "UpdateSchedule"),
    "https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html",
)
def schedule_expression_form(req: Request) -> None:
    """ScheduleExpression not at(yyyy-mm-ddThh:mm:ss), rate(value unit) or a six-field cron(...) with one `?` day field."""
    expr = req.params.get("ScheduleExpression") or ""
    ok = bool(re.fullmatch(f"{_AT}|{_RATE}|{_CRON}", expr))
    if ok and expr.startswith("cron("):
        fields = expr[5:-1].split()
        ok = (fields[2] == "?") != (fields[4] == "?")  # exactly one of day-of-month, day-of-week
    if not ok:
        raise _scheduler_invalid("scheduleExpression", expr, "Invalid Schedule Expression")


@rule("scheduler", ("CreateSchedule", "UpdateSchedule"), SCHEDULER_DOC)
def schedule_flexible_window(req: Request) -> None:
    """FlexibleTimeWindow missing, or its Mode not OFF/FLEXIBLE (FLEXIBLE: a window of 1-1440 minutes)."""
    window = req.params.get("FlexibleTimeWindow")
    if not isinstance(window, dict) or window.get("Mode") not in ("OFF", "FLEXIBLE"):
        raise _scheduler_invalid(
            "flexibleTimeWindow", window, "Member must not be null; Mode is OFF or FLEXIBLE"
        )
    minutes = window.get("MaximumWindowInMinutes")
    if window["Mode"] == "FLEXIBLE" and not (isinstance(minutes, int) and 1 <= minutes <= 1440):
        raise _scheduler_invalid(
            "flexibleTimeWindow.maximumWindowInMinutes", minutes, "1 to 1440 with FLEXIBLE"
        )


@rule(
    "scheduler",
    ("CreateSchedule", "UpdateSchedule"),
    "https://docs.aws.amazon.com/scheduler/latest/APIReference/API_Target.html",
)
def schedule_target_arns(req: Request) -> None:
    """Target without an Arn or a RoleArn of an IAM role (arn:aws:iam::ACCOUNT:role/...)."""
    target = req.params.get("Target")
    arn = target.get("Arn") if isinstance(target, dict) else None
    role = target.get("RoleArn") if isinstance(target, dict) else None
    if not arn or not str(arn).startswith("arn:"):
        raise _scheduler_invalid("target.arn", arn, "Member must not be null (an ARN)")
    if not role or not re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", str(role)):
        raise _scheduler_invalid(
            "target.roleArn", role, r"^arn:aws(-[a-z]+)?:iam::\d{12}:role\/[\w\/+=,.@-]+$"
        )


@rule(
    "scheduler",
    ("CreateSchedule", "UpdateSchedule"),
    "https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#time-zones",
)
def schedule_timezone(req: Request) -> None:
    """ScheduleExpressionTimezone that is not an IANA time zone name."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = req.params.get("ScheduleExpressionTimezone")
    if zone is None:
        return
    try:
        ZoneInfo(str(zone))
    except (ZoneInfoNotFoundError, ValueError):
        raise _scheduler_invalid("scheduleExpressionTimezone", zone, "Invalid time zone") from None


EVENTS_TARGET_DOC = "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_Target.html"
_EVENTS_NAME = r"[\.\-_A-Za-z0-9]{1,64}"
_ROLE_ARN = r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+"


def _events_invalid(field_name: str, value: Any, constraint: str) -> Refusal:
    return Refusal(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy "
        f"constraint: {constraint}",
    )


@rule(
    "events",
    ("PutRule",),
    "https://docs.aws.amazon.com/eventbridge/latest/APIReference/API_PutRule.html",
)
def events_rule_name(req: Request) -> None:
    """PutRule: Name not 1-64 characters of [.-_A-Za-z0-9]."""
    name = req.params.get("Name") or ""
    if not re.fullmatch(_EVENTS_NAME, name):
        raise _events_invalid(
            "name", name, "Member must satisfy regular expression pattern: [\\.\\-_A-Za-z0-9]+"
        )


@rule("events", ("PutTargets",), EVENTS_TARGET_DOC)
def events_target_fields(req: Request) -> None:
    """PutTargets: a target Id not 1-64 of [.-_A-Za-z0-9], an Arn missing, or a RoleArn not an IAM role's ARN."""
    for i, target in enumerate(req.params.get("Targets") or []):
        ident, role = target.get("Id") or "", target.get("RoleArn")
        if not re.fullmatch(_EVENTS_NAME, ident):
            raise _events_invalid(f"targets.{i + 1}.member.id", ident, "[\\.\\-_A-Za-z0-9]+")
        if not str(target.get("Arn") or "").startswith("arn:"):
            raise _events_invalid(f"targets.{i + 1}.member.arn", target.get("Arn"), "an ARN")
        if role is not None and not re.fullmatch(_ROLE_ARN, str(role)):
            raise _events_invalid(f"targets.{i + 1}.member.roleArn", role, "an IAM role ARN")


@rule("events", ("PutTargets",), EVENTS_TARGET_DOC)
def events_target_one_input(req: Request) -> None:
    """PutTargets: a target with more than one of Input, InputPath and InputTransformer."""
    for i, target in enumerate(req.params.get("Targets") or []):
        given = [k for k in ("Input", "InputPath", "InputTransformer") if k in target]
        if len(given) > 1:
            raise _events_invalid(
                f"targets.{i + 1}.member",
                given,
                "Input, InputPath and InputTransformer are mutually exclusive",
            )


@rule(
    "ssm",
    ("CreateDocument",),
    "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_CreateDocument.html",
)
def document_name_reserved_prefix(req: Request) -> None:
    """CreateDocument: a Name starting with aws, amazon or amzn (reserved by AWS)."""
    name = str(req.params.get("Name") or "")
    if name.lower().startswith(("aws", "amazon", "amzn")):
        raise Refusal("ValidationException", f"Invalid document name {name}: reserved prefix")


@rule(
    "ssm",
    ("CreateDocument",),
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/documents-schemas-features.html",
)
def automation_schema_version(req: Request) -> None:
    """CreateDocument: an Automation document (runbook) whose schemaVersion is not 0.3."""
    if req.params.get("DocumentType") != "Automation":
        return
    try:
        content = json.loads(req.params.get("Content") or "")
    except ValueError:
        return  # moto says InvalidDocumentContent itself
    if not isinstance(content, dict) or content.get("schemaVersion") != "0.3":
        raise Refusal(
            "InvalidDocumentSchemaVersion",
            "Automation documents use schemaVersion 0.3",
        )


def _overlap(a: str, b: str, suffix: bool = False) -> bool:
    return b.endswith(a) or a.endswith(b) if suffix else b.startswith(a) or a.startswith(b)


def _event_overlap(a: list, b: list) -> bool:
    def covers(x: str, y: str) -> bool:
        return x == y or (x.endswith("*") and y.startswith(x[:-1]))

    return any(covers(x, y) or covers(y, x) for x in a for y in b)


@rule(
    "s3",
    ("PutBucketNotificationConfiguration",),
    "https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html",
)
def notification_not_ambiguous(req: Request) -> None:
    """PutBucketNotificationConfiguration: two destinations whose event types, key prefixes and suffixes all overlap."""
    found = req.params.get("Configurations") or []
    for i, a in enumerate(found):
        for b in found[i + 1 :]:
            if (
                _event_overlap(a["events"], b["events"])
                and _overlap(a["prefix"], b["prefix"])
                and _overlap(a["suffix"], b["suffix"], suffix=True)
            ):
                raise Refusal(
                    "InvalidArgument",
                    "Configuration is ambiguously defined. Cannot have overlapping suffixes in "
                    "two rules if the prefixes are overlapping for the same event type.",
                )


def notification_configurations(body: bytes) -> list[dict]:
    """The Topic/Queue/CloudFunction configurations of a notification body: events, filter."""
    import xmltodict

    root = (xmltodict.parse(body or b"<NotificationConfiguration/>") or {}).get(
        "NotificationConfiguration"
    ) or {}
    found = []
    for kind in ("Topic", "Queue", "CloudFunction"):
        items = root.get(f"{kind}Configuration") or []
        for item in items if isinstance(items, list) else [items]:
            events = item.get("Event") or []
            rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("FilterRule") or []
            rules = rules if isinstance(rules, list) else [rules]
            named = {str(r.get("Name", "")).lower(): r.get("Value") or "" for r in rules}
            found.append(
                {
                    "events": events if isinstance(events, list) else [events],
                    "prefix": named.get("prefix", ""),
                    "suffix": named.get("suffix", ""),
                }
            )
    return found


@rule(
    "iam",
    ("CreatePolicy",),
    "https://docs.aws.amazon.com/IAM/latest/APIReference/API_CreatePolicy.html",
)
def iam_policy_name(req: Request) -> None:
    """CreatePolicy: PolicyName over 128 characters or outside [\\w+=,.@-]."""
    # PolicyName: Length 1-128, Pattern [\w+=,.@-]+
    _iam_name(req, "PolicyName", 128)


@rule(
    "iam",
    ("CreatePolicy", "CreatePolicyVersion"),
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html#reference_iam-quotas-entity-length",
)
def iam_managed_policy_size(req: Request) -> None:
    """A managed policy document over 6,144 characters (whitespace not counted)."""
    # "Managed policy size: 6,144 characters"; "IAM does not count white space".
    document = str(req.params.get("PolicyDocument") or "")
    if len("".join(document.split())) > 6144:
        raise Refusal("LimitExceeded", "Cannot exceed quota for PolicySize: 6144", status=409)


@rule(
    "ec2",
    ("RunInstances",),
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency",
)
def instance_profile_propagated(req: Request) -> None:
    """RunInstances: an instance profile IAM made moments ago is not usable yet."""
    # "IAM ... is eventually consistent ... changes that you make might not be immediately
    # visible" (the page above); EC2 names such a profile invalid (InvalidParameterValue,
    # the same answer as for an unknown name: EC2 UG *iam-roles-for-amazon-ec2.html*).
    profile = req.params.get("IamInstanceProfile") or {}
    name = profile.get("Name") or (profile.get("Arn") or "").rsplit("/", 1)[-1]
    wait = PROFILE_PROPAGATION["seconds"]
    if not name or wait <= 0:
        return
    try:
        made = req.iam().get_instance_profile(name).create_date
    except Exception:
        return  # moto refuses an unknown profile itself
    import datetime as dt

    age = (dt.datetime.now(dt.timezone.utc) - made.replace(tzinfo=dt.timezone.utc)).total_seconds()
    if age < wait:
        raise Refusal(
            "InvalidParameterValue",
            f"Value ({name}) for parameter iamInstanceProfile.name is invalid. "
            "Invalid IAM Instance Profile name",
        )


# -- SSM ---------------------------------------------------------------------------

SEND_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_SendCommand.html"


@rule("ssm", ("SendCommand",), SEND_DOC)
def send_command_instance_ids(req: Request) -> None:
    """SendCommand: more than 50 InstanceIds."""
    # InstanceIds: "you can specify up to 50 IDs" (Array Members: maximum 50 items).
    ids = req.params.get("InstanceIds") or []
    if len(ids) > 50:
        raise Refusal(
            "ValidationException",
            "1 validation error detected: Value at 'instanceIds' failed to satisfy constraint: "
            "Member must have length less than or equal to 50",
        )


@rule("ssm", ("SendCommand",), SEND_DOC)
def send_command_comment(req: Request) -> None:
    """SendCommand: a Comment over 100 characters."""
    # Comment: Length Constraints: Maximum length of 100.
    comment = req.params.get("Comment") or ""
    if len(comment) > 100:
        raise Refusal(
            "ValidationException",
            f"1 validation error detected: Value '{comment}' at 'comment' failed to satisfy "
            "constraint: Member must have length less than or equal to 100",
        )


@rule("ssm", ("SendCommand",), SEND_DOC)
def send_command_timeout(req: Request) -> None:
    """SendCommand: TimeoutSeconds outside 30-2592000."""
    # TimeoutSeconds: Valid Range: Minimum value of 30. Maximum value of 2592000.
    timeout = req.params.get("TimeoutSeconds")
    if timeout is not None and not 30 <= int(timeout) <= 2592000:
        raise Refusal(
            "ValidationException",
            f"1 validation error detected: Value '{timeout}' at 'timeoutSeconds' failed to "
            "satisfy constraint: Member must have value between 30 and 2592000",
        )


@rule("ssm", ("SendCommand",), SEND_DOC)
def send_command_document_size(req: Request) -> None:
    """SendCommand: the command's parameters (the script we send) over 64 KB."""
    # Errors: MaxDocumentSizeExceeded, "The size limit of a document is 64 KB."; a
    # command is its document with these parameters filled in.
    size = len(json.dumps(req.params.get("Parameters") or {}).encode())
    if size > 64 * 1024:
        raise Refusal("MaxDocumentSizeExceeded", "The size limit of a document is 64 KB.")


SESSION_DOC = (
    "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_StartSession.html"
)
# The AWS-owned Session Manager documents (the user guide's "Start a session" page:
# https://docs.aws.amazon.com/systems-manager/latest/userguide/session-manager-working-with-sessions-start.html)
SESSION_DOCUMENTS = {
    "SSM-SessionManagerRunShell",
    "AWS-StartPortForwardingSession",
    "AWS-StartPortForwardingSessionToRemoteHost",
    "AWS-StartSSHSession",
    "AWS-StartInteractiveCommand",
    "AWS-StartNonInteractiveCommand",
}


def _session_invalid(field_name: str, value: str, constraint: str) -> Refusal:
    return Refusal(
        "ValidationException",
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy "
        f"constraint: {constraint}",
    )


@rule("ssm", ("StartSession",), SESSION_DOC)
def start_session_fields(req: Request) -> None:
    """StartSession: Target not 1-400 long, DocumentName not ^[a-zA-Z0-9_\\-.:/]{3,128}$, Reason not ^.{1,256}$."""
    # Target: Length Constraints: Minimum length of 1. Maximum length of 400.
    # DocumentName: Pattern: ^[a-zA-Z0-9_\-.:/]{3,128}$. Reason: Pattern: ^.{1,256}$.
    target = str(req.params.get("Target") or "")
    if not 1 <= len(target) <= 400:
        raise _session_invalid("target", target, "Member must have length between 1 and 400")
    name = req.params.get("DocumentName")
    if name is not None and not re.fullmatch(r"[a-zA-Z0-9_\-.:/]{3,128}", name):
        raise _session_invalid(
            "documentName",
            name,
            r"Member must satisfy regular expression pattern: ^[a-zA-Z0-9_\-.:/]{3,128}$",
        )
    reason = req.params.get("Reason")
    if reason is not None and not re.fullmatch(r".{1,256}", reason):
        raise _session_invalid(
            "reason", reason, "Member must satisfy regular expression pattern: ^.{1,256}$"
        )


@rule("ssm", ("StartSession",), SESSION_DOC)
def start_session_parameters(req: Request) -> None:
    """StartSession: a Parameters key not 1-255 long, or a value list of strings not 1-65535 long."""
    # Parameters: Map of string to array of strings; Key Length Constraints: 1-255;
    # Array Members: 1-65535 ... (SessionManagerParameterValue: Length 1-65535).
    for key, values in (req.params.get("Parameters") or {}).items():
        if not 1 <= len(key) <= 255:
            raise _session_invalid("parameters", key, "Map key must have length between 1 and 255")
        for value in values if isinstance(values, list) else [values]:
            if not isinstance(value, str) or not 1 <= len(value) <= 65535:
                raise _session_invalid(
                    "parameters", str(value), "Member must have length between 1 and 65535"
                )


@rule("ssm", ("StartSession",), SESSION_DOC)
def start_session_document(req: Request) -> None:
    """StartSession: a DocumentName that is not a Session Manager document."""
    # Errors: InvalidDocument, "The specified SSM document doesn't exist." (moto holds no
    # session documents: the AWS-owned ones are listed above).
    name = req.params.get("DocumentName")
    if name is not None and name not in SESSION_DOCUMENTS:
        raise Refusal("InvalidDocument", f"The specified SSM document {name} doesn't exist.")


@rule("ssm", ("StartSession",), SESSION_DOC)
def start_session_target_connected(req: Request) -> None:
    """StartSession: a Target that is not a running instance of the region (not connected)."""
    # Errors: TargetNotConnected, "The specified target managed node for the session isn't
    # fully configured for use with Session Manager." An instance that does not run has
    # no SSM agent online.
    target = req.params.get("Target") or ""
    running = [i for i in _live(req, [target]) if i.state == "running"]
    if not running:
        raise Refusal("TargetNotConnected", f"{target} is not connected.")


# -- S3 ----------------------------------------------------------------------------

BUCKET_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"


def _bad_bucket() -> Refusal:
    return Refusal("InvalidBucketName", "The specified bucket is not valid.")


@rule("s3", ("CreateBucket",), BUCKET_DOC)
def bucket_name_characters(req: Request) -> None:
    """CreateBucket: a name not of lowercase letters, digits, dots and hyphens, or not 3-63 long."""
    # "Bucket names can consist only of lowercase letters, numbers, periods (.), and
    # hyphens (-)"; "must be between 3 (min) and 63 (max) characters long".
    if not re.fullmatch(r"[a-z0-9.\-]{3,63}", req.params["Bucket"]):
        raise _bad_bucket()


@rule("s3", ("CreateBucket",), BUCKET_DOC)
def bucket_name_edges(req: Request) -> None:
    """CreateBucket: a name not beginning and ending with a letter or digit, or with two adjacent periods."""
    # "must begin and end with a letter or number"; "must not contain two adjacent periods".
    name = req.params["Bucket"]
    if not (name[:1].isalnum() and name[-1:].isalnum()) or ".." in name:
        raise _bad_bucket()


@rule("s3", ("CreateBucket",), BUCKET_DOC)
def bucket_name_ip(req: Request) -> None:
    """CreateBucket: a name formatted as an IP address (192.168.5.4)."""
    # "must not be formatted as an IP address (for example, 192.168.5.4)".
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(req.params["Bucket"])
        raise _bad_bucket()


@rule("s3", ("CreateBucket",), BUCKET_DOC)
def bucket_name_reserved(req: Request) -> None:
    """CreateBucket: a reserved prefix (xn--, sthree-, amzn-s3-demo-) or suffix (-s3alias, --ol-s3, .mrap, --x-s3)."""
    # "must not start with the prefix xn--", "sthree-", "amzn-s3-demo-"; "must not end with
    # the suffix -s3alias", "--ol-s3", ".mrap", "--x-s3" (reserved for access points etc.).
    name = req.params["Bucket"]
    if name.startswith(("xn--", "sthree-", "amzn-s3-demo-")) or name.endswith(
        ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")
    ):
        raise _bad_bucket()


# -- IAM: what the signing principal's policies allow (strict_iam.py) ------------------------


def _principal(req: Request) -> Any:
    """The instance role signing the request; an IAM user made in moto by its own key (for
    IAM_USER_ACTIONS); the runctl user for USER_ACTIONS; else None (not evaluated)."""
    instance_id = INSTANCE_KEYS.get(req.access_key)
    if instance_id:
        return strict_iam.instance_principal(req.account, req.region, instance_id)
    user = strict_iam.iam_user_of(req.account, req.access_key)
    if user is not None and req.action in strict_iam.IAM_USER_ACTIONS + ("SendCommand",):
        return strict_iam.iam_user_principal(req.account, user)
    if req.action in strict_iam.USER_ACTIONS:
        return strict_iam.user_principal(req.account, req.region)
    return None


@rule(
    "ec2",
    strict_iam.IAM_USER_ACTIONS,
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html",
)
def iam_policy_allows(req: Request) -> None:
    """An EC2 request the signer's IAM policies do not allow, on any resource it names."""
    # FIXTURE RULE (moto evaluates no IAM): each resource is authorized on its own with its
    # real tags; an instance's requests by its role's policies and tags, an IAM user's by
    # its own policies, the default user's volume actions by `runctl aws policy`. EC2
    # answers UnauthorizedOperation, 403.
    principal = _principal(req)
    if principal is None:
        return
    ctx = strict_iam.refused(principal, strict_iam.ec2_contexts(req, req.action))
    if ctx is not None:
        raise Refusal(
            strict_iam.ACCESS_DENIED_EC2, strict_iam.denial_message(principal, ctx), status=403
        )


@rule(
    "ec2",
    ("AttachVolume",),
    "https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html",
)
def attach_volume_in_use(req: Request) -> None:
    """AttachVolume: a volume attached already, unless Multi-Attach (then Nitro only)."""
    # after iam_policy_allows: AWS authorizes a request before it looks at the volume
    # VolumeInUse: "The specified EBS volume is attached to an instance"; a Multi-Attach
    # volume attaches to "up to 16 instances built on the Nitro System that are in the
    # same Availability Zone" (MULTI_ATTACH_DOC; the zone: attach_volume_same_az).
    found = _volume_and_instance(req)
    if found is None:
        return  # moto answers the unknown id itself
    volume, inst = found
    attached = volume.attachment is not None and volume.attachment.status == "attached"
    if attached and not volume.multi_attach_enabled:
        raise Refusal("VolumeInUse", f"{volume.id} is already attached to an instance")
    if volume.multi_attach_enabled:
        from moto.ec2.models.instance_types import INSTANCE_TYPES

        if (INSTANCE_TYPES.get(inst.instance_type) or {}).get("Hypervisor") != "nitro":
            raise Refusal(
                "InvalidParameterCombination",
                f"Multi-Attach volumes can only be attached to instances built on the Nitro "
                f"System; {inst.instance_type} is not",
            )


@rule(
    "ssm",
    ("SendCommand",),
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html",
)
def iam_policy_allows_ssm(req: Request) -> None:
    """SendCommand by an IAM user its policies do not allow (the document, each instance)."""
    # FIXTURE RULE: an IAM user made in moto only (issue 18's team members); SSM answers
    # AccessDeniedException, 400 (https://docs.aws.amazon.com/systems-manager/latest/APIReference/CommonErrors.html).
    user = strict_iam.iam_user_of(req.account, req.access_key)
    if user is None:
        return
    principal = strict_iam.iam_user_principal(req.account, user)
    ctx = strict_iam.refused(principal, strict_iam.ssm_contexts(req, req.action))
    if ctx is not None:
        raise Refusal("AccessDeniedException", strict_iam.denial_message(principal, ctx))


@rule(
    "ecr",
    ("GetAuthorizationToken", "DescribeImages", "BatchGetImage", "PutImage"),
    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/security_iam_id-based-policy-examples.html",
)
def iam_policy_allows_ecr(req: Request) -> None:
    """ECR by an instance's role its policies do not allow (the repository; `*` for the token)."""
    # FIXTURE RULE (moto evaluates no IAM): GetAuthorizationToken has no resource
    # ("Resource": "*", https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html);
    # the others act on arn:aws:ecr:REGION:ACCOUNT:repository/NAME. ECR answers
    # AccessDeniedException, 400 (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/CommonErrors.html).
    instance_id = INSTANCE_KEYS.get(req.access_key)
    if not instance_id:
        return
    principal = strict_iam.instance_principal(req.account, req.region, instance_id)
    name = req.params.get("repositoryName")
    resource = "*" if req.action == "GetAuthorizationToken" else (
        f"arn:aws:ecr:{req.region}:{req.account}:repository/{name}"
    )
    ctx = strict_iam.refused(principal, [strict_iam.iam_eval.Context(f"ecr:{req.action}", resource)])
    if ctx is not None:
        raise Refusal("AccessDeniedException", strict_iam.denial_message(principal, ctx))


def s3_refusal(access_key: str, ctx: Any, region: str = "us-east-1") -> Refusal | None:
    """S3 by an instance's role or an IAM user made in moto: AccessDenied (403) when its
    policies do not allow it."""
    if not _state["on"]:
        return None
    instance_id = INSTANCE_KEYS.get(access_key)
    user = None if instance_id else strict_iam.iam_user_of(ACCOUNT, access_key)
    if instance_id:
        principal = strict_iam.instance_principal(ACCOUNT, region, instance_id)
    elif user is not None:
        principal = strict_iam.iam_user_principal(ACCOUNT, user)
    else:
        return None
    if strict_iam.refused(principal, [ctx]) is None:
        return None
    refusal = Refusal("AccessDenied", "Access Denied", status=403)
    REFUSED.append(("iam_policy_allows", ctx.action, refusal.code, ctx.resource))
    return refusal


KEY_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html"


# ListObjectsV2: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html
@rule("s3", ("ListObjectsV2",), KEY_DOC)
def list_start_after_is_a_key(req: Request) -> None:
    """ListObjectsV2: a `StartAfter` or `Prefix` longer than a key (1,024 bytes of UTF-8)."""
    # ListObjectsV2: "StartAfter is where you want Amazon S3 to start listing from. Amazon
    # S3 starts listing after this specified key. StartAfter can be any key in the bucket."
    # Object keys: "The object key name is a sequence of Unicode characters with UTF-8
    # encoding of up to 1,024 bytes long." (error code page: KeyTooLongError, 400)
    for name in ("StartAfter", "Prefix"):
        if len(str(req.params.get(name) or "").encode()) > 1024:
            raise Refusal("KeyTooLongError", "Your key is too long")


# -- ECR (c.AWSBackend.ecr_repository: agent/ecr.py, aws/ecr_repo.py) -------------------

ECR_DOC = "https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_{}.html"
# repositoryName: "Length Constraints: Minimum length of 2. Maximum length of 256.
# Pattern: (?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*" (the same on
# CreateRepository, DescribeImages, BatchGetImage, PutImage, DescribeRepositories' names).
ECR_REPO_RE = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
ECR_NAMED = ("CreateRepository", "DescribeImages", "BatchGetImage", "PutImage")


def _ecr_invalid(field_name: str, value: Any, constraint: str) -> Refusal:
    return Refusal(
        "InvalidParameterException",
        f"1 validation error detected: Value '{value}' at '{field_name}' failed to satisfy "
        f"constraint: {constraint}",
    )


@rule("ecr", ECR_NAMED, ECR_DOC.format("DescribeImages"))
def ecr_repository_name(req: Request) -> None:
    """ECR: a repositoryName outside 2-256 characters or its pattern."""
    # API_CreateRepository / API_DescribeImages / API_BatchGetImage / API_PutImage:
    # repositoryName, Length Constraints 2-256, the pattern above.
    name = req.params.get("repositoryName")
    if not isinstance(name, str) or not 2 <= len(name) <= 256:
        raise _ecr_invalid("repositoryName", name, "Member must have length between 2 and 256")
    if not ECR_REPO_RE.fullmatch(name):
        raise _ecr_invalid(
            "repositoryName", name, f"Member must satisfy regular expression pattern: {ECR_REPO_RE.pattern}"
        )


@rule("ecr", ("DescribeRepositories",), ECR_DOC.format("DescribeRepositories"))
def ecr_repository_names(req: Request) -> None:
    """DescribeRepositories: repositoryNames outside 1-100 items, or a bad name."""
    # repositoryNames: "Array Members: Minimum number of 1 item. Maximum number of 100 items."
    names = req.params.get("repositoryNames")
    if names is None:
        return
    if not 1 <= len(names) <= 100:
        raise _ecr_invalid("repositoryNames", names, "Member must have length between 1 and 100")
    for name in names:
        if not (2 <= len(name) <= 256 and ECR_REPO_RE.fullmatch(name)):
            raise _ecr_invalid("repositoryNames", name, "Member must satisfy regular expression pattern")


@rule("ecr", ("DescribeImages", "BatchGetImage"), ECR_DOC.format("ImageIdentifier"))
def ecr_image_ids(req: Request) -> None:
    """DescribeImages / BatchGetImage: imageIds outside 1-100, a tag over 300 characters."""
    # DescribeImages imageIds: "Minimum number of 1 item. Maximum number of 100 items";
    # BatchGetImage imageIds: the same (required there); ImageIdentifier.imageTag:
    # "Length Constraints: Minimum length of 1. Maximum length of 300."
    ids = req.params.get("imageIds")
    if ids is None:
        if req.action == "BatchGetImage":
            raise _ecr_invalid("imageIds", None, "Member must not be null")
        return
    if not 1 <= len(ids) <= 100:
        raise _ecr_invalid("imageIds", ids, "Member must have length between 1 and 100")
    for image_id in ids:
        tag = image_id.get("imageTag")
        if tag is not None and not 1 <= len(tag) <= 300:
            raise _ecr_invalid("imageIds.member.imageTag", tag, "Member must have length between 1 and 300")


@rule("ecr", ("CreateRepository",), ECR_DOC.format("CreateRepository"))
def ecr_create_encryption(req: Request) -> None:
    """CreateRepository: an encryptionType other than AES256/KMS/KMS_DSSE; KMS key without KMS."""
    # EncryptionConfiguration: encryptionType "Valid Values: AES256 | KMS | KMS_DSSE";
    # kmsKey "If you use the AES256 encryption type, do not specify a kmsKey"
    # (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_EncryptionConfiguration.html).
    enc = req.params.get("encryptionConfiguration") or {}
    kind = enc.get("encryptionType")
    if enc and kind not in ("AES256", "KMS", "KMS_DSSE"):
        raise _ecr_invalid("encryptionConfiguration.encryptionType", kind, "Member must satisfy enum value set: [AES256, KMS, KMS_DSSE]")
    if kind == "AES256" and enc.get("kmsKey"):
        raise Refusal("InvalidParameterException", "Invalid parameter: a kmsKey cannot be specified with AES256 encryption")


@rule("ecr", ("CreateRepository",), ECR_DOC.format("Tag"))
def ecr_create_tags(req: Request) -> None:
    """CreateRepository: a tag key over 128 or a value over 256 characters."""
    # Tag: Key "Length Constraints: Minimum length of 1. Maximum length of 128.", Value
    # "Minimum length of 0. Maximum length of 256."
    for tag in req.params.get("tags") or []:
        if not 1 <= len(tag.get("Key") or "") <= 128 or len(tag.get("Value") or "") > 256:
            raise _ecr_invalid("tags", tag, "Key 1-128 and Value 0-256 characters")


# -- the hook -------------------------------------------------------------------------


def check(req: Request) -> None:
    """Raise the first Refusal of a rule for this request (nothing when the layer is off)."""
    if not _state["on"]:
        return
    for r in RULES:
        if r.service == req.service and req.action in r.actions:
            try:
                r.check(req)
            except Refusal as refusal:
                REFUSED.append((r.name, req.action, refusal.code, refusal.message))
                raise


def _request_of(response: Any) -> Request | None:
    service = getattr(response, "service_name", None)
    if service not in ("ec2", "iam", "ssm", "scheduler", "events", "ecr"):
        return None
    action = response._get_action()
    if service == "scheduler":  # rest-json: the body, and the Name in the path
        try:
            params = json.loads(response.body or "{}")
        except ValueError:
            params = {}
        name = response.uri.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        params["Name"] = urllib.parse.unquote(name)
    elif service in ("ssm", "events", "ecr"):  # the JSON protocol: the body
        try:
            params = json.loads(response.body or "{}")
        except ValueError:
            params = {}
    else:
        params = response._get_params()
    return Request(
        service=service,
        action=action,
        params=params if isinstance(params, dict) else {},
        region=getattr(response, "region", "us-east-1"),
        account=getattr(response, "current_account", ACCOUNT),
        response=response,
        access_key=response.get_access_key(),
    )


def _exception_class(service: str) -> type:
    """The service's own moto exception: moto finds the error model from its module."""
    if service == "ec2":
        from moto.ec2.exceptions import EC2ClientError

        return EC2ClientError
    if service == "iam":
        from moto.iam.exceptions import IAMException

        return IAMException
    if service == "ecr":  # moto finds the error model by the exception's module
        from moto.core.exceptions import ServiceException

        return type("ECRRefusal", (ServiceException,), {"__module__": "moto.ecr.exceptions"})
    from moto.ssm.exceptions import SSMException

    return SSMException


def install(placement_groups: dict | None = None) -> None:
    """Wrap moto's dispatch in this process (once); the layer is on from now.

    `placement_groups`: the fixture's own placement groups (region -> name -> group),
    since moto has none."""
    with _lock:
        if placement_groups is not None:
            _state["placement_groups"] = placement_groups
        if _state["installed"]:
            return
        _state["installed"] = True
    from moto.core.responses import ActionResult, BaseResponse
    from moto.s3.responses import S3Response

    original = BaseResponse.call_action

    def call_action(self: BaseResponse) -> Any:
        req = None
        if _state["on"]:
            req = _request_of(self)
            if req is not None and req.action in TAGGING + IAM_TAGGING:
                SEEN.append(req)
            if req is not None:
                try:
                    check(req)
                except Refusal as refusal:
                    if req.service in ("scheduler", "events"):  # json: the error's type, message
                        body = json.dumps({"__type": refusal.code, "Message": refusal.message})
                        head = {
                            "Content-Type": "application/json",
                            "x-amzn-ErrorType": refusal.code,
                        }
                        return refusal.status, head, body
                    error = _exception_class(req.service)(refusal.code, refusal.message)
                    _, headers, body = self.serialized(ActionResult(error))
                    headers, body = self._enrich_response(headers, body)
                    return refusal.status, headers, body
        status, headers, body = original(self)
        if req is not None and req.action == "RunInstances" and status == 200:
            _after_run_instances(req, body)
        return status, headers, body

    BaseResponse.call_action = call_action

    original_put = S3Response._bucket_response_put

    def bucket_put(self: S3Response, request: Any, bucket_name: str, querystring: dict) -> Any:
        req = None
        if not querystring and _state["on"]:  # a PUT on the bucket itself: CreateBucket
            req = Request("s3", "CreateBucket", {"Bucket": bucket_name}, "us-east-1")
        elif "notification" in querystring and _state["on"]:
            found = notification_configurations(self.body)
            req = Request(
                "s3",
                "PutBucketNotificationConfiguration",
                {"Bucket": bucket_name, "Configurations": found},
                "us-east-1",
            )
        if req is not None:
            try:
                check(req)
            except Refusal as refusal:
                from moto.s3.exceptions import S3ClientError

                raise S3ClientError(refusal.code, refusal.message) from None
        return original_put(self, request, bucket_name, querystring)

    S3Response._bucket_response_put = bucket_put
    _install_s3_iam(S3Response)


def _install_s3_iam(s3_response: Any) -> None:
    """Object requests and listings signed by an instance: by its role's policies."""
    from moto.s3.exceptions import S3ClientError

    def refuse(refusal: Refusal | None) -> None:
        if refusal is not None:
            raise S3ClientError(refusal.code, refusal.message)

    original_key = s3_response._key_response

    def key_response(self: Any, request: Any, full_url: str) -> Any:
        bucket = self.parse_bucket_name_from_url(request, full_url)
        key = self.parse_key_name()
        refuse(s3_condition_refusal(request.method, request.headers))
        ctx = strict_iam.s3_object_context(request.method, bucket, key)
        refuse(s3_refusal(self.get_access_key(), ctx))
        if request.method == "DELETE" and request.headers.get("If-Match"):
            # a conditional delete by ETag needs s3:GetObject too (conditional-deletes.html:
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html)
            ctx = strict_iam.s3_object_context("GET", bucket, key)
            refuse(s3_refusal(self.get_access_key(), ctx))
        return original_key(self, request, full_url)

    s3_response._key_response = key_response
    original_get = s3_response._bucket_response_get

    def bucket_get(self: Any, bucket_name: str, querystring: dict) -> Any:
        if not any(q in querystring for q in ("location", "uploads", "versioning", "tagging")):
            prefix = (querystring.get("prefix") or [None])[0]
            if (querystring.get("list-type") or [None])[0] == "2" and _state["on"]:
                names = {"prefix": "Prefix", "start-after": "StartAfter"}
                params = {v: querystring[k][0] for k, v in names.items() if querystring.get(k)}
                try:
                    check(Request("s3", "ListObjectsV2", params, "us-east-1"))
                except Refusal as refusal:
                    raise S3ClientError(refusal.code, refusal.message) from None
            ctx = strict_iam.s3_list_context(bucket_name, prefix)
            refuse(s3_refusal(self.get_access_key(), ctx))
        return original_get(self, bucket_name, querystring)

    s3_response._bucket_response_get = bucket_get
