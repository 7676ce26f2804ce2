"""A data trigger's prefix as a manifest: every object's key, size and ETag. New data
is what the last triggered run's manifest did not hold (a new key, or a key whose size
or ETag changed). A burst of uploads gives one run: the fire waits until no object is
younger than the settle time. `--max-data-age` refuses a prefix whose newest object is
older than that."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from ..errors import RunctlError

BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
OBJECTS_IN_RECORD = 20  # trigger objects named in a run's spec; the count is always kept


def parse_s3_prefix(uri: str) -> tuple[str, str]:
    """`s3://bucket/incoming/` -> ("bucket", "incoming/"), or one line."""
    text = str(uri or "")
    if not text.startswith("s3://"):
        raise RunctlError(f"--on-new-data {uri!r}: give an S3 prefix, e.g. s3://bucket/incoming/")
    bucket, _, prefix = text[len("s3://") :].partition("/")
    if not bucket:
        raise RunctlError(
            f"--on-new-data {uri!r} has no bucket: give s3://BUCKET/PREFIX/, "
            "e.g. s3://my-data/incoming/"
        )
    if not BUCKET_NAME.match(bucket) or ".." in bucket:
        raise RunctlError(
            f"--on-new-data {uri!r}: {bucket!r} is not a bucket name (3-63 lowercase letters, "
            "digits, '.', '-'); check the URI"
        )
    return bucket, prefix


def list_prefix(s3: Any, bucket: str, prefix: str) -> list[dict]:
    """Every object under the prefix: key, size, etag, modified (epoch seconds)."""
    objects = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents") or []:
            if item["Key"].endswith("/"):  # a console "folder" is not data
                continue
            objects.append(
                {
                    "key": item["Key"],
                    "size": int(item.get("Size") or 0),
                    "etag": str(item.get("ETag") or "").strip('"'),
                    "modified": item["LastModified"].timestamp(),
                }
            )
    return objects


def manifest_of(objects: list[dict]) -> dict[str, list]:
    return {o["key"]: [o["size"], o["etag"]] for o in objects}


def manifest_digest(manifest: dict) -> str:
    text = json.dumps(sorted([k, *v] for k, v in manifest.items()), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def new_objects(objects: list[dict], last: dict) -> list[dict]:
    """Objects the last triggered run did not see (new key, or changed size/ETag)."""
    return [o for o in objects if last.get(o["key"]) != [o["size"], o["etag"]]]


def unsettled_for(objects: list[dict], settle: float, now: float | None = None) -> float:
    """Seconds to wait until the newest object is `settle` seconds old (0: settled)."""
    if not objects:
        return 0.0
    newest = max(o["modified"] for o in objects)
    return max(0.0, newest + settle - (time.time() if now is None else now))


def stale_reason(
    objects: list[dict], max_age: float | None, uri: str, now: float | None = None
) -> str:
    """One line when the newest object is older than --max-data-age ("" when fresh)."""
    if not max_age:
        return ""
    from ..display.text import format_duration

    if not objects:
        return f"stale data: {uri} holds no objects (--max-data-age {format_duration(max_age)})"
    newest = max(objects, key=lambda o: o["modified"])
    age = (time.time() if now is None else now) - newest["modified"]
    if age <= max_age:
        return ""
    return (
        f"stale data: the newest object s3://{uri.split('/')[2]}/{newest['key']} is "
        f"{format_duration(age)} old, over --max-data-age {format_duration(max_age)}; "
        "upload fresh data or raise --max-data-age"
    )


def trigger_objects(bucket: str, objects: list[dict]) -> list[str]:
    newest_first = sorted(objects, key=lambda o: o["modified"], reverse=True)
    return [f"s3://{bucket}/{o['key']}" for o in newest_first[:OBJECTS_IN_RECORD]]
