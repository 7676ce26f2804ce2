"""The run folder made whole from S3 before an attempt starts on this instance.

A resume may start on a new instance (a spot fleet's replacement) or on one whose
earlier agent was killed: the events, checkpoints, stdout.log and the handled spot
notices all come back from the run's S3 prefix, so the attempt numbers its events
on from the true last one and `runctl.load_checkpoint()` finds the last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

from ..distributed import node_folder
from ..events import checkpoint_digests, checkpoint_problem
from ..paths import REFUSED_FILE, UnsafePath, path_under
from .clients import make_s3_client
from .s3 import SYNC_DIR, Sync, run_prefix


def _read_lines(path: Path) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return out
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and isinstance(event.get("seq"), int):
            out[event["seq"]] = line.strip() + b"\n"
    return out


FETCHERS = 8  # S3 gets at once: each is a round trip, and a resume may have hundreds


def _in_parallel(calls: list) -> list:
    """Each call at once (S3 round trips); their results in order; the first error raised."""
    if len(calls) < 2:
        return [call() for call in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(FETCHERS, len(calls))) as pool:
        return list(pool.map(lambda call: call(), calls))


def _keys(s3, bucket: str, prefix: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def _body(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _download_if_there(s3, bucket: str, key: str, target: Path) -> None:
    try:
        s3.download_file(bucket, key, str(target))
    except Exception:  # noqa: BLE001 - a first attempt has none
        pass


def restore(run: Path, cfg: dict) -> dict:
    """Make this machine's run folder whole before an attempt starts here.

    - what a previous agent on this instance left unsent goes up first;
    - events.jsonl becomes the union (by seq) of the instance's own stream, the
      bundle's copy of the mirror and every chunk in S3, so a resume numbers on
      from the true last seq (no gap, no duplicate);
    - checkpoints and stdout.log from S3 that are missing here are fetched, so
      `runctl.load_checkpoint()` finds the last checkpoint on a new instance; a key
      that would land outside the run folder, or a pickle whose sha256 is not its
      checkpoint event's, is left out and reported (docs/reliability.md, "Trust");
    - interruptions.json (the notices handled so far) too: --max-interruptions
      counts across instances;
    - the sync state is reset: the next chunk follows the last one in S3.
    """
    spec = json.loads((run / "spec.json").read_text())
    prefix = run_prefix(cfg, spec["run_id"])
    s3 = make_s3_client(cfg.get("region"))
    if (run / SYNC_DIR / "state.json").exists():
        Sync(run, cfg, client=s3).final(deadline=120)
    events = _read_lines(run / "events.jsonl")
    bundled = run / ".bundle-events.jsonl"
    events.update({k: v for k, v in _read_lines(bundled).items() if k not in events})
    fetched = 0
    chunks = _keys(s3, cfg["bucket"], prefix + "events/")
    for body in _in_parallel([partial(_body, s3, cfg["bucket"], key) for key in chunks]):
        for line in body.splitlines():
            try:
                seq = json.loads(line).get("seq")
            except (ValueError, AttributeError):
                continue
            if isinstance(seq, int) and seq not in events:
                events[seq] = line.strip() + b"\n"
                fetched += 1
    tmp = run / "events.jsonl.tmp"
    tmp.write_bytes(b"".join(events[k] for k in sorted(events)))
    os.replace(tmp, run / "events.jsonl")
    bundled.unlink(missing_ok=True)
    shared = prefix.removesuffix(node_folder())  # every node resumes from the run's checkpoints
    digests = checkpoint_digests(events.values())
    if shared != prefix:  # node K > 0: the checkpoints are node 0's, and so are their events
        digests.update(checkpoint_digests(_chunk_lines(s3, cfg["bucket"], shared + "events/")))
    restored, refused = _restore_checkpoints(s3, cfg["bucket"], run, shared, digests)
    if refused:  # the agent reports each as a warning event when the attempt starts
        sys.stderr.write("".join(f"runctl: {line}\n" for line in refused))
        (run / REFUSED_FILE).write_text(json.dumps(refused))
    fetches = []
    for name in ("stdout.log", "interruptions.json"):
        if not (run / name).exists():
            fetches.append(
                partial(_download_if_there, s3, cfg["bucket"], prefix + name, run / name)
            )
    _in_parallel(fetches)
    import shutil

    shutil.rmtree(run / SYNC_DIR, ignore_errors=True)
    return {
        "events": len(events),
        "fetched_events": fetched,
        "checkpoints": restored,
        "refused": refused,
    }


def _chunk_lines(s3: Any, bucket: str, prefix: str) -> Iterator[bytes]:
    """Every line of every event chunk under `prefix`, in key order (fetched at once)."""
    chunks = _keys(s3, bucket, prefix)
    for body in _in_parallel([partial(_body, s3, bucket, key) for key in chunks]):
        yield from body.splitlines()


def _restore_checkpoints(
    s3: Any, bucket: str, run: Path, shared: str, digests: dict
) -> tuple[int, list[str]]:
    """Fetch the checkpoints in S3 that are missing here, several at once. A key that
    would land outside the run folder, or a pickle that no checkpoint event names or
    whose sha256 is not its event's, stays out: (how many came, one line for each that
    did not)."""
    refused: list[str] = []
    wanted: list[tuple[str, str, Path, Path]] = []  # key, its path in the run, target, temp
    for key in _keys(s3, bucket, shared + "checkpoints/"):
        rel = key[len(shared) :]
        try:
            target = path_under(run, rel)
        except UnsafePath as exc:
            refused.append(f"S3 key {key} not restored: {exc}")
            continue
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            # a dot name: the sync skips it until it is checked and renamed
            wanted.append((key, rel, target, target.with_name(f".{target.name}.restoring")))
    _in_parallel([partial(s3.download_file, bucket, key, str(tmp)) for key, _, _, tmp in wanted])
    restored = 0
    for key, rel, target, fetched in wanted:
        problem = checkpoint_problem(run, fetched, digests, rel) if rel.endswith(".pkl") else None
        if problem:
            fetched.unlink()
            refused.append(f"S3 key {key}: {problem}")
            continue
        os.replace(fetched, target)
        restored += 1
    return restored, refused
