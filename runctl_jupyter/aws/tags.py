"""Tag names and the values every runctl-managed resource carries."""

from __future__ import annotations

import re

MANAGED = "runctl:managed"
RUN_ID = "runctl:run-id"
OWNER = "runctl:owner"
PROJECT = "runctl:project"
TEAM = "runctl:team"  # with OWNER and PROJECT: the cost-allocation tags (docs/cost.md)
ROLE = "runctl:role"
KEEP = "runctl:keep"
PERSISTENT = "runctl:persistent"
PROTECTED = "runctl:protected"
REUSED = "runctl:reused"
# on a `--volume` (a data volume the user opted in with `runctl:managed=true`): the run
# it serves now, so that run's role alone may attach it to a replacement instance
VOLUME_RUN = "runctl:volume-run"
# on a run's own role, when the run is published to a team (docs/teams.md): the owner's
# prefix `teams/<team>/<owner>/`, under which the role may publish that run alone
TEAM_PREFIX = "runctl:team-prefix"
# a `--persistent` data volume's name (`--volume-name`), which `--volume NAME` finds
VOLUME_NAME = "runctl:volume-name"

# A resource carrying one of these is never an orphan.
KEEP_TAGS = {KEEP: "true", PERSISTENT: "true", PROTECTED: "true", ROLE: "setup"}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


# The characters every AWS service takes in a tag (EC2 takes any, IAM and Cost Explorer
# fewer): letters, digits, spaces and + - = . _ : / @, up to 256 in a value.
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions
_NOT_ALLOWED = re.compile(r"[^\w +\-=.:/@]")
ALLOCATION = (OWNER, PROJECT, TEAM)


def tag_value(value: object) -> str:
    """A value every service accepts: other characters (an IAM user name's comma, say) as
    `_`, at most 256 characters."""
    return _NOT_ALLOWED.sub("_", str(value))[:256]


def run_tags(
    run_id: str, owner: str, project: str, team: str = "", **extra: str
) -> dict[str, str]:
    """A run's tags, the cost-allocation ones (owner, project, team; the team empty when
    none is set) on every resource it makes."""
    tags = {
        MANAGED: "true",
        RUN_ID: run_id,
        OWNER: tag_value(owner),
        PROJECT: tag_value(project),
        TEAM: tag_value(team),
    }
    tags.update(extra)
    return tags


def setup_tags() -> dict[str, str]:
    return {MANAGED: "true", ROLE: "setup"}


def is_kept(tags: dict[str, str]) -> bool:
    return any(tags.get(k, "").lower() == v for k, v in KEEP_TAGS.items())


def spec_team(spec: dict) -> str:
    """The team a run's spec names (c.Runctl.team at launch), "" for none."""
    team = spec.get("team")  # the team store's publish settings (agent/team.py), or a name
    if isinstance(team, dict):
        team = team.get("team")
    return str(team or (spec.get("options") or {}).get("team") or "")
