"""`--data s3://bucket/prefix/`: the run's input data, copied onto the instance.

Before an attempt starts, `prepare` stages the prefix (s5cmd when the image has it,
else boto3 transfers in parallel) and records its manifest in env.json: keys, sizes
and ETags, and one hash over them, the data's identity.

Where: into the run's data volume when the spec has one (`spec["data_mount"]`, the
volume `--data-size` made or `--volume` attached), one folder a bucket and prefix
(`<mount>/<bucket>/<prefix>`), so two datasets never collide and a later run on the
same persistent volume finds its data there; else into work/data. work/data is then
a link to that folder, so the code reads `data/` either way.

What: only what is not there yet. Beside the destination folder F is its manifest,
`.F.runctl-manifest.json` (key, size, ETag of each object staged); an object whose size and ETag match its
entry, with a file of that size, is left alone ("0 to fetch, N already staged"). A
file this manifest staged whose object left the prefix is deleted; nothing else is.

`--validate-data` refuses an empty prefix or empty files (here and on the notebook
side before launch, backends/aws_checks.py), then checks every file's size and
checksum against the listing (checksums.py); a mismatch fails the attempt before
training with one line naming the file, and its entry leaves the manifest, so the
next run fetches it again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..paths import UnsafePath, path_under
from .clients import make_s3_client

MANIFEST = ".runctl-manifest.json"  # beside the folder, as `.<folder>.runctl-manifest.json`

Entry = tuple[str, int, str]  # key, size, ETag (quotes stripped)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/prefix/` -> (bucket, prefix); ValueError for anything else."""
    if not url.startswith("s3://") or len(url) <= 5:
        raise ValueError(f"--data must look like s3://bucket/prefix/, not {url!r}")
    bucket, _, prefix = url[5:].partition("/")
    if not bucket:
        raise ValueError(f"--data must name a bucket: s3://bucket/prefix/, not {url!r}")
    return bucket, prefix


def list_data(s3: Any, bucket: str, prefix: str) -> list[Entry]:
    """(key, size, etag) of every object under the prefix (folder markers left out)."""
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if not obj["Key"].endswith("/"):
                out.append((obj["Key"], int(obj["Size"]), obj.get("ETag", "").strip('"')))
    return out


def data_problems(entries: list[Entry], url: str) -> str | None:
    """What `--validate-data` refuses before any copy: no files, or empty files (named)."""
    if not entries:
        return f"--validate-data: no files under {url}; check the prefix"
    empty = [k for k, size, _ in entries if size == 0]
    if empty:
        more = f" and {len(empty) - 3} more" if len(empty) > 3 else ""
        return (
            f"--validate-data: {len(empty)} empty file(s) under {url}: {', '.join(empty[:3])}{more}"
        )
    return None


def manifest_of(url: str, entries: list[Entry]) -> dict:
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


def data_dest(url: str, work: Path, data_mount: str | None) -> Path:
    """Where `url` is staged: `<data_mount>/<bucket>/<prefix>` on a data volume, else
    work/data. ValueError for a bucket or prefix that would leave the mount."""
    if not data_mount:
        return work / "data"
    bucket, prefix = parse_s3_url(url)
    try:
        return path_under(data_mount, f"{bucket}/{prefix.strip('/')}".rstrip("/"))
    except UnsafePath as exc:
        raise ValueError(f"{url} cannot be a folder under {data_mount}: {exc}") from None


def link_data(work: Path, dest: Path) -> None:
    """work/data -> dest (on the data volume), so the code reads `data/` as without one."""
    link = work / "data"
    if link.resolve() == dest.resolve():
        return
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise ValueError(f"{link} exists and is not a link: the code's data/ would hide {dest}")
    link.symlink_to(dest, target_is_directory=True)


def local_targets(entries: list[Entry], prefix: str, dest: Path, url: str) -> dict[str, Path]:
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


def manifest_path(dest: Path) -> Path:
    """The manifest of what was staged in `dest`: beside it, not in it (code that lists
    `data/` sees only the data)."""
    return dest.parent / f".{dest.name}{MANIFEST}"


def read_staged(dest: Path) -> dict[str, dict]:
    """The destination's manifest: {key: {"size", "etag"}} of what was staged there."""
    try:
        data = json.loads(manifest_path(dest).read_text())
        return {str(k): v for k, v in data.get("objects", {}).items() if isinstance(v, dict)}
    except (OSError, ValueError, AttributeError):
        return {}


def write_staged(dest: Path, url: str, staged: dict[str, dict]) -> None:
    path = manifest_path(dest)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"url": url, "objects": staged}, indent=0, sort_keys=True))
    os.replace(tmp, path)


