"""A local port to a port on an instance's 127.0.0.1: an SSM port-forwarding session.

`train --debug` on AWS: debugpy listens on the instance's 127.0.0.1 only, and the
notebook's machine reaches it through Session Manager's `AWS-StartPortForwardingSession`
document (no inbound rule, no SSH), as `aws ssm start-session` does: `StartSession`
through boto3, then the session-manager-plugin given the session (its token in the
`AWS_SSM_START_SESSION_RESPONSE` environment variable, never on a command line) and
the request. The plugin cannot be installed with pip: without it, one line names
its install page, and `command()` is what the user runs once it is there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
from typing import Any

from ..errors import RunctlError

DOCUMENT = "AWS-StartPortForwardingSession"
PLUGIN = "session-manager-plugin"
INSTALL_PAGE = (
    "https://docs.aws.amazon.com/systems-manager/latest/userguide/"
    "session-manager-working-with-install-plugin.html"
)
# Plugins newer than this read the session from an environment variable (the AWS CLI's
# own test, awscli/customizations/sessionmanager.py); older ones only from argv.
LAST_PLUGIN_WITHOUT_ENV = (1, 2, 497, 0)
RESPONSE_ENV = "AWS_SSM_START_SESSION_RESPONSE"


def request(instance_id: str, remote_port: int, local_port: int) -> dict:
    """StartSession's parameters (the SSM API reference: Target, DocumentName, Parameters)."""
    return {
        "Target": instance_id,
        "DocumentName": DOCUMENT,
        "Parameters": {"portNumber": [str(remote_port)], "localPortNumber": [str(local_port)]},
        "Reason": "runctl train --debug",
    }


def command(instance_id: str, remote_port: int, local_port: int, region: str) -> str:
    """The `aws ssm start-session` line that opens the same session (for a terminal)."""
    parameters = request(instance_id, remote_port, local_port)["Parameters"]
    return shlex.join(
        [
            "aws",
            "ssm",
            "start-session",
            "--region",
            region,
            "--target",
            instance_id,
            "--document-name",
            DOCUMENT,
            "--parameters",
            json.dumps(parameters, separators=(",", ":")),
        ]
    )


def plugin_problem() -> str | None:
    """None when a usable session-manager-plugin is on PATH, else what to do (one line)."""
    path = shutil.which(PLUGIN)
    if path is None:
        return f"port forwarding needs the {PLUGIN} (not on PATH): install it ({INSTALL_PAGE})"
    version = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout.strip()
    numbers = tuple(int(n) for n in re.findall(r"\d+", version)[:4])
    if numbers <= LAST_PLUGIN_WITHOUT_ENV:
        return (
            f"the {PLUGIN} {version or '(no version)'} passes the session's token on its "
            f"command line: update it ({INSTALL_PAGE})"
        )
    return None


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def plugin_argv(clients: Any, sent: dict) -> list[str]:
    """The plugin's arguments, in the AWS CLI's order: the session (by the name of the
    variable holding it), region, operation, profile, the request, the endpoint."""
    ssm = clients.ssm
    return [
        PLUGIN,
        RESPONSE_ENV,
        ssm.meta.region_name,
        "StartSession",
        clients.profile or "",
        json.dumps(sent),
        ssm.meta.endpoint_url,
    ]


class Tunnel:
    """A running port-forwarding session: the plugin's process and the SSM session."""

    def __init__(self, clients: Any, session_id: str, process: subprocess.Popen):
        self.clients, self.session_id, self.process = clients, session_id, process

    def close(self) -> None:
        """End the plugin and the session (TerminateSession: no session left open)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.clients.ssm.terminate_session(SessionId=self.session_id)


def start(clients: Any, instance_id: str, remote_port: int, local_port: int) -> Tunnel:
    """Open the session and start the plugin (no shell). RunctlError, one line, when the
    plugin is missing or the local port is taken: nothing is started then."""
    problem = plugin_problem()
    if problem:
        raise RunctlError(problem)
    if not port_free(local_port):
        raise RunctlError(
            f"local port {local_port} is in use here: free it, or forward to another port "
            f"with {command(instance_id, remote_port, local_port + 1, clients.region)}"
        )
    sent = request(instance_id, remote_port, local_port)
    answer = clients.ssm.start_session(**sent)
    env = dict(os.environ)
    env[RESPONSE_ENV] = json.dumps(
        {key: answer[key] for key in ("SessionId", "TokenValue", "StreamUrl")}
    )
    try:
        process = subprocess.Popen(
            plugin_argv(clients, sent),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the notebook's terminal is not for it
        )
    except OSError as exc:
        clients.ssm.terminate_session(SessionId=answer["SessionId"])
        raise RunctlError(f"cannot start the {PLUGIN}: {exc} ({INSTALL_PAGE})") from None
    return Tunnel(clients, answer["SessionId"], process)
