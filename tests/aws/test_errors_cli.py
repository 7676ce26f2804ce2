"""AWS errors reach the shell as one line and a non-zero exit, and the notebook as a
one-line UsageError (issue 14): each error kind injected for real (no credentials, a
bad region, a closed port) or answered by the moto server's side of botocore
(`before-send`, a real-shaped HTTP error answer that botocore parses and retries as
AWS's), through every command that calls AWS. (The magic and --debug: test_errors_magic.py)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import aws_errors_inject as fx
import pytest
from aws_errors_inject import one_line

from runctl_jupyter import cli
from runctl_jupyter.aws.setup import setup

# the shared fixtures (aws_errors_inject.py), used by name
inject, no_credentials, no_wait, shell_env = fx.inject, fx.no_credentials, fx.no_wait, fx.shell_env

ROOT = Path(__file__).resolve().parents[2]
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def test_no_credentials_resources_and_cleanup(shell_env, no_credentials, capsys):
    hint = "`aws configure`"
    one_line(capsys, ["resources"], "sts:GetCallerIdentity", "NoCredentialsError", hint)
    one_line(capsys, ["cleanup", "--yes"], "NoCredentialsError", hint, "runctl aws doctor")


def test_no_credentials_in_a_real_shell(tmp_path):
    """The shell command itself: empty environment, no config file."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "RUNCTL_HOME": str(tmp_path / "home"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never AWS; unused: no credentials first
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-m", "runctl_jupyter", "aws", "setup"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip("\n").splitlines()
    assert len(lines) == 1, done.stderr
    assert "NoCredentialsError" in lines[0] and "aws configure" in lines[0]


@pytest.mark.parametrize("code", ["ExpiredToken", "ExpiredTokenException"])
def test_expired_credentials_say_sso_login(shell_env, inject, capsys, code):
    inject(
        "sts.GetCallerIdentity", code, 403, "The security token included in the request is expired"
    )
    one_line(capsys, ["aws", "setup"], code, "expired", "`aws sso login`")


def test_rejected_credentials_mask_the_key_and_never_show_the_secret(
    shell_env, inject, capsys, monkeypatch
):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    inject(
        "sts.GetCallerIdentity",
        "InvalidClientTokenId",
        403,
        f"The security token included in the request is invalid: key {KEY_ID}",
    )
    line = one_line(capsys, ["resources"], "InvalidClientTokenId", "`aws configure`")
    assert KEY_ID not in line and SECRET not in line


def test_a_bad_region_says_how_to_set_one(shell_env, capsys, monkeypatch):
    # the environment's region (`--region` words are checked by the parser first)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "no such region!")
    one_line(
        capsys,
        ["resources"],
        "InvalidRegionError",
        "'no such region!' is not an AWS region",
        "AWS_DEFAULT_REGION",
    )


