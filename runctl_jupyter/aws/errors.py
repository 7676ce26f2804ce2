"""AWS errors as one line: the operation, AWS's error code, and what to do.

`explain(exc)` is the one translation of a botocore exception (a `ClientError`
answer or a `BotoCoreError` such as no credentials or no connection) into a line a
user acts on; the surfaces (`cli.py`, `magics.py`) and the few places that wrap an
AWS failure into a `RunctlError` call it. `Clients` (clients.py) tags each failed
call with its IAM action (`ec2:RunInstances`) through botocore's own event hooks, so
the line can name the permission `runctl aws policy` grants.

Nothing here imports botocore: exceptions are told apart by their class names, so
the magic can call it without loading boto3. No secret is ever put in a line: AWS's
own message is shortened and access key ids in it are masked.
"""

from __future__ import annotations

import re

from ..errors import RunctlError

DOCTOR = "then `runctl aws doctor`"
POLICY = "`runctl aws policy` prints the IAM policy runctl needs"

EXPIRED = {
    "ExpiredToken",
    "ExpiredTokenException",
    "TokenRefreshRequired",
    "RequestExpired",
}
REJECTED = {
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "AuthFailure",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "IncompleteSignature",
}
DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "Forbidden",
    "403",
    "AllAccessDisabled",
}
THROTTLED = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "ProvisionedThroughputExceededException",
}
SERVER = {
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "Unavailable",
    "ServerError",
    "500",
    "502",
    "503",
    "504",
}
# botocore's BotoCoreError classes, by name
NO_CREDENTIALS = {"NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"}
SSO_EXPIRED = {
    "TokenRetrievalError",
    "SSOTokenLoadError",
    "UnauthorizedSSOTokenError",
    "SSOError",
    "RefreshWithMFAUnsupportedError",
}
NO_REGION = {"NoRegionError", "InvalidRegionError"}
UNREACHABLE = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ProxyConnectionError",
    "SSLError",
    "HTTPClientError",
}
# API operations whose IAM action has another name (S3 names its actions apart)
IAM_ACTION = {
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:ListObjects": "s3:ListBucket",
    "s3:HeadObject": "s3:GetObject",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
    "s3:GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
    "s3:PutBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:GetBucketEncryption": "s3:GetEncryptionConfiguration",
    "s3:PutBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
    "s3:PutBucketTagging": "s3:PutBucketTagging",
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:PutBucketNotificationConfiguration": "s3:PutBucketNotification",
    "s3:GetBucketNotificationConfiguration": "s3:GetBucketNotification",
}
_KEY_ID = re.compile(
    r"\b((?:AKIA|ASIA|AIDA|AROA|AGPA|ANPA|ANVA|AIPA)[A-Z0-9]{4})[A-Z0-9]{8,}([A-Z0-9]{4})\b"
)
_LONG_BLOB = re.compile(r"[A-Za-z0-9+/=_-]{40,}")
_PERFORM = re.compile(r"perform:?\s+([a-z0-9-]+:[A-Za-z0-9*]+)")


class AWSError(RunctlError):
    """An AWS call failed in a way the user has to act on."""


class AWSCallFailed(AWSError):
    """A botocore exception as one line (`code`: AWS's error code or botocore's class)."""

    def __init__(self, line: str, code: str = ""):
        super().__init__(line)
        self.code = code


class AWSCredentialsMissing(AWSCallFailed):
    pass


def error_code(exc: BaseException | None) -> str:
    """The AWS error code of a botocore ClientError ('' for anything else, or None)."""
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_aws(exc: BaseException) -> bool:
    """A botocore/boto3 exception (told by its module: botocore need not be imported)."""
    return type(exc).__module__.split(".")[0] in ("botocore", "boto3", "s3transfer")


def redact(text: str, limit: int = 160) -> str:
    """AWS's message, one line, short: access key ids masked, encoded blobs dropped."""
    text = " ".join(str(text).split())
    text = _KEY_ID.sub(lambda m: f"{m.group(1)}...{m.group(2)}", text)
    text = _LONG_BLOB.sub("...", text)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def operation_of(exc: BaseException) -> str:
    """`ec2:RunInstances` when Clients tagged the call, else the bare operation name."""
    tagged = getattr(exc, "runctl_operation", None)
    if tagged:
        return str(tagged)
    response = getattr(exc, "response", None) or {}
    tagged = response.get("RunctlOperation")
    if tagged:
        return str(tagged)
    return str(getattr(exc, "operation_name", "") or "")


