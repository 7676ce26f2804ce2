"""The one place boto3 clients are made.

Every AWS call of the notebook side goes through `Clients`: region and profile
come from the `AWSBackend` settings (else boto3's usual chain), `AWS_ENDPOINT_URL`
is honoured for every service (so tests point everything at a local moto
server), and botocore's adaptive retry mode absorbs throttling. A failed call is
tagged with its IAM action (`exc.runctl_operation`, or `RunctlOperation` in a
ClientError's response) so `errors.explain` can name it in one line.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from ..errors import MissingDependency
from .errors import AWSCredentialsMissing, AWSError, error_code, translate

__all__ = ["AWSCredentialsMissing", "AWSError", "Clients", "error_code", "owner_from_arn"]

DEFAULT_REGION = "us-east-1"
RETRY_ATTEMPTS = 8


def _boto3() -> Any:
    try:
        import boto3
    except ImportError as exc:  # pragma: no cover - boto3 is a dependency
        raise MissingDependency("boto3") from exc
    return boto3


# one launch's later questions of who the caller is reuse the credentials check's answer
LAUNCH_IDENTITY_REUSE = 60.0


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
        self._identity: tuple[float, dict] | None = None  # (when, answer): identity(reuse=)

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
                c.meta.events.register("after-call", _tag_error_answer)
                c.meta.events.register("after-call-error", _tag_exception)
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

    def identity(self, reuse: float = 0.0) -> dict:
        """The caller's account and ARN; one line (errors.explain) when AWS says no.
        `reuse`: an answer these clients got that many seconds ago or less stands (one
        launch asked three times: the credentials check, the bucket's name, the launch)."""
        from botocore.exceptions import BotoCoreError, ClientError

        kept = self._identity
        if reuse > 0 and kept is not None and time.monotonic() - kept[0] <= reuse:
            return kept[1]
        try:
            answer = self.sts.get_caller_identity()
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc) from exc
        self._identity = (time.monotonic(), answer)
        return answer


def _action(model: Any) -> str:
    """The IAM action of an operation: `ec2:RunInstances` (S3's own names: errors.IAM_ACTION)."""
    service = model.service_model
    return f"{service.signing_name or service.endpoint_prefix}:{model.name}"


def _tag_error_answer(
    http_response: Any = None, parsed: Any = None, model: Any = None, **_: Any
) -> None:
    """after-call: an error answer (the ClientError's response to be) learns its IAM action."""
    if (
        model is not None
        and isinstance(parsed, dict)
        and getattr(http_response, "status_code", 200) >= 300
    ):
        parsed["RunctlOperation"] = _action(model)


def _tag_exception(exception: BaseException | None = None, **kwargs: Any) -> None:
    """after-call-error: no credentials, no connection... learn the call they stopped."""
    event = str(kwargs.get("event_name", ""))  # after-call-error.<service-id>.<Operation>
    if exception is not None and not getattr(exception, "runctl_operation", None):
        parts = event.split(".")
        if len(parts) == 3:
            try:
                exception.runctl_operation = f"{parts[1]}:{parts[2]}"  # type: ignore[attr-defined]
            except AttributeError:
                pass


def owner_from_arn(arn: str) -> str:
    """The user name in an IAM ARN: `.../user/ann` -> ann, an assumed role's session name, else the last part."""
    tail = arn.rsplit(":", 1)[-1]
    parts = tail.split("/")
    if parts[0] == "assumed-role" and len(parts) >= 3:
        return parts[-1]
    return parts[-1] or "unknown"
