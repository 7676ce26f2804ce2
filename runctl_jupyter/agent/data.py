"""`--data s3://bucket/prefix/`: the run's input data, copied onto the instance.

Before an attempt starts, `prepare` stages the prefix into work/data (s5cmd when
the image has it, else boto3 transfers in parallel) and records its manifest in
env.json: keys, sizes and ETags, and one hash over them, the data's identity.
`--validate-data` refuses an empty prefix or empty files, on the notebook side
before launch (backends/aws.py) and here, and checks every file arrived.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ..paths import UnsafePath, path_under
from .clients import make_s3_client


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> (bucket, prefix); ValueError for anything else."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise ValueError(f"--data must look like s3://bucket/prefix/, not {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"--data must name a bucket: s3://bucket/prefix/, not {url!r}")
    return bucket, prefix


def list_data(s3: Any, bucket: str, prefix: str) -> list[tuple[str, int, str]]:
    """(key, size, etag) of every object under the prefix (folder markers left out)."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                out.append((obj["Key"], int(obj["Size"]), obj.get("ETag", "").strip('"')))
    return out


def data_problems(entries: list[tuple[str, int, str]], url: str) -> str | None:
    """What `--validate-data` refuses: no files, or empty files (named)."""
    if not entries:
        return f"--validate-data: no files under {url}; check the prefix"
    empty = [k for k, size, _ in entries if size == 0]
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        return (
            f"--validate-data: {len(empty)} empty file(s) under {url}: {', '.join(empty[:3])}{more}"
        )
    return None


def manifest_of(url: str, entries: list[tuple[str, int, str]]) -> dict:
    """Keys, sizes and ETags, and one hash over them all (the data's identity)."""
    import hashlib

    lines = "\n".join(f"{k}\t{size}\t{etag}" for k, size, etag in sorted(entries))
    return {
        "url": url,
        "files": len(entries),
        "bytes": sum(size for _, size, _ in entries),
        "hash": "sha256:" + hashlib.sha256(lines.encode()).hexdigest(),
        "keys": [
            {"key": k, "size": size, "etag": etag} for k, size, etag in sorted(entries)[:1000]
        ],
    }


def local_targets(
    entries: list[tuple[str, int, str]], prefix: str, dest: Path, url: str
) -> dict[str, Path]:
    """{key: where it goes under dest}; ValueError naming the keys that would land
    outside it (`..`, absolute, through a symlink): nothing is staged then."""
    targets, refused = {}, []
    for key, _, _ in entries:
        try:
            targets[key] = path_under(dest, key[len(prefix) :].lstrip("/") or Path(key).name)
        except UnsafePath:
            refused.append(key)
    if refused:
        more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
        raise ValueError(
            f"{len(refused)} key(s) under {url} would be written outside data/: "
            f"{', '.join(map(repr, refused[:3]))}{more}; rename or delete them in S3"
        )
    return targets


def stage_data(
    url: str, dest: Path, region: str | None, validate: bool, concurrency: int = 16
) -> dict:
    """Copy `url` to `dest` (s5cmd when present, else boto3 transfers in parallel); the manifest."""
    import shutil
    import subprocess
    from concurrent.futures import ThreadPoolExecutor

    bucket, prefix = parse_s3_url(url)
    s3 = make_s3_client(region)
    entries = list_data(s3, bucket, prefix)
    problem = data_problems(entries, url) if validate else None
    if problem:
        raise ValueError(problem)
    dest.mkdir(parents=True, exist_ok=True)
    targets = local_targets(entries, prefix, dest, url)
    started = time.time()
    s5cmd = shutil.which("s5cmd")
    tool = "s5cmd" if s5cmd else "boto3"
    if s5cmd and entries:
        cmd = [s5cmd]
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            cmd += ["--endpoint-url", endpoint]
        cmd += ["cp", f"s3://{bucket}/{prefix}*", str(dest) + "/"]
        subprocess.run(cmd, check=True)
    else:
        from boto3.s3.transfer import TransferConfig

        config = TransferConfig(max_concurrency=4)

        def fetch(entry: tuple[str, int, str]) -> None:
            target = targets[entry[0]]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, entry[0], str(target), Config=config)

        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(fetch, entries))
    if validate:
        missing = [k for k, _, _ in entries if not targets[k].is_file()]
        if missing:
            raise ValueError(
                f"--validate-data: {len(missing)} file(s) did not arrive, e.g. {missing[0]}"
            )
    manifest = manifest_of(url, entries)
    manifest.update(tool=tool, seconds=round(time.time() - started, 3), path="data/")
    return manifest
