"""The team store's S3 key layout (docs/teams.md), in one place: the agent publishes
with it, the notebook side pulls with it, and `runctl aws policy --team` scopes a
member's IAM policy with it. Stdlib only (the agent imports it on instances).

Under the runctl bucket, one prefix a team, one a member (owner) inside it:

    teams/<team>/<owner>/runs/<run_id>/spec.json          the run's spec (written once)
    teams/<team>/<owner>/runs/<run_id>/summary.json       its summary row (rewritten)
    teams/<team>/<owner>/runs/<run_id>/events/000001.jsonl  event chunks (local runs;
                                                          an AWS run's stay in runctl/runs/)
    teams/<team>/<owner>/runs/<run_id>/record.ipynb, stdout.log, env.json
    teams/<team>/<owner>/index/<13-digit ms>-<run_id>.json  the summary at a status change

A member writes only under `teams/<team>/<owner>/` and reads all of `teams/<team>/`.
The index keys of one owner grow with time, so a reader lists only the new ones
(ListObjectsV2 `StartAfter`, one cursor an owner), never the whole team.
"""

from __future__ import annotations

import re

ROOT = "teams/"
INDEX = "index/"
SUMMARY_FILE = "summary.json"
TIME_DIGITS = 13  # milliseconds since 1970: 13 digits until the year 2286
# team and owner names as key parts: IAM user names' characters, no "/" and no spaces
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=,-]{0,63}$")
USERNAME_VARIABLE = "${aws:username}"  # IAM's policy variable for the caller's user name
_INDEX_NAME = re.compile(r"^(\d{13})-([A-Za-z0-9][A-Za-z0-9_.-]*)\.json$")


def check_name(value: str, what: str) -> str:
    """`value` as a team or owner key part, or ValueError saying what a name may hold."""
    if not isinstance(value, str) or not NAME.match(value):
        raise ValueError(
            f"{what} {value!r} cannot name an S3 prefix: use letters, digits and _.@+=,- "
            "(at most 64, starting with a letter or digit)"
        )
    return value


def team_prefix(team: str) -> str:
    return f"{ROOT}{check_name(team, 'team')}/"


def owner_prefix(team: str, owner: str) -> str:
    """Everything one member writes: `teams/<team>/<owner>/` (an agent's sync prefix)."""
    return f"{team_prefix(team)}{check_name(owner, 'owner')}/"


def run_prefix(team: str, owner: str, run_id: str) -> str:
    return f"{owner_prefix(team, owner)}runs/{run_id}/"


def index_prefix(team: str, owner: str) -> str:
    return f"{owner_prefix(team, owner)}{INDEX}"


def index_key(team: str, owner: str, millis: int, run_id: str) -> str:
    """One summary published at a status change; keys of one owner sort by time."""
    return f"{index_prefix(team, owner)}{int(millis):0{TIME_DIGITS}d}-{run_id}.json"


def parse_index_key(key: str) -> tuple[int, str] | None:
    """(millis, run_id) of an index key, None for anything else."""
    found = _INDEX_NAME.match(key.rsplit("/", 1)[-1])
    return (int(found.group(1)), found.group(2)) if found else None


def cursor_before(millis: int) -> str:
    """A `StartAfter` name part that sorts before every key of time >= millis."""
    return f"{max(0, int(millis)):0{TIME_DIGITS}d}"


def owner_of(key_or_prefix: str, team: str) -> str | None:
    """The owner part of a key (or a listing's common prefix) under the team's prefix."""
    base = team_prefix(team)
    if not key_or_prefix.startswith(base):
        return None
    owner = key_or_prefix[len(base) :].split("/", 1)[0]
    return owner if NAME.match(owner) else None


def member_statements(bucket: str, team: str, owner: str, admin: bool = False) -> list[dict]:
    """IAM statements of a member: list and read the team's prefix, write (and delete)
    only under their own owner prefix (docs/teams.md; printed by `aws policy --team`);
    an `admin` writes anywhere in the team's prefix. `owner` may be the policy variable
    `${aws:username}`: one policy for every member."""
    read = team_prefix(team)
    if admin:
        write = read
    elif owner == USERNAME_VARIABLE:
        write = f"{read}{owner}/"
    else:
        write = owner_prefix(team, owner)
    return [
        {
            "Sid": "TeamList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"arn:aws:s3:::{bucket}",
            "Condition": {"StringLike": {"s3:prefix": [f"{read}*"]}},
        },
        {
            "Sid": "TeamRead",
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{bucket}/{read}*",
        },
        {
            "Sid": "TeamWriteAll" if admin else "TeamWriteOwn",
            "Effect": "Allow",
            "Action": ["s3:PutObject", "s3:DeleteObject"],
            "Resource": f"arn:aws:s3:::{bucket}/{write}*",
        },
    ]