def _attempts(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    retries = response.get("ResponseMetadata", {}).get("RetryAttempts")
    return f", still after {int(retries) + 1} attempts" if retries else ""


def _denied_hint(op: str, message: str) -> str:
    named = _PERFORM.search(message)
    action = named.group(1) if named else (IAM_ACTION.get(op, op) if ":" in op else "")
    if not action:
        return f"your IAM identity is not allowed this call; {POLICY}: attach it, {DOCTOR}"
    from .user_policy import user_policy

    granted = {
        a
        for s in user_policy()["Statement"]
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    if action in granted:
        return (
            f"your IAM identity is not allowed {action} (or not on this resource); "
            f"attach the policy `runctl aws policy` prints, which grants it, {DOCTOR}"
        )
    return f"your IAM identity is not allowed {action}; allow it ({POLICY}), {DOCTOR}"


def _client_hint(code: str, op: str, message: str, exc: BaseException) -> str:
    if code in EXPIRED or ("expired" in message.lower() and code in REJECTED):
        if code == "RequestExpired":
            return "the request's time is off: check this machine's clock, " + DOCTOR
        return f"the AWS credentials have expired: run `aws sso login` (or renew them), {DOCTOR}"
    if code in REJECTED:
        return f"AWS does not accept these credentials: check them (`aws configure`, AWS_PROFILE), {DOCTOR}"
    if code in DENIED:
        return _denied_hint(op, message)
    if code in THROTTLED:
        return f"AWS throttled the calls{_attempts(exc)}: wait a minute and try again (fewer parallel runs make fewer calls)"
    status = (
        (getattr(exc, "response", None) or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    )
    if code in SERVER or (isinstance(status, int) and status >= 500):
        return (
            f"AWS failed on its side (HTTP {status or 500}){_attempts(exc)}: try again in a few "
            "minutes (https://health.aws.amazon.com lists outages)"
        )
    if op.endswith("AttachRolePolicy") and code == "NoSuchEntity":
        return (
            f"{redact(message)}: the AWS-managed policy is not in this account's partition; "
            "attach AmazonSSMManagedInstanceCore (or its equivalent) to role runctl-instance "
            "by hand, then `runctl aws setup` again"
        )
    return f"{redact(message) or 'AWS refused the call'}; `runctl aws doctor` checks the account"


def _botocore_hint(name: str, exc: BaseException) -> str:
    if name in NO_CREDENTIALS:
        return (
            "no usable AWS credentials: run `aws configure` (or `aws sso login` for an SSO "
            f"profile, or set AWS_PROFILE), {DOCTOR}"
        )
    if name in SSO_EXPIRED:
        return f"the AWS SSO session has expired: run `aws sso login`, {DOCTOR}"
    if name in NO_REGION:
        region = getattr(exc, "kwargs", {}).get("region_name")
        what = f"{region!r} is not an AWS region" if region is not None else "no AWS region set"
        return f"{what}: set c.AWSBackend.region, --region or AWS_DEFAULT_REGION (`aws configure set region us-east-1`)"
    if name in UNREACHABLE:
        where = getattr(exc, "kwargs", {}).get("endpoint_url") or "AWS"
        return (
            f"cannot reach {where}{_attempts(exc)}: check the network, a proxy or "
            f"AWS_ENDPOINT_URL, {DOCTOR}"
        )
    return f"{redact(str(exc))}; `runctl aws doctor` checks the setup"


def hint(exc: BaseException, operation: str | None = None) -> str:
    """What to do about a botocore exception (explain's line without the call and code)."""
    code = error_code(exc)
    if code:
        message = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Message", ""))
        return _client_hint(code, operation or operation_of(exc), message, exc)
    return _botocore_hint(type(exc).__name__, exc)


def actionable(exc: BaseException) -> bool:
    """Credentials, permissions, region, network, throttling or AWS's own failure: the
    user acts on the account or waits (a missing resource is not one of these)."""
    if not is_aws(exc):
        return False
    code = error_code(exc)
    kinds = (EXPIRED, REJECTED, DENIED, THROTTLED, SERVER)
    if code:
        return any(code in k for k in kinds)
    name = type(exc).__name__
    return any(name in k for k in (NO_CREDENTIALS, SSO_EXPIRED, NO_REGION, UNREACHABLE))


def explain(exc: BaseException, operation: str | None = None) -> str:
    """One line for a botocore exception: `ec2:RunInstances failed (UnauthorizedOperation): <what to do>`."""
    op = operation or operation_of(exc)
    code = error_code(exc) or type(exc).__name__
    return f"{op or 'AWS'} failed ({code}): {hint(exc, op)}"


def translate(exc: BaseException, operation: str | None = None) -> AWSError:
    """The botocore exception as an AWSError (raise it `from exc`: --debug shows both)."""
    code = error_code(exc) or type(exc).__name__
    cls = AWSCredentialsMissing if code in NO_CREDENTIALS else AWSCallFailed
    return cls(explain(exc, operation), code)
