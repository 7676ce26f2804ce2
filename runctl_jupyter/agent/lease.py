"""Leases on shared resources (a `--volume`, a kept `--instance`), the instance's side:
the agent keeps its run's lease alive while it runs, and gives it back at the end.

A lease is S3 objects in the run bucket (docs/teams.md, "Leases"), under
`<prefix>leases/<resource id>`:

    leases/<resource>/rw/<run>.json   a holder: {"resource", "owner", "run_id", "mode",
    leases/<resource>/ro/<run>.json     "expires_at", "renewed_at"}, one per run holding it
    leases/<resource>.json            the read-write guard: {"run_id", "owner", ...}, the one
                                      object two read-write acquires race for

The notebook side acquires (aws/leases.py: the holder, then the guard with a
conditional put, `IfNoneMatch="*"`); this side renews its own holder object every
`renew_seconds` with `IfMatch=<its etag>` and deletes it at the run's end (a
conditional delete). A holder whose `expires_at` passed (the agent died: no renewal
for EXPIRY_BEATS intervals) counts as free. S3 conditional writes:
https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html

Stdlib only; boto3 comes in through agent/clients.py, when a Keeper is made.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from typing import Any

LEASE_DIR = "leases/"
MODES = ("rw", "ro")
EXPIRY_BEATS = 4  # a holder lives this many renew intervals past its last renewal
RENEW_SECONDS = 15.0


def _base(prefix: str) -> str:
    prefix = prefix or ""
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return f"{prefix}{LEASE_DIR}"


def guard_key(prefix: str, resource: str) -> str:
    return f"{_base(prefix)}{resource}.json"


def holders_prefix(prefix: str, resource: str, mode: str) -> str:
    return f"{_base(prefix)}{resource}/{mode}/"


def holder_key(prefix: str, resource: str, mode: str, run_id: str) -> str:
    return f"{holders_prefix(prefix, resource, mode)}{run_id}.json"


def holder_body(
    resource: str, owner: str, run_id: str, mode: str, seconds: float, now: float | None = None
) -> bytes:
    now = time.time() if now is None else now
    return json.dumps(
        {
            "resource": resource,
            "owner": owner,
            "run_id": run_id,
            "mode": mode,
            "renewed_at": now,
            "expires_at": now + seconds,
            "host": socket.gethostname(),
        }
    ).encode()


def is_live(body: dict | None, now: float | None = None) -> bool:
    """A holder counts until its `expires_at` (a reader treats an expired one as free)."""
    if not isinstance(body, dict):
        return False
    now = time.time() if now is None else now
    try:
        return float(body.get("expires_at") or 0) > now
    except (TypeError, ValueError):
        return False


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


LOST = ("PreconditionFailed", "412", "NoSuchKey", "404", "ConditionalRequestConflict", "409")
_CURRENT: list[Keeper] = []  # the Keeper this process started (the service's)


def release_held() -> None:
    """Give back this process's leases now: called by the agent right before it writes the
    run's `exit` event, so whoever sees that event (a sweep handing the instance on, the
    next `train --instance`) finds the lease free."""
    for keeper in list(_CURRENT):
        keeper.release()


class Keeper:
    """Renews this run's holder objects (one a lease in `cfg["leases"]`) from a thread of
    the agent's process, so they expire when that process dies; `release()` at the end."""

    def __init__(self, cfg: dict, run_id: str, client: Any = None):
        self.bucket = cfg["bucket"]
        self.prefix = cfg.get("prefix", "runctl/")
        self.run_id = run_id
        self.leases = [dict(x) for x in cfg.get("leases") or []]
        self.every = float(cfg.get("lease_renew_seconds") or RENEW_SECONDS)
        if client is None:
            from .clients import make_s3_client

            client = make_s3_client(cfg.get("region"))
        self.s3 = client
        self.etags: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _key(self, lease: dict) -> str:
        return holder_key(self.prefix, lease["resource"], lease["mode"], self.run_id)

    def start(self) -> Keeper:
        if self.leases and self._thread is None:
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the thread tries again at each beat
                sys.stderr.write(f"runctl lease: renew failed: {exc}\n")
            self._thread = threading.Thread(target=self._loop, name="runctl-lease", daemon=True)
            self._thread.start()
            _CURRENT.append(self)
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the next beat tries again
                sys.stderr.write(f"runctl lease: renew failed: {exc}\n")

    def renew(self) -> None:
        for lease in self.leases:
            key = self._key(lease)
            body = holder_body(
                lease["resource"],
                str(lease.get("owner") or ""),
                self.run_id,
                lease["mode"],
                self.every * EXPIRY_BEATS,
            )
            self.etags[key] = self._put(key, body, self.etags.get(key))

    def _put(self, key: str, body: bytes, etag: str | None) -> str:
        """Our own holder, written over the version we wrote last (`IfMatch`); one we do
        not know the version of (a new agent process, a replacement instance) is read first."""
        for _ in range(3):
            if etag is None:
                etag = self._current_etag(key)
            cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
            try:
                answer = self.s3.put_object(
                    Bucket=self.bucket, Key=key, Body=body, ServerSideEncryption="AES256", **cond
                )
                return str(answer["ETag"])
            except Exception as exc:
                if error_code(exc) not in LOST:
                    raise
                etag = None
        raise RuntimeError(f"could not renew {key}: it keeps changing")

    def _current_etag(self, key: str) -> str | None:
        try:
            return str(self.s3.head_object(Bucket=self.bucket, Key=key)["ETag"])
        except Exception as exc:
            if error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def release(self) -> None:
        """Give every lease back: delete our holder object if it is still the one we wrote
        (a conditional delete, `IfMatch`); the guard then points at nothing and is free."""
        self.stop()
        held, self.leases = self.leases, []
        if self in _CURRENT:
            _CURRENT.remove(self)
        for lease in held:
            key = self._key(lease)
            etag = self.etags.get(key) or self._current_etag(key)
            if not etag:
                continue
            try:
                self.s3.delete_object(Bucket=self.bucket, Key=key, IfMatch=etag)
            except Exception as exc:  # noqa: BLE001 - it expires on its own
                if error_code(exc) not in LOST:
                    sys.stderr.write(f"runctl lease: release of {key} failed: {exc}\n")
