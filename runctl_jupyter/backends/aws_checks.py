"""What start() checks before any instance exists, so a mistake never costs a boot:
options this backend refuses, credentials, the bucket, `--data`, the bundle
(requirements, `--sync` folders), and a distributed plan against the instance type.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from ..aws import bundle, cluster
from ..aws.clients import AWSError, Clients, error_code
from ..aws.launch import LaunchRequest

# Options the parser knows that this backend does not honour yet: refused, never ignored.
NOT_YET: dict[str, int] = {}


class Checked(NamedTuple):
    """What the checks found, for the launch that follows them."""

    clients: Clients
    identity: dict
    bucket: str
    pip: Any
    sync_dirs: list


def check_before_launch(backend: Any, run_dir: Path, spec: dict, opts: dict) -> Checked:
    for name, issue in NOT_YET.items():
        if opts.get(name) not in (None, False, (), []):
            flag = "--" + name.replace("_", "-")
            raise AWSError(
                f"{flag} is not available on AWS in this version yet (issue {issue}); drop it"
            )
    clients = backend.clients_for(opts.get("region"))
    ident = clients.identity()  # credentials first: nothing is created without them
    bucket = backend._bucket(clients)
    try:
        clients.s3.head_bucket(Bucket=bucket)
    except Exception as exc:
        raise AWSError(
            f"bucket {bucket} is missing or not yours ({error_code(exc)}); run `runctl aws setup`"
        ) from exc
    if opts.get("data"):
        _check_data(clients, str(opts["data"]), bool(opts.get("validate_data")))
    pip = _pip_choice(opts)
    sync_dirs = list(opts.get("sync") or [])
    # Validate the bundle (requirements, --sync folders) before any instance exists.
    bundle.build(run_dir, spec, {"kind": "s3"}, pip=pip, sync_dirs=sync_dirs)
    return Checked(clients, ident, bucket, pip, sync_dirs)


def complete_plan(clients: Clients, run_dir: Path, spec: dict, req: LaunchRequest) -> None:
    """The distributed plan checked against the instance type (`--gpus all` resolved) and
    written back into the spec (the caller's too), so the agent on the instance runs
    torchrun with it."""
    from ..store.folders import write_spec

    spec["distributed"] = cluster.check_plan(clients, spec["distributed"], req)
    write_spec(run_dir, spec)


def _check_data(clients: Clients, url: str, validate: bool) -> None:
    """`--data` must name objects that exist (and, with --validate-data, none empty) before launch."""
    from ..agent.data import data_problems, list_data, parse_s3_url

    try:
        bucket, prefix = parse_s3_url(url)
    except ValueError as exc:
        raise AWSError(str(exc)) from exc
    try:
        if validate:
            problem = data_problems(list_data(clients.s3, bucket, prefix), url)
        else:
            found = clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get(
                "KeyCount", 0
            )
            problem = None if found else f"no files under {url}; check --data"
    except AWSError:
        raise
    except Exception as exc:
        raise AWSError(
            f"cannot list {url} ({error_code(exc) or exc}); check --data and your access to it"
        ) from exc
    if problem:
        raise AWSError(problem)


def _pip_choice(opts: dict) -> Any:
    if opts.get("requirements"):
        return str(opts["requirements"])
    pip = opts.get("pip")
    if pip is None or pip == ["auto"] or pip == "auto":
        return "auto"
    if pip == [] or pip == ["none"] or pip == "none":
        return "none"
    return list(pip)
