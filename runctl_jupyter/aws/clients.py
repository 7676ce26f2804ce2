"""The one place boto3 clients are made.

Every AWS call of the notebook side goes through `Clients`: region and profile
come from the `AWSBackend` settings (else boto3's usual chain), `AWS_ENDPOINT_URL`
is honoured for every service (so tests point everything at a local moto
server), and botocore's adaptive retry mode absorbs throttling.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from ..errors import MissingDependency, RunctlError


class AWSError(RunctlError):
    """An AWS call failed in a way the user has to act on."""


class AWSCredentialsMissing(AWSError):
    pass


DEFAULT_REGION = "us-east-1"
RETRY_ATTEMPTS = 8


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise MissingDependency("boto3") from exc
    return boto3


class Clients:
    """boto3 clients for one region/profile, made once and shared (clients are thread-safe).

    `calls` counts the API calls made through these clients, by "service.Operation":
    the streaming budget (docs/aws.md) is checked against it.
    """

    def __init__(
        self,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ):
        boto3 = _boto3()
        from botocore.config import Config

        self.profile = profile or None
        self.session = boto3.session.Session(profile_name=self.profile)
        self.region = (
            region or self.session.region_name or os.environ.get("AWS_REGION") or DEFAULT_REGION
        )
        self.endpoint_url = endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        self.config = Config(
            region_name=self.region,
            retries={"mode": "adaptive", "max_attempts": RETRY_ATTEMPTS},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def client(self, service: str) -> Any:
        with self._lock:
            c = self._clients.get(service)
            if c is None:
                kwargs: dict[str, Any] = {"config": self.config, "region_name": self.region}
                endpoint = (
                    os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or self.endpoint_url
                )
                if endpoint:
                    kwargs["endpoint_url"] = endpoint
                c = self.session.client(service, **kwargs)
                c.meta.events.register("before-call", self._count)
                self._clients[service] = c
            return c

    def _count(self, model: Any = None, **_: Any) -> None:
        if model is None:
            return
        key = f"{model.service_model.service_name}.{model.name}"
        self.calls[key] = self.calls.get(key, 0) + 1

    def total_calls(self, prefix: str = "") -> int:
        return sum(n for k, n in self.calls.items() if k.startswith(prefix))

    @property
    def ec2(self) -> Any:
        return self.client("ec2")

    @property
    def s3(self) -> Any:
        return self.client("s3")

    @property
    def ssm(self) -> Any:
        return self.client("ssm")

    @property
    def iam(self) -> Any:
        return self.client("iam")

    @property
    def sts(self) -> Any:
        return self.client("sts")

    def identity(self) -> dict:
        """The caller's account and ARN; a one-line error when there are no credentials."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        try:
            return self.sts.get_caller_identity()
        except NoCredentialsError as exc:
            raise AWSCredentialsMissing(
                "no AWS credentials found; run `aws configure` or set AWS_PROFILE, then `runctl aws doctor`"
            ) from exc
        except ClientError as exc:
            raise AWSError(
                f"AWS rejected the credentials ({error_code(exc)}); check them with `aws sts get-caller-identity`"
            ) from exc
        except BotoCoreError as exc:
            raise AWSError(
                f"cannot reach AWS STS ({exc}); check the network or AWS_ENDPOINT_URL"
            ) from exc


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def owner_from_arn(arn: str) -> str:
    """The user name in an IAM ARN: `.../user/ann` -> ann, an assumed role's session name, else the last part."""
    tail = arn.rsplit(":", 1)[-1]
    parts = tail.split("/")
    if parts[0] == "assumed-role" and len(parts) >= 3:
        return parts[-1]
    return parts[-1] or "unknown"
