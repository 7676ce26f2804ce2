"""Tag names and the values every runctl-managed resource carries."""

from __future__ import annotations

MANAGED = "runctl:managed"
RUN_ID = "runctl:run-id"
OWNER = "runctl:owner"
PROJECT = "runctl:project"
ROLE = "runctl:role"
KEEP = "runctl:keep"
PERSISTENT = "runctl:persistent"
PROTECTED = "runctl:protected"
REUSED = "runctl:reused"
# on a `--volume` (a data volume the user opted in with `runctl:managed=true`): the run
# it serves now, so that run's role alone may attach it to a replacement instance
VOLUME_RUN = "runctl:volume-run"
# a `--persistent` data volume's name (`--volume-name`), which `--volume NAME` finds
VOLUME_NAME = "runctl:volume-name"

# A resource carrying one of these is never an orphan.
KEEP_TAGS = {KEEP: "true", PERSISTENT: "true", PROTECTED: "true", ROLE: "setup"}


def tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": str(v)} for k, v in tags.items()]


def tag_dict(tags: list[dict[str, str]] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def run_tags(run_id: str, owner: str, project: str, **extra: str) -> dict[str, str]:
    tags = {MANAGED: "true", RUN_ID: run_id, OWNER: owner, PROJECT: project}
    tags.update(extra)
    return tags


def setup_tags() -> dict[str, str]:
    return {MANAGED: "true", ROLE: "setup"}


def is_kept(tags: dict[str, str]) -> bool:
    return any(tags.get(k, "").lower() == v for k, v in KEEP_TAGS.items())