def to_fetch(entries: list[Entry], targets: dict[str, Path], staged: dict) -> list[Entry]:
    """The objects not already there: no manifest entry of that size and ETag, or no
    file of that size."""
    out = []
    for key, size, etag in entries:
        known = staged.get(key) or {}
        target = targets[key]
        same = known.get("size") == size and known.get("etag") == etag
        if not (same and target.is_file() and target.stat().st_size == size):
            out.append((key, size, etag))
    return out


def drop_gone(entries: list[Entry], staged: dict, dest: Path) -> int:
    """Delete the files this manifest staged whose objects left the prefix; how many."""
    keep = {key for key, _, _ in entries}
    gone = [key for key in staged if key not in keep]
    for key in gone:
        path = staged[key].get("path")
        if isinstance(path, str):
            try:
                path_under(dest, path).unlink(missing_ok=True)
            except (UnsafePath, OSError):
                pass
        del staged[key]
    return len(gone)


def s5cmd_argv(s5cmd: str, commands_file: Path, workers: int) -> list[str]:
    """`s5cmd [--endpoint-url URL] --numworkers N run FILE` (s5cmd's documented global
    flags; FILE holds one `cp --raw s3://bucket/key "local path"` a line)."""
    argv = [s5cmd]
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        argv += ["--endpoint-url", endpoint]
    return argv + ["--numworkers", str(workers), "run", str(commands_file)]


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def fetch(
    s3: Any, bucket: str, todo: list[Entry], targets: dict[str, Path], concurrency: int
) -> str:
    """Copy `todo` to its targets; which tool did it."""
    import shutil
    import subprocess
    import tempfile
    from concurrent.futures import ThreadPoolExecutor

    for key, _, _ in todo:
        targets[key].parent.mkdir(parents=True, exist_ok=True)
    s5cmd = shutil.which("s5cmd")
    if s5cmd and todo:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            for key, _, _ in todo:
                f.write(
                    f"cp --raw {_quoted(f's3://{bucket}/{key}')} {_quoted(str(targets[key]))}\n"
                )
        try:
            subprocess.run(s5cmd_argv(s5cmd, Path(f.name), concurrency * 4), check=True)
        finally:
            os.unlink(f.name)
        return "s5cmd"
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(max_concurrency=4, multipart_threshold=64 << 20)

    def one(entry: Entry) -> None:
        s3.download_file(bucket, entry[0], str(targets[entry[0]]), Config=config)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, todo))
    return "boto3"


def stage_data(
    url: str,
    dest: Path,
    region: str | None,
    validate: bool,
    concurrency: int = 16,
    say: Callable[[str], None] | None = None,
) -> dict:
    """Stage `url` into `dest`, fetching only what is not there yet; the manifest."""
    say = say or (lambda line: print(f"runctl: {line}", flush=True))
    bucket, prefix = parse_s3_url(url)
    s3 = make_s3_client(region)
    entries = list_data(s3, bucket, prefix)
    problem = data_problems(entries, url) if validate else None
    if problem:
        raise ValueError(problem)
    dest.mkdir(parents=True, exist_ok=True)
    targets = local_targets(entries, prefix, dest, url)
    staged = read_staged(dest)
    todo = to_fetch(entries, targets, staged)
    removed = drop_gone(entries, staged, dest)
    say(f"{url}: {len(todo)} to fetch, {len(entries) - len(todo)} already staged")
    started = time.time()
    for key, _, _ in todo:
        staged.pop(key, None)  # until it has arrived
    write_staged(dest, url, staged)
    tool = fetch(s3, bucket, todo, targets, concurrency) if todo else "none"
    for key, size, etag in entries:
        rel = targets[key].relative_to(dest).as_posix()
        staged[key] = {"size": size, "etag": etag, "path": rel}
    write_staged(dest, url, staged)
    checked = None
    if validate:
        from .checksums import verify_staged

        mismatch, checked = verify_staged(s3, bucket, entries, targets)
        if mismatch:
            key, line = mismatch
            staged.pop(key, None)  # fetched again by the next run
            write_staged(dest, url, staged)
            raise ValueError(f"--validate-data: {line}")
    manifest = manifest_of(url, entries)
    manifest.update(
        tool=tool,
        seconds=round(time.time() - started, 3),
        path="data/",
        staged_at=str(dest),
        fetched=len(todo),
        already=len(entries) - len(todo),
        removed=removed,
    )
    if checked is not None:
        manifest["checked"] = checked
    return manifest
