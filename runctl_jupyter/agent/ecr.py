"""A Dockerfile's image cached in ECR (`c.AWSBackend.ecr_repository`): pulled, not built.

Before building `localhost/runctl-build:DIGEST` (agent/container.py) the agent asks ECR
whether the repository holds the tag DIGEST (DescribeImages). If it does: log in
(GetAuthorizationToken; `RUNTIME login --username AWS --password-stdin HOST`, the
password on stdin only, never in an argv or a log), pull `HOST/REPO:DIGEST` and tag it
as the build tag. If not: build, then tag and push it. The cache never fails a run: a
missing repository, a refused call or a failed push or pull is one warning line in the
build log and the run's output, and the image is built here as without ECR.

spec["sync"]["ecr_repository"] names the repository, spec["sync"]["region"] its region.
Stdlib only at import (shipped to instances); boto3 is imported lazily (agent/clients.py).
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

Say = Callable[[str], None]
LOGIN_TIMEOUT = 120


class CacheMiss(Exception):
    """Not in the cache, or the cache cannot be used (the message says why, one line)."""


def settings(spec: dict) -> tuple[str, str | None] | None:
    """(repository, region) when the run caches its built image in ECR."""
    sync = spec.get("sync") or {}
    repo = sync.get("ecr_repository")
    return (str(repo), sync.get("region")) if repo else None


def make_client(region: str | None) -> Any:
    from botocore.config import Config

    from .clients import _client

    return _client("ecr", region, Config(retries={"mode": "standard", "max_attempts": 5}))


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code", "")) or type(exc).__name__


def has_tag(ecr: Any, repository: str, tag: str) -> bool:
    """DescribeImages for the one tag: False when it is not there; CacheMiss when the
    repository is missing or the call is refused."""
    try:
        ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except Exception as exc:
        code = _code(exc)
        if code == "ImageNotFoundException":
            return False
        if code == "RepositoryNotFoundException":
            raise CacheMiss(
                f"ECR repository {repository} does not exist: create it (runctl aws setup "
                f"with c.AWSBackend.ecr_repository set) or unset c.AWSBackend.ecr_repository"
            ) from None
        raise CacheMiss(f"ECR DescribeImages on {repository} failed ({code}): {exc}") from None
    return True


def login(ecr: Any, runtime: str, log: Path) -> str:
    """Log the runtime in to the registry; its host (`ACCOUNT.dkr.ecr.REGION.amazonaws.com`)."""
    try:
        data = ecr.get_authorization_token()["authorizationData"][0]
    except Exception as exc:
        raise CacheMiss(f"ECR GetAuthorizationToken failed ({_code(exc)})") from None
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    host = str(data["proxyEndpoint"]).split("://", 1)[-1].rstrip("/")
    cmd = [runtime, "login", "--username", user or "AWS", "--password-stdin", host]
    try:
        proc = subprocess.run(
            cmd, input=password, capture_output=True, text=True, timeout=LOGIN_TIMEOUT
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CacheMiss(f"{runtime} login to {host} failed: {exc}") from None
    with open(log, "a") as f:  # the argv and the answer; the password never
        f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CacheMiss(f"{runtime} login to {host} failed: {last[0]}")
    return host


def _step(cmd: list[str], log: Path, run: Callable[..., tuple[int, str]]) -> None:
    code, out = run(cmd, log)
    if code != 0:
        lines = out.strip().splitlines()
        raise CacheMiss(f"{' '.join(cmd[:2])} failed: {lines[-1] if lines else 'no output'}")


def pull(
    runtime: str, settings_: tuple[str, str | None], tag: str, log: Path,
    run: Callable[..., tuple[int, str]], ecr: Any = None,
) -> bool:
    """The build tag pulled from ECR (True), or False when ECR has no such image."""
    repository, region = settings_
    ecr = ecr or make_client(region)
    digest = tag.rsplit(":", 1)[1]
    if not has_tag(ecr, repository, digest):
        with open(log, "a") as f:
            f.write(f"ECR {repository}:{digest} not found: building\n")
        return False
    remote = f"{login(ecr, runtime, log)}/{repository}:{digest}"
    _step([runtime, "pull", remote], log, run)
    _step([runtime, "tag", remote, tag], log, run)
    with open(log, "a") as f:
        f.write(f"pulled {remote} from ECR: not built\n")
    return True


def push(
    runtime: str, settings_: tuple[str, str | None], tag: str, log: Path,
    run: Callable[..., tuple[int, str]], ecr: Any = None,
) -> str:
    """The built image pushed as `HOST/REPO:DIGEST`; that name (CacheMiss on a failure)."""
    repository, region = settings_
    ecr = ecr or make_client(region)
    remote = f"{login(ecr, runtime, log)}/{repository}:{tag.rsplit(':', 1)[1]}"
    _step([runtime, "tag", tag, remote], log, run)
    _step([runtime, "push", remote], log, run)
    with open(log, "a") as f:
        f.write(f"pushed {remote} to ECR\n")
    return remote
