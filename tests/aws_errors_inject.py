"""Injecting AWS errors into every client a command makes (tests/aws/test_errors_*.py):
botocore's `before-send` answered with a real-shaped HTTP error, so botocore parses and
retries it as it would AWS's; retries without their sleeps; a shell's environment."""

from __future__ import annotations

import json
from typing import Any

import pytest

from runctl_jupyter import cli
from runctl_jupyter.aws.clients import Clients


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_: Any):
        yield self.body


class Inject:
    """Every client made from now on (the CLI's and the magic's own) answers
    `service.Operation` with AWS's error `code` at HTTP `status`."""

    def __init__(self, monkeypatch, operation: str, code: str, status: int = 400, message=None):
        self.service, self.operation = operation.split(".")
        self.code, self.status = code, status
        self.message = message or f"injected {code}"
        self.count = 0
        original = Clients.client

        def client(clients: Clients, service: str) -> Any:
            c = original(clients, service)
            if service == self.service:
                model = c.meta.service_model
                c.meta.events.register(
                    f"before-send.{model.service_id.hyphenize()}.{self.operation}",
                    lambda **_: self._answer(model.protocol),
                    unique_id="inject",
                )
            return c

        monkeypatch.setattr(Clients, "client", client)

    def _answer(self, protocol: str) -> Any:
        from botocore.awsrequest import AWSResponse

        self.count += 1
        code, msg = self.code, self.message
        if protocol == "ec2":
            body = f"<Response><Errors><Error><Code>{code}</Code><Message>{msg}</Message></Error></Errors><RequestID>x</RequestID></Response>"
        elif protocol == "query":
            body = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{msg}</Message></Error><RequestId>x</RequestId></ErrorResponse>"
        elif protocol == "rest-xml":
            body = f"<Error><Code>{code}</Code><Message>{msg}</Message><RequestId>x</RequestId></Error>"
        else:
            body = json.dumps({"__type": code, "message": msg})
        return AWSResponse(
            "http://127.0.0.1/", self.status, {"x-amzn-requestid": "x"}, _Raw(body.encode())
        )


@pytest.fixture
def inject(monkeypatch):
    def make(operation: str, code: str, status: int = 400, message: str | None = None) -> Inject:
        return Inject(monkeypatch, operation, code, status, message)

    return make


@pytest.fixture
def no_wait(monkeypatch):
    """botocore's retries, every one of them, without their sleeps (backoff, rate limit)."""
    from botocore.retries import bucket, standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    monkeypatch.setattr(bucket.TokenBucket, "acquire", lambda self, amount=1, block=True: True)


@pytest.fixture
def shell_env(aws_clients_env, tmp_path, monkeypatch):
    """A clean runctl home and an IPython profile of our own (c.Runctl.debug unset)."""
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.chdir(tmp_path)
    return aws_clients_env


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def one_line(capsys, argv: list[str], *expected: str, code: int = 2) -> str:
    """Run `runctl ARGV`: exit `code`, exactly one line on stderr, no traceback, saying
    `expected` (a launch's `[runctl] provisioning: ...` progress lines aside)."""
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    lines = [x for x in err.strip("\n").splitlines() if not x.startswith("[runctl] ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("runctl: error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]
