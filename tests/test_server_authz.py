"""/runctl/api/ is authorized, not only authenticated: a real jupyter_server with an
Authorizer that makes every user read-only (the shape a deployment with fine-grained
permissions uses) lists and shows runs, but refuses stop and open-record with 403;
a real local run keeps running and no record copy is written."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from jupyter_server.auth.authorizer import Authorizer
from test_server import error_of, get_json, start_local_run, wait_status

from runctl_jupyter.backends.local import agent_info
from runctl_jupyter.procs import process_start

pytest_plugins = ["pytest_jupyter.jupyter_server"]


class ReadOnlyAuthorizer(Authorizer):
    """docs/labextension.md's example: only admins (not the test's user) stop runs."""

    admins = {"ann"}
    asked: list[tuple[str, str]] = []

    def is_authorized(self, handler, user, action, resource) -> bool:
        ReadOnlyAuthorizer.asked.append((action, resource))
        if resource == "runctl" and action != "read":
            return user.username in self.admins
        return True


@pytest.fixture
def jp_server_config(home: Path) -> dict:
    return {
        "ServerApp": {
            "jpserver_extensions": {"runctl_jupyter": True},
            "authorizer_class": ReadOnlyAuthorizer,
        }
    }


def _agent_alive(run_dir: Path) -> bool:
    info = agent_info(run_dir)
    return info is not None and process_start(info["pid"]) == info["proc_start"]


async def test_a_read_only_user_lists_runs_but_cannot_stop_one(jp_fetch, home):
    run_id = start_local_run(
        "import time\nfor i in range(600):\n    runctl.log(step=i, x=i)\n    time.sleep(0.1)\n",
        name="forever",
    )
    run_dir = home / "runs" / run_id
    try:
        await wait_status(jp_fetch, run_id, {"running"})
        listed = await get_json(jp_fetch, "runs")
        assert [r["id"] for r in listed["runs"]] == [run_id]
        assert ("read", "runctl") in ReadOnlyAuthorizer.asked
        code, body = await error_of(jp_fetch, "runs", run_id, "stop", method="POST", body="{}")
        assert code == 403 and body["message"].startswith("this user may not stop runs here")
        await asyncio.sleep(1.5)  # a stop that got through would have signalled by now
        assert not (run_dir / "control.json").exists()
        assert _agent_alive(run_dir)
        assert (await get_json(jp_fetch, "runs", run_id))["status"] == "running"
    finally:
        from runctl_jupyter.config import Runctl
        from runctl_jupyter.session import Session

        Session(Runctl(grace_seconds=1.0)).stop(run_id)
        deadline = time.monotonic() + 30
        while _agent_alive(run_dir) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)


async def test_a_read_only_user_cannot_open_a_record(jp_fetch, home, jp_root_dir):
    run_id = start_local_run("runctl.log(step=0, loss=0.5)\n", name="tiny")
    await wait_status(jp_fetch, run_id, {"succeeded"})
    assert (home / "runs" / run_id / "record.ipynb").exists()
    code, body = await error_of(jp_fetch, "runs", run_id, "open-record", method="POST", body="")
    assert code == 403 and "may not open records" in body["message"]
    assert not (Path(jp_root_dir) / "runctl-records").exists()
    detail = await get_json(jp_fetch, "runs", run_id)  # reading the run is still allowed
    assert detail["status"] == "succeeded"
