"""A team pull (docs/teams.md): the summaries teammates published since the last pull,
into this home's index, by listing only new index keys; and a teammate's run made a
local mirror (spec and event chunks) when its metrics are asked for (`compare`).

Calls per pull: one ListObjectsV2 of the team's owners (`Delimiter`), one a member
(`StartAfter` this home's cursor for that member, less `OVERLAP_MS` so an entry a slow
writer put with an earlier time is still seen), and one GetObject a run with a newer
entry (only its newest entry: an older one says less). Nothing is fetched twice: a
run's row keeps the key it came from.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import team_keys
from ..events import EVENTS_FILE, append_mirrored
from ..store.team import OWN, applied_keys, apply_pulled, cursor, mark_lost

OVERLAP_MS = 120_000
WORKERS = 8
MIRROR_STATE = ".team-mirror.json"


@dataclass
class PullReport:
    owners: int = 0
    lists: int = 0
    gets: int = 0
    rows: int = 0


def _list(s3: Any, report: PullReport, **kwargs: Any) -> dict:
    report.lists += 1
    return s3.list_objects_v2(**kwargs)


def _pages(s3: Any, report: PullReport, **kwargs: Any) -> list[dict]:
    pages = [_list(s3, report, **kwargs)]
    while pages[-1].get("IsTruncated"):
        token = pages[-1]["NextContinuationToken"]
        pages.append(_list(s3, report, **kwargs, ContinuationToken=token))
    return pages


def owners(s3: Any, bucket: str, team: str, report: PullReport) -> list[str]:
    found = []
    for page in _pages(
        s3, report, Bucket=bucket, Prefix=team_keys.team_prefix(team), Delimiter="/"
    ):
        for common in page.get("CommonPrefixes", []):
            owner = team_keys.owner_of(common.get("Prefix", ""), team)
            if owner:
                found.append(owner)
    return found


def _get_json(s3: Any, bucket: str, key: str) -> Any:
    try:
        return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    except ValueError:
        return None


def pull(s3: Any, bucket: str, team: str, conn: sqlite3.Connection) -> PullReport:
    """Every member's new index entries into `team_runs`; returns what it cost."""
    report = PullReport()
    local = {rid for (rid,) in conn.execute(f"SELECT id FROM runs WHERE {OWN}")}
    for owner in owners(s3, bucket, team, report):
        report.owners += 1
        _pull_owner(s3, bucket, team, owner, conn, local, report)
    mark_lost(conn)  # live runs whose newest entry is too old: their agents died
    return report


def _pull_owner(
    s3: Any,
    bucket: str,
    team: str,
    owner: str,
    conn: sqlite3.Connection,
    local: set,
    report: PullReport,
) -> None:
    prefix = team_keys.index_prefix(team, owner)
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    after = cursor(conn, team, owner)
    parsed = team_keys.parse_index_key(after) if after else None
    if parsed:
        kwargs["StartAfter"] = prefix + team_keys.cursor_before(parsed[0] - OVERLAP_MS)
    keys = [o["Key"] for page in _pages(s3, report, **kwargs) for o in page.get("Contents", [])]
    if not keys:
        return
    applied = applied_keys(conn, team, owner)
    newest: dict[str, str] = {}
    for key in keys:
        found = team_keys.parse_index_key(key)
        if found is None or found[1] in local or applied.get(found[1], "") >= key:
            continue
        newest[found[1]] = max(newest.get(found[1], ""), key)
    wanted = sorted(newest.values())
    report.gets += len(wanted)
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        rows = list(pool.map(lambda key: _get_json(s3, bucket, key), wanted))
    report.rows += apply_pulled(conn, team, owner, zip(wanted, rows), max(keys))


def mirror(
    s3: Any, bucket: str, team: str, owner: str, run_id: str, events: str, run_dir: Path
) -> dict:
    """A teammate's run as a local folder the store indexes like any other: its spec
    (backend `team`, so nothing here ever launches or stops it) and its event chunks
    after the last one fetched. Returns the spec."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = run_dir / "spec.json"
    if spec_path.exists():
        spec = json.loads(spec_path.read_text())
    else:
        spec = s3.get_object(
            Bucket=bucket, Key=team_keys.run_prefix(team, owner, run_id) + "spec.json"
        )
        spec = json.loads(spec["Body"].read())
        if not isinstance(spec, dict) or spec.get("run_id") != run_id:
            raise ValueError(f"the team's spec.json of {owner}/{run_id} is not that run's")
        origin = {"backend": spec.get("backend"), "team": team, "owner": owner}
        spec.update(
            backend="team", sync=None, target={"bucket": bucket, "events": events, **origin}
        )
        spec.pop("team", None)
        spec_path.write_text(json.dumps(spec))
    pull_chunks(s3, run_dir, spec)
    return spec


def pull_chunks(s3: Any, run_dir: Path, spec: dict) -> int:
    """The chunks of a mirrored run after the last one fetched; returns how many."""
    target = spec.get("target") or {}
    bucket, prefix = target["bucket"], target["events"]
    state_path = run_dir / MIRROR_STATE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if state.get("after"):
        kwargs["StartAfter"] = state["after"]
    report = PullReport()
    keys = [o["Key"] for page in _pages(s3, report, **kwargs) for o in page.get("Contents", [])]
    for key in sorted(keys):
        data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        append_mirrored(run_dir / EVENTS_FILE, data.decode().splitlines(keepends=True))
        state["after"] = key
        state_path.write_text(json.dumps(state))
    return len(keys)
