"""The agent's boto3 clients on an instance (S3, EC2): adaptive retries, and
`AWS_ENDPOINT_URL` honoured (the tests point them at a local moto server). boto3 is
imported only when a client is made, so a local agent never needs it."""

from __future__ import annotations

import os
from typing import Any


def make_s3_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    config = Config(
        region_name=region,
        retries={"mode": "adaptive", "max_attempts": 8},
        connect_timeout=10,
        read_timeout=60,
    )
    kwargs: dict[str, Any] = {"config": config, "region_name": region}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.session.Session().client("s3", **kwargs)


def make_ec2_client(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "region_name": region,
        "config": Config(retries={"mode": "adaptive", "max_attempts": 8}),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.session.Session().client("ec2", **kwargs)
