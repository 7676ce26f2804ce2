"""`runctl aws policy --team TEAM [--admin]`: the user policy of a team's member (or admin).

What `runctl aws policy` grants, narrowed to the team, plus the team's prefix in the bucket:

- a member reads `teams/TEAM/*` and writes (puts, deletes) only under
  `teams/TEAM/${aws:username}/*`, the owner key of the runs they publish;
- a member acts (stop, terminate, SSM commands, tags, deletes, port forwarding) only on
  runctl-managed resources tagged `runctl:owner` = `${aws:username}`; an admin on every
  resource tagged `runctl:team` = TEAM;
- whatever a member creates must carry `runctl:owner` = `${aws:username}` and
  `runctl:team` = TEAM (the cost-allocation tags Cost Explorer groups by).

`${aws:username}` is the IAM user's friendly name: it exists for IAM users only, not for
an assumed role (SSO, federation), whose `${aws:userid}` is `ROLE-ID:session-name` and
never the bare name runctl records as the owner. So a member is an IAM user (policy in the
team's IAM group); a role may be an admin (its ARN, role or session name in
c.Runctl.team_admins and in `--admin`'s policy).
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_variables.html#policy-vars-infotouse
"""

from __future__ import annotations

import copy
import re

from .. import team_keys
from . import tags
from .user_policy import user_policy

USERNAME = team_keys.USERNAME_VARIABLE
# a team name goes into S3 keys, ARNs and tags: letters, digits, - _ . only
_TEAM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# the statements whose resources must be the caller's own (a member) or the team's (admin)
_NARROWED = ("ManageTaggedOnly",)
_DEBUGGER = "DebuggerPortForwarding"
_CREATING = ("LaunchTaggedOnly", "LaunchTemplateTaggedOnly", "ClusterPlacementGroupTaggedOnly")
# a run role's and profile's ends: the caller's own runs' (or, admin, the team's) only
_ROLE_ENDS = (
    "iam:DetachRolePolicy",
    "iam:DeleteRole",
    "iam:RemoveRoleFromInstanceProfile",
    "iam:DeleteInstanceProfile",
)


def check_team(team: str) -> str:
    """The team name, or ValueError with what to write."""
    if not _TEAM_NAME.fullmatch(team or ""):
        raise ValueError(
            f"team name {team!r} is not usable in S3 keys and tags: use 1-64 letters, digits, "
            "'-', '_' or '.', starting with a letter or digit (e.g. --team vision)"
        )
    return team


def team_policy(
    team: str,
    account: str = "*",
    region: str = "*",
    bucket: str | None = None,
    admin: bool = False,
) -> dict:
    """`runctl aws policy`'s statements, narrowed to the caller's (or, `admin`, the team's)
    resources, and the team's prefix: read all of it, write only the caller's owner key."""
    check_team(team)
    policy = copy.deepcopy(user_policy(account, region, bucket))
    owned = (
        {f"aws:ResourceTag/{tags.TEAM}": team}
        if admin
        else {f"aws:ResourceTag/{tags.OWNER}": USERNAME}
    )
    for statement in policy["Statement"]:
        sid = statement.get("Sid")
        equals = statement.setdefault("Condition", {}).setdefault("StringEquals", {})
        if sid in _NARROWED:
            equals.update(owned)
        elif sid == _DEBUGGER:
            key = next(iter(owned)).replace("aws:ResourceTag/", "ssm:resourceTag/")
            equals[key] = next(iter(owned.values()))
        elif sid in _CREATING:
            equals[f"aws:RequestTag/{tags.TEAM}"] = team
            if not admin:
                equals[f"aws:RequestTag/{tags.OWNER}"] = USERNAME
        if not equals:
            del statement["Condition"]["StringEquals"]
        if not statement["Condition"]:
            del statement["Condition"]
    policy["Statement"] = [s for s in policy["Statement"] if s.get("Sid") != "AttachManagedVolume"]
    policy["Statement"] += _volumes(f"arn:aws:ec2:{region}:{account}", owned)
    policy["Statement"] += _role_ends(policy["Statement"], owned)
    bucket_arn = next(s["Resource"] for s in policy["Statement"] if s.get("Sid") == "RunctlBucket")
    bucket_name = bucket_arn.removeprefix("arn:aws:s3:::")
    policy["Statement"] += team_keys.member_statements(bucket_name, team, USERNAME, admin)
    return policy


def _volumes(ec2: str, owned: dict[str, str]) -> list[dict]:
    """A shared data volume (opted in with `runctl:managed=true`, whoever made it) attaches
    to and detaches from the caller's own instances only; a launch marks it as its run's."""
    managed = {f"aws:ResourceTag/{tags.MANAGED}": "true"}
    return [
        {
            "Sid": "AttachManagedVolume",
            "Effect": "Allow",
            "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
            "Resource": f"{ec2}:volume/*",
            "Condition": {"StringEquals": managed},
        },
        {
            "Sid": "AttachToOwnInstance",
            "Effect": "Allow",
            "Action": ["ec2:AttachVolume", "ec2:DetachVolume"],
            "Resource": f"{ec2}:instance/*",
            "Condition": {"StringEquals": {**managed, **owned}},
        },
        {
            # candidates.serve_run: `runctl:volume-run` and nothing else on a shared volume
            "Sid": "MarkServedVolume",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": f"{ec2}:volume/*",
            "Condition": {
                "StringEquals": managed,
                "ForAllValues:StringEquals": {"aws:TagKeys": [tags.VOLUME_RUN]},
            },
        },
    ]


def _role_ends(statements: list[dict], owned: dict[str, str]) -> list[dict]:
    """Deleting a run role or profile (`cleanup`, a failed launch): the caller's own runs'
    only (the role's `runctl:owner` tag, an admin the team's); making them stays as it was."""
    runs = next(s for s in statements if s.get("Sid") == "RunRoles")
    runs["Action"] = [a for a in runs["Action"] if a not in _ROLE_ENDS]
    return [
        {
            "Sid": "RunRolesOwnEnds",
            "Effect": "Allow",
            "Action": list(_ROLE_ENDS),
            "Resource": runs["Resource"],
            "Condition": {"StringEquals": dict(owned)},
        }
    ]
