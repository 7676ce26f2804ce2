"""The agent's boto3 clients on an instance (S3, EC2): adaptive retries, and
`AWS_ENDPOINT_URL` honoured (the tests point them at a local moto server). boto3 is
imported only when a client is made, so a local agent never needs it.

One client per service, region and endpoint in a process: a new one reloads its
service model (a few tenths of a second each), and the boot's staging makes S3 calls
from several places (the bundle, the restore, the attempt's marker) in a row.
"""

from __future__ import annotations

import os
import threading
from typing import Any

_CLIENTS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


def make_s3_client(region: str | None, profile: str | None = None) -> Any:
    """`profile`: a named profile of the user's chain (a local run published to its
    team with `c.AWSBackend.profile`); None on instances."""
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=60,
    )
    return _client("s3", region, config, profile)


def make_ec2_client(region: str | None) -> Any:
    from botocore.config import Config

    return _client("ec2", region, Config(retries={"mode": "adaptive", "max_attempts": 8}))


def adopt(service: str, region: str | None, client: Any) -> None:
    """A client made before the package was there (the boot's bundle fetch) serves the
    calls after it too."""
    with _LOCK:
        _CLIENTS.setdefault(_key(service, region), client)


def _key(service: str, region: str | None, profile: str | None = None) -> tuple:
    endpoint = os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get(
        "AWS_ENDPOINT_URL"
    )
    return (service, region, endpoint) + ((profile,) if profile else ())


def _client(service: str, region: str | None, config: Any, profile: str | None = None) -> Any:
    key = _key(service, region, profile)
    endpoint = key[2]
    with _LOCK:
        if key not in _CLIENTS:
            import boto3

            kwargs: dict[str, Any] = {"config": config, "region_name": region}
            if endpoint:
                kwargs["endpoint_url"] = endpoint
            session = boto3.session.Session(profile_name=profile or None)
            _CLIENTS[key] = session.client(service, **kwargs)
        return _CLIENTS[key]
