"""`--debug` and c.Runctl.debug show an AWS error's traceback; the magic turns an AWS
error into a one-line UsageError (issue 14)."""

from __future__ import annotations

import aws_errors_inject as fx
import pytest

from runctl_jupyter import cli

# the shared fixtures (aws_errors_inject.py), used by name
inject, no_credentials, no_wait, shell_env = fx.inject, fx.no_credentials, fx.no_wait, fx.shell_env


def test_debug_flag_shows_the_traceback(shell_env, inject, capsys):
    inject("iam.AttachRolePolicy", "NoSuchEntity", 404)
    assert cli.main(["--debug", "aws", "setup"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "botocore" in err
    assert err.strip().splitlines()[-1].startswith("runctl: error: iam:AttachRolePolicy failed")


def test_debug_setting_shows_the_traceback(shell_env, inject, capsys, tmp_path):
    profile = tmp_path / "ipython" / "profile_default"
    profile.mkdir(parents=True)
    (profile / "ipython_config.py").write_text("c.Runctl.debug = True\n")
    inject("sts.GetCallerIdentity", "ExpiredToken", 403)
    assert cli.main(["resources"]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ClientError" in err
    assert "`aws sso login`" in err.strip().splitlines()[-1]


# -- the notebook ---------------------------------------------------------------------


@pytest.fixture
def ip(shell_env, tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from runctl_jupyter.magics import RunctlMagics

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "runctl_jupyter")
    magics = RunctlMagics(shell=shell)
    shell.register_magics(magics)
    yield shell
    shell.run_line_magic("config", "Runctl.debug = False")


def test_the_magic_raises_a_one_line_usage_error(ip, inject, capsys):
    from IPython.core.error import UsageError

    inject("iam.AttachRolePolicy", "NoSuchEntity", 404)
    with pytest.raises(UsageError) as raised:
        ip.run_line_magic("runctl", "aws setup")
    text = str(raised.value)
    assert "\n" not in text and "iam:AttachRolePolicy failed (NoSuchEntity)" in text
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_the_magic_doctor_prints_the_report_then_one_line(ip, inject, capsys):
    from IPython.core.error import UsageError

    inject("sts.GetCallerIdentity", "ExpiredToken", 403)
    with pytest.raises(UsageError) as raised:
        ip.run_line_magic("runctl", "aws doctor")
    assert "[FAIL] credentials" in capsys.readouterr().out
    assert "\n" not in str(raised.value) and "aws sso login" in str(raised.value)


def test_the_magic_with_debug_raises_the_error_itself(ip, inject):
    from botocore.exceptions import ClientError

    inject("iam.AttachRolePolicy", "NoSuchEntity", 404)
    with pytest.raises(ClientError):
        ip.run_line_magic("runctl", "--debug aws setup")
    ip.run_line_magic("config", "Runctl.debug = True")
    with pytest.raises(ClientError):
        ip.run_line_magic("runctl", "aws setup")
