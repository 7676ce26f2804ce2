"""Run Command: send a shell script to one instance and wait for its result."""

from __future__ import annotations

import time

from .backoff import FIRST, delays, pause
from .clients import AWSError, Clients, error_code

DOCUMENT = "AWS-RunShellScript"
DONE = {"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"}
QUICK_SECONDS = 120.0  # a command's end is seen within QUICK_CAP seconds this long
QUICK_CAP = 1.0


class CommandFailed(AWSError):
    pass


def send(
    clients: Clients,
    instance_id: str,
    script: str,
    comment: str = "runctl",
    timeout: int = 3600,
    delivery_timeout: int = 600,
) -> str:
    """Send `script` to exactly `instance_id` (InstanceIds, no Targets); returns the command id."""
    resp = clients.ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName=DOCUMENT,
        Comment=comment[:100],
        TimeoutSeconds=max(30, int(delivery_timeout)),
        Parameters={"commands": [script], "executionTimeout": [str(timeout)]},
    )
    return resp["Command"]["CommandId"]


def wait(
    clients: Clients,
    command_id: str,
    instance_id: str,
    timeout: float = 1800.0,
    poll: float = 2.0,
    what: str = "command",
) -> dict:
    """Poll the invocation until it ends; raise CommandFailed with its output tail unless it succeeded."""
    started = time.monotonic()
    deadline = started + timeout
    # the start of a run waits on this command: its end is seen within a second for two
    # minutes (a bootstrap), then the polls grow to `poll` x 5 (a long package install)
    quick = delays(QUICK_CAP, first=min(poll, FIRST))
    slow = delays(min(10.0, max(poll, FIRST) * 5), first=QUICK_CAP)
    while True:
        try:
            inv = clients.ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
        except Exception as exc:
            if (
                error_code(exc) != "InvocationDoesNotExist"
            ):  # not registered yet: AWS is eventually consistent
                raise
            inv = {"Status": "Pending"}
        status = inv.get("Status")
        if status == "Success":
            return inv
        if status in DONE:
            tail = (
                inv.get("StandardErrorContent") or inv.get("StandardOutputContent") or ""
            ).strip()
            tail = " | ".join(tail.splitlines()[-3:])[-400:]
            raise CommandFailed(
                f"the {what} on {instance_id} ended {status} (exit {inv.get('ResponseCode')}): {tail or 'no output'}; "
                f"see `aws ssm get-command-invocation --command-id {command_id} --instance-id {instance_id}`"
            )
        if time.monotonic() > deadline:
            raise CommandFailed(
                f"the {what} on {instance_id} did not finish in {timeout:.0f} s (command {command_id})"
            )
        pause(next(quick if time.monotonic() - started < QUICK_SECONDS else slow), deadline)
