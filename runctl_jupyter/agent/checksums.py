"""`--validate-data`: each staged file against its S3 listing, by size and checksum.

An ETag is what S3 says of an object's bytes (docs: "Checking object integrity",
and the `ETag` of the Object data type):
- one part (32 hex digits): the MD5 of the object, for SSE-S3 and unencrypted
  objects. SSE-KMS and SSE-C objects' ETags are not their MD5: on a mismatch one
  HeadObject tells, and such a file is checked by its size only (and said so).
- multipart (`<hex>-N`): the MD5 of the N parts' MD5 digests. The part size is not
  in the listing: it is tried at the AWS CLI's and boto3's default (8 MiB), and at
  the smallest size that gives N parts, when they give N parts; a match is a full
  check, no match leaves a size-only check (said so), since a part size we could not
  guess is no proof the file is wrong.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

DEFAULT_PART = 8 << 20  # the AWS CLI's and boto3's multipart_chunksize
MIB = 1 << 20
BLOCK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            digest.update(chunk)
    return digest.hexdigest()


def multipart_etag(path: Path, part_size: int) -> str:
    """The ETag S3 gives a multipart upload of this file in parts of `part_size`."""
    parts = []
    with open(path, "rb") as f:
        while True:
            digest, left = hashlib.md5(usedforsecurity=False), part_size
            while left:
                chunk = f.read(min(BLOCK, left))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            if left == part_size:
                break
            parts.append(digest.digest())
    combined = hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(parts)}"


def part_sizes(size: int, parts: int) -> list[int]:
    """Part sizes that split `size` bytes into exactly `parts` parts: the 8 MiB default,
    and the smallest whole MiB that does (how tools that grow the part size choose)."""
    out = []
    smallest = -(-size // parts)  # bytes a part, rounded up to a whole MiB
    for candidate in (DEFAULT_PART, -(-smallest // MIB) * MIB):
        if candidate > 0 and -(-size // candidate) == parts and candidate not in out:
            out.append(candidate)
    return out


def encrypted_etag(s3: Any, bucket: str, key: str) -> bool:
    """Whether the object's ETag is not its MD5 (SSE-KMS, SSE-C)."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception:  # noqa: BLE001 - unknown: the mismatch stands
        return False
    return head.get("ServerSideEncryption") in ("aws:kms", "aws:kms:dsse") or bool(
        head.get("SSECustomerAlgorithm")
    )


def check_one(s3: Any, bucket: str, key: str, size: int, etag: str, path: Path) -> str | None:
    """Which check the file passed: `md5` or `multipart` (its bytes), or `size-only`;
    ValueError with one line naming the file when it does not match."""
    if not path.is_file():
        raise ValueError(f"{path.name} did not arrive (s3://{bucket}/{key})")
    have = path.stat().st_size
    if have != size:
        raise ValueError(f"{path} has {have} bytes, s3://{bucket}/{key} has {size} (truncated?)")
    head, dash, count = etag.partition("-")
    if not dash:
        if len(etag) != 32:
            return "size-only"
        if file_md5(path) == etag:
            return "md5"
        if encrypted_etag(s3, bucket, key):
            return "size-only"
        raise ValueError(
            f"{path} does not match s3://{bucket}/{key}: its MD5 differs from the ETag"
        )
    if not count.isdigit():
        return "size-only"
    for part in part_sizes(size, int(count)):
        if multipart_etag(path, part) == etag:
            return "multipart"
    return "size-only"


def verify_staged(
    s3: Any, bucket: str, entries: list[tuple[str, int, str]], targets: dict[str, Path]
) -> tuple[tuple[str, str] | None, dict]:
    """((key, one line) of the first file that does not match, or None; the counts of
    each kind of check, with a note when some files were checked by size only)."""
    counts: dict[str, Any] = {"md5": 0, "multipart": 0, "size-only": 0}
    for key, size, etag in sorted(entries):
        try:
            counts[check_one(s3, bucket, key, size, etag, targets[key]) or "size-only"] += 1
        except ValueError as exc:
            return (key, str(exc)), counts
    if counts["size-only"]:
        counts["note"] = (
            f"{counts['size-only']} file(s) checked by size only: a multipart ETag whose "
            "part size is unknown, or an SSE-KMS/SSE-C ETag, which is not an MD5"
        )
    return None, counts