def test_unreachable_endpoint_after_retries(shell_env, no_wait, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    one_line(
        capsys,
        ["aws", "setup"],
        "EndpointConnectionError",
        f"cannot reach http://127.0.0.1:{port}",
        "AWS_ENDPOINT_URL",
    )


def test_throttled_past_retries(shell_env, inject, no_wait, capsys):
    throttle = inject("ec2.DescribeVpcs", "RequestLimitExceeded", 503, "Request limit exceeded.")
    one_line(
        capsys, ["aws", "setup"], "ec2:DescribeVpcs", "RequestLimitExceeded", "attempts", "wait"
    )
    assert throttle.count > 1  # botocore retried before giving up


@pytest.mark.parametrize(("code", "status"), [("InternalError", 500), ("ServiceUnavailable", 503)])
def test_a_5xx_after_retries(shell_env, inject, no_wait, capsys, code, status):
    failing = inject("iam.CreateRole", code, status)
    one_line(capsys, ["aws", "setup"], "iam:CreateRole", code, f"HTTP {status}", "try again")
    assert failing.count > 1


def test_setup_without_the_managed_policy_is_one_line(shell_env, inject, capsys):
    inject(
        "iam.AttachRolePolicy",
        "NoSuchEntity",
        404,
        "Policy arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore does not exist or is not attachable.",
    )
    line = one_line(
        capsys,
        ["aws", "setup"],
        "iam:AttachRolePolicy",
        "NoSuchEntity",
        "AmazonSSMManagedInstanceCore",
        "runctl-instance",
        "`runctl aws setup` again",
    )
    assert len(line) < 400


def test_access_denied_names_the_action_from_awss_message(shell_env, inject, capsys):
    inject(
        "iam.GetRole",
        "AccessDenied",
        403,
        "User: arn:aws:iam::123456789012:user/ann is not authorized to perform: iam:GetRole "
        "on resource: role runctl-instance",
    )
    one_line(
        capsys, ["aws", "setup"], "AccessDenied", "not allowed iam:GetRole", "runctl aws policy"
    )


def test_doctor_reports_then_one_line(shell_env, inject, capsys):
    setup(shell_env)
    inject("iam.GetInstanceProfile", "AccessDenied", 403)
    assert cli.main(["aws", "doctor"]) == 2
    captured = capsys.readouterr()
    assert "[FAIL] instance profile" in captured.out and "[ok ] bucket" in captured.out
    lines = captured.err.strip("\n").splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert "1 problem(s) (instance profile)" in lines[0]
    assert "not allowed iam:GetInstanceProfile" in lines[0] and "runctl aws policy" in lines[0]


def test_policy_still_prints_without_credentials(shell_env, inject, capsys):
    """`aws policy` is for an admin before the user has access: an AWS error is no error."""
    inject("sts.GetCallerIdentity", "ExpiredToken", 403)
    assert cli.main(["aws", "policy"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["Statement"] and captured.err == ""


def test_cost_says_live_figures_are_unavailable_in_one_line(shell_env, inject, capsys):
    inject("ec2.DescribeInstances", "UnauthorizedOperation", 403)
    assert cli.main(["cost"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "live AWS figures unavailable (UnauthorizedOperation)" in captured.out


def test_cost_price_falls_back_with_the_code(shell_env, inject, capsys):
    inject("pricing.GetProducts", "AccessDeniedException", 400)
    assert cli.main(["cost", "price", "t3.micro", "--region", "us-east-1"]) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "AccessDeniedException" in captured.out


def _script(tmp_path: Path) -> str:
    script = tmp_path / "train.py"
    script.write_text("print('hello')\n")
    return str(script)


def test_train_on_aws_access_denied(shell_env, inject, capsys, tmp_path):
    setup(shell_env)
    inject("ec2.RunInstances", "UnauthorizedOperation", 403, "You are not authorized. " + "x" * 300)
    line = one_line(
        capsys,
        [
            "train",
            _script(tmp_path),
            "--backend",
            "aws",
            "--instance-type",
            "t3.micro",
            "--on-demand",
            "--pip",
            "none",
            "--detach",
        ],
        "could not start run",
        "ec2:RunInstances failed (UnauthorizedOperation)",
        "not allowed ec2:RunInstances",
        "`runctl aws policy`",
    )
    assert "x" * 40 not in line  # AWS's encoded blob stays out


def _aws_run(shell_env, tmp_path: Path, status: str) -> str:
    """A run of this home whose target is a moto instance (what a launch leaves behind)."""
    from runctl_jupyter.store.folders import write_spec
    from runctl_jupyter.store.index import Store

    iid = shell_env.ec2.run_instances(
        ImageId=shell_env.test_amis["al2023-x86"], InstanceType="t3.micro", MinCount=1, MaxCount=1
    )["Instances"][0]["InstanceId"]
    store = Store(Path(os.environ["RUNCTL_HOME"]))
    spec = {
        "format": 1,
        "run_id": "a1b2c3d4e5",
        "name": "aws-run",
        "experiment": "e",
        "project": "default",
        "owner": "ann",
        "tags": [],
        "kind": "script",
        "entry": "code.py",
        "args": [],
        "params": {},
        "objects": [],
        "workdir": str(tmp_path),
        "python": sys.executable,
        "metrics": [],
        "backend": "aws",
        "target": {"instance_id": iid, "region": "us-east-1", "bucket": "b", "prefix": "runctl/"},
        "options": {},
        "created": 1764380000.0,
    }
    store.run_dir(spec["run_id"]).mkdir(parents=True)
    write_spec(store.run_dir(spec["run_id"]), spec)
    store.add_run(spec)
    store.set_status(spec["run_id"], status)
    return spec["run_id"]


def test_stop_an_aws_run_access_denied(shell_env, inject, capsys, tmp_path):
    run_id = _aws_run(shell_env, tmp_path, "running")
    inject("ec2.DescribeInstances", "UnauthorizedOperation", 403)
    one_line(
        capsys, ["stop", run_id], "ec2:DescribeInstances", "UnauthorizedOperation", "aws policy"
    )


def test_resume_an_aws_run_expired(shell_env, inject, capsys, tmp_path):
    run_id = _aws_run(shell_env, tmp_path, "stopped")
    inject("sts.GetCallerIdentity", "ExpiredToken", 403)
    one_line(capsys, ["resume", run_id, "--detach"], "ExpiredToken", "`aws sso login`")
