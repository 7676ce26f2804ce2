"""`aws/errors.py`: each kind of AWS failure as one line (call, AWS's code, what to do),
from botocore's own exception classes; nothing secret in a line."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
    TokenRetrievalError,
)

from runctl_jupyter.aws.errors import AWSCallFailed, AWSCredentialsMissing, explain, translate


def _client_error(code: str, op: str, message: str = "", status: int = 400, retries: int = 0):
    response = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "RetryAttempts": retries},
        "RunctlOperation": op,
    }
    return ClientError(response, op.split(":")[1])


def _one_line(exc: BaseException, *expected: str) -> str:
    line = explain(exc)
    assert "\n" not in line and len(line) < 400, line
    for text in expected:
        assert text in line, line
    return line


@pytest.mark.parametrize("code", ["Throttling", "ThrottlingException", "RequestLimitExceeded"])
def test_throttled_past_retries(code):
    exc = _client_error(code, "ssm:SendCommand", status=400, retries=8)
    _one_line(exc, f"ssm:SendCommand failed ({code})", "still after 9 attempts", "wait a minute")


@pytest.mark.parametrize(("code", "status"), [("InternalError", 500), ("ServiceUnavailable", 503)])
def test_a_5xx(code, status):
    exc = _client_error(code, "ec2:RunInstances", status=status, retries=8)
    _one_line(exc, f"({code})", f"HTTP {status}", "still after 9 attempts", "try again")


@pytest.mark.parametrize(
    ("code", "op", "action"),
    [
        ("UnauthorizedOperation", "ec2:RunInstances", "ec2:RunInstances"),
        ("AccessDeniedException", "ssm:SendCommand", "ssm:SendCommand"),
        ("AccessDenied", "s3:HeadBucket", "s3:ListBucket"),  # S3's IAM action name
    ],
)
def test_access_denied_names_the_action_runctl_aws_policy_grants(code, op, action):
    exc = _client_error(code, op, "You are not authorized to perform this operation.", 403)
    _one_line(exc, f"({code})", f"not allowed {action}", "`runctl aws policy`", "aws doctor")


def test_access_denied_prefers_the_action_aws_names():
    exc = _client_error(
        "UnauthorizedOperation",
        "ec2:RunInstances",
        "User: arn:aws:iam::123456789012:user/ann is not authorized to perform: iam:PassRole",
        403,
    )
    _one_line(exc, "not allowed iam:PassRole", "runctl aws policy")


def test_expired_credentials_and_an_expired_sso_session():
    _one_line(_client_error("ExpiredToken", "sts:GetCallerIdentity"), "`aws sso login`")
    _one_line(_client_error("ExpiredTokenException", "pricing:GetProducts"), "`aws sso login`")
    sso = TokenRetrievalError(provider="sso", error_msg="Token has expired and refresh failed")
    _one_line(sso, "TokenRetrievalError", "SSO session has expired", "`aws sso login`")


def test_no_credentials_is_its_own_class():
    error = translate(NoCredentialsError())
    assert isinstance(error, AWSCredentialsMissing) and error.code == "NoCredentialsError"
    assert "`aws configure`" in str(error)


def test_no_region_from_botocore_itself(monkeypatch, tmp_path):
    import boto3

    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(NoRegionError) as raised:
        boto3.session.Session().client("ec2")
    _one_line(raised.value, "(NoRegionError)", "no AWS region set", "c.AWSBackend.region")


@pytest.mark.parametrize(
    "exc",
    [
        EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"),
        ConnectTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"),
        ReadTimeoutError(endpoint_url="https://ec2.us-east-1.amazonaws.com/"),
    ],
)
def test_unreachable(exc):
    exc.runctl_operation = "ec2:DescribeInstances"
    line = _one_line(exc, "ec2:DescribeInstances failed", type(exc).__name__, "cannot reach")
    assert "https://ec2.us-east-1.amazonaws.com/" in line


def test_no_secret_in_a_line():
    token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD" + "A" * 60
    exc = _client_error(
        "SignatureDoesNotMatch",
        "s3:PutObject",
        f"Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3 token {token}",
        403,
    )
    line = _one_line(exc, "(SignatureDoesNotMatch)", "`aws configure`")
    assert "AKIAIOSFODNN7EXAMPLE" not in line and token[:40] not in line


def test_an_unknown_code_keeps_awss_message_short():
    exc = _client_error("InvalidParameterCombination", "ec2:RunInstances", "word " * 100)
    line = _one_line(exc, "(InvalidParameterCombination)", "word word", "runctl aws doctor")
    assert isinstance(translate(exc), AWSCallFailed) and len(line) < 300
