"""`train --debug` on AWS: the notebook's machine reaches debugpy on the instance's
127.0.0.1 through an SSM port-forwarding session (AWS-StartPortForwardingSession),
never an inbound rule. StartSession goes to moto (answered by the fixture as the SSM API
reference shows, after the strict layer's StartSession rules); the session-manager-plugin
cannot be installed here, so a stand-in program on PATH records what it was given."""

from __future__ import annotations

import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

import pytest
from agent_helpers import busy_port
from conftest import SESSIONS

from runctl_jupyter.aws import port_forward, tags
from runctl_jupyter.aws.user_policy import user_policy
from runctl_jupyter.errors import RunctlError

# Stands in for AWS's session-manager-plugin (a Go program): answers --version, else
# writes its argv and the session it was handed, then waits to be ended.
PLUGIN = """#!{python}
import json, os, sys, time
if sys.argv[1:] == ["--version"]:
    print("1.2.707.0")
    sys.exit(0)
record = {{"argv": sys.argv, "session": os.environ.get(sys.argv[1], "")}}
with open({record!r}, "w") as f:
    json.dump(record, f)
time.sleep(600)
"""


def _managed_instance(aws) -> str:
    return aws.ec2.run_instances(
        ImageId=aws.test_amis["al2023-x86"],
        MinCount=1,
        MaxCount=1,
        InstanceType="t3.micro",
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": tags.MANAGED, "Value": "true"}]}
        ],
    )["Instances"][0]["InstanceId"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def plugin(tmp_path, monkeypatch) -> Path:
    """The stand-in plugin first on PATH; returns the file it records into."""
    bin_dir, record = tmp_path / "bin", tmp_path / "plugin-record.json"
    bin_dir.mkdir()
    program = bin_dir / port_forward.PLUGIN
    program.write_text(PLUGIN.format(python=sys.executable, record=str(record)))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


def test_the_session_is_started_and_the_plugin_gets_it_in_its_environment_never_argv(aws, plugin):
    instance = _managed_instance(aws)
    local = _free_port()
    tunnel = port_forward.start(aws, instance, 5678, local)
    try:
        deadline = time.monotonic() + 20
        while not plugin.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        record = json.loads(plugin.read_text())
    finally:
        tunnel.close()
    session = json.loads(record["session"])
    assert set(session) == {"SessionId", "TokenValue", "StreamUrl"}
    assert session["SessionId"] == tunnel.session_id
    assert session["StreamUrl"].startswith("wss://ssmmessages.us-east-1.amazonaws.com/")
    sent = {
        "Target": instance,
        "DocumentName": "AWS-StartPortForwardingSession",
        "Parameters": {"portNumber": ["5678"], "localPortNumber": [str(local)]},
        "Reason": "runctl train --debug",
    }
    # the AWS CLI's order: session (the variable's name), region, operation, profile,
    # the request, the endpoint
    assert record["argv"][1:] == [
        "AWS_SSM_START_SESSION_RESPONSE",
        "us-east-1",
        "StartSession",
        "",
        json.dumps(sent),
        os.environ["AWS_ENDPOINT_URL"],
    ]
    assert session["TokenValue"] not in " ".join(record["argv"])
    assert SESSIONS[tunnel.session_id] == {
        "Target": instance,
        "DocumentName": "AWS-StartPortForwardingSession",
        "Parameters": sent["Parameters"],
        "terminated": True,  # close() ended the session, not only the plugin
    }
    assert tunnel.process.poll() is not None


def test_the_terminal_command_asks_for_the_same_session(aws):
    line = port_forward.command("i-0123456789abcdef0", 5678, 15678, "eu-west-1")
    words = shlex.split(line)
    assert words[:3] == ["aws", "ssm", "start-session"]
    options = dict(zip(words[3::2], words[4::2]))
    assert options == {
        "--region": "eu-west-1",
        "--target": "i-0123456789abcdef0",
        "--document-name": "AWS-StartPortForwardingSession",
        "--parameters": '{"portNumber":["5678"],"localPortNumber":["15678"]}',
    }
    # what the line sends is a request the strict layer (AWS's documented rules) accepts
    instance = _managed_instance(aws)
    answer = aws.ssm.start_session(
        Target=instance,
        DocumentName=options["--document-name"],
        Parameters=json.loads(options["--parameters"]),
    )
    assert SESSIONS[answer["SessionId"]]["Parameters"] == json.loads(options["--parameters"])


def test_without_the_plugin_one_line_names_its_install_page_and_no_session_opens(
    aws, tmp_path, monkeypatch
):
    monkeypatch.setenv("PATH", str(tmp_path))  # no session-manager-plugin anywhere
    with pytest.raises(RunctlError) as caught:
        port_forward.start(aws, _managed_instance(aws), 5678, _free_port())
    message = str(caught.value)
    assert "\n" not in message
    assert "session-manager-plugin" in message and port_forward.INSTALL_PAGE in message
    assert SESSIONS == {}


def test_a_local_port_in_use_is_one_line_before_any_session(aws, plugin):
    with busy_port() as port:
        with pytest.raises(RunctlError) as caught:
            port_forward.start(aws, _managed_instance(aws), 5678, port)
    assert f"local port {port} is in use" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert SESSIONS == {} and not plugin.exists()


def test_a_stopped_instance_is_not_connected(aws, plugin):
    instance = _managed_instance(aws)
    aws.ec2.stop_instances(InstanceIds=[instance])
    with pytest.raises(Exception) as caught:
        port_forward.start(aws, instance, 5678, _free_port())
    assert caught.value.response["Error"]["Code"] == "TargetNotConnected"
    assert not plugin.exists()


def test_the_user_policy_allows_port_forwarding_only_to_managed_instances():
    policy = user_policy("123456789012", "us-east-1")
    grants = [s for s in policy["Statement"] if "ssm:StartSession" in s["Action"]]
    resources = {s["Resource"]: s.get("Condition") for s in grants}
    assert resources == {
        "arn:aws:ec2:us-east-1:123456789012:instance/*": {
            "StringEquals": {f"ssm:resourceTag/{tags.MANAGED}": "true"}
        },
        "arn:aws:ssm:us-east-1::document/AWS-StartPortForwardingSession": None,
    }
    ending = [s for s in policy["Statement"] if "ssm:TerminateSession" in s["Action"]]
    assert [s["Resource"] for s in ending] == [
        "arn:aws:ssm:us-east-1:123456789012:session/${aws:userid}-*"
    ]
    # and nothing opens an inbound port: no statement grants a rule to the world
    assert not any(
        "ec2:AuthorizeSecurityGroupIngress" in s["Action"] and "Condition" not in s
        for s in policy["Statement"]
    )


def test_a_waiting_aws_run_shows_the_command_forwards_the_port_and_ends_the_session(
    aws, plugin, tmp_path
):
    """The live view of a --debug run on AWS: the waiting rank's `debugger` event (as the
    instance sends it) gets the port-forwarding command, the tunnel is started with the
    plugin, launch.json maps the instance's run folder to the local mirror, and the
    session ends with the run."""
    from runctl_jupyter.backends.aws_target import write_target
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.display.debug_attach import attach_lines, launch_config
    from runctl_jupyter.display.run_panel import RunPanel
    from runctl_jupyter.runs.debugging import DebuggerView
    from runctl_jupyter.session import Session
    from runctl_jupyter.store.folders import create_run

    session = Session(config=Runctl(home=str(tmp_path / "home")))
    spec = create_run(
        session.store.runs_dir,
        kind="cell",
        code="x = 1\n",
        params={},
        experiment="e",
        name="dbg",
        project="p",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options={"debugger": True, "debug_rank": 0, "debug_port": 0, "debug_timeout": 300.0},
    )
    run_dir = session.store.run_dir(spec["run_id"])
    instance = _managed_instance(aws)
    write_target(run_dir, {"instance_id": instance, "region": "us-east-1", "bucket": "b"})
    port = _free_port()  # the port debugpy chose on the instance (--debug-port 0)
    remote_dir = f"/root/runctl/runs/{spec['run_id']}"
    event = {"seq": 4, "t": time.time(), "type": "debugger", "attempt": 1, "state": "waiting"}
    event.update(host="127.0.0.1", port=port, rank=0, timeout=300.0, pid=4242, run_dir=remote_dir)
    row = {"id": spec["run_id"], "name": "dbg", "status": "running", "backend": "aws"}
    panel = RunPanel(row, on_stop=lambda force: None, live=False)
    view = DebuggerView(session, spec["run_id"], panel)
    view.update(row, [event])
    try:
        lines = attach_lines(panel.debugger)
        command = port_forward.command(instance, port, port, "us-east-1")
        assert f"port forwarding (SSM, no inbound rule): {command}" in lines
        assert f"forwarding 127.0.0.1:{port} here to {instance} (SSM session)" in lines
        assert launch_config(panel.debugger)["pathMappings"] == [
            {"localRoot": str(run_dir), "remoteRoot": remote_dir}
        ]
        wait = time.monotonic() + 20
        while not plugin.exists() and time.monotonic() < wait:
            time.sleep(0.05)
        (session_id,) = SESSIONS
        assert SESSIONS[session_id]["Parameters"] == {
            "portNumber": [str(port)],
            "localPortNumber": [str(port)],
        }
        assert not SESSIONS[session_id]["terminated"]
        process = view.tunnel.process
    finally:
        view.finish({**row, "status": "succeeded"}, {})
    assert SESSIONS[session_id]["terminated"] and process.poll() is not None


def test_a_debug_runs_bundle_pins_debugpy_and_ships_the_run_side(tmp_path):
    """The instance installs debugpy for a --debug run (pinned to this machine's), and
    gets agent/debugger.py; a run without --debug installs no debugpy."""
    import importlib.metadata
    import io
    import tarfile

    from runctl_jupyter.aws import bundle
    from runctl_jupyter.store.folders import create_run

    def folder(options: dict) -> tuple[Path, dict]:
        spec = create_run(
            tmp_path / f"runs-{len(options)}",
            kind="cell",
            code="import json\nx = 1\n",
            params={},
            experiment="e",
            name="n",
            project="p",
            owner="o",
            backend="aws",
            workdir=str(tmp_path),
            options=options,
        )
        return tmp_path / f"runs-{len(options)}" / spec["run_id"], spec

    run_dir, spec = folder({"debugger": True, "debug_rank": 0, "debug_port": 5678})
    data, requirements = bundle.build(run_dir, spec, {"kind": "s3"}, "auto")
    assert f"debugpy=={importlib.metadata.version('debugpy')}" in requirements
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert "pkg/runctl_jupyter/agent/debugger.py" in tar.getnames()
    plain_dir, plain = folder({})
    assert not [r for r in bundle.requirements_for(plain_dir, plain, "auto") if "debugpy" in r]
