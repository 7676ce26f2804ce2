"""GET /runctl/api/models on a real jupyter_server: the registry the sidebar's Models
tab shows, with a version made from a real ended run (`--register-model`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_server import get_json, wait_status

from runctl_jupyter.config import Runctl
from runctl_jupyter.registry import Registry
from runctl_jupyter.session import Session

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config(home: Path) -> dict:
    return {"ServerApp": {"jpserver_extensions": {"runctl_jupyter": True}}}


async def test_the_models_tab_lists_versions_with_runs_and_aliases(jp_fetch, home):
    assert (await get_json(jp_fetch, "models")) == {"models": []}
    session = Session(Runctl(grace_seconds=2.0))
    run = session.train(
        code="runctl.log(step=0, acc=0.9)\nrunctl.save_checkpoint({'w': 1})\n",
        name="reg",
        detach=True,
        options={"register_model": "digits", "register_if": "acc > 0.5"},
    )
    await wait_status(jp_fetch, run.id, {"succeeded"})
    await asyncio.sleep(0)  # the detached run ended: the endpoint numbers its version
    first = await get_json(jp_fetch, "models")
    [model] = first["models"]
    assert model["name"] == "digits" and model["aliases"] == {}
    assert [v["version"] for v in model["versions"]] == [1]
    assert model["versions"][0]["run_id"] == run.id
    assert model["versions"][0]["metrics"] == {"acc": 0.9}
    Registry(home).promote("digits", 1, "production")
    again = await get_json(jp_fetch, "models")
    assert again["models"][0]["aliases"] == {"production": 1}
    assert again["models"][0]["versions"][0]["aliases"] == ["production"]


async def test_the_schedules_tab_lists_schedules_with_their_next_fire(
    jp_fetch, home, tmp_path, monkeypatch
):
    from runctl_jupyter import cli

    assert (await get_json(jp_fetch, "schedules")) == {"schedules": []}
    monkeypatch.setenv("RUNCTL_CRONTAB", str(tmp_path / "crontab"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.py").write_text("print('hi')\n")
    assert cli.main(["schedule", "add", "train.py", "--cron", "0 3 * * 1"]) == 0
    [row] = (await get_json(jp_fetch, "schedules"))["schedules"]
    assert row["target"] == "train.py" and row["enabled"] == "yes"
    assert row["next"] and row["last_run"] is None and row["status"] is None
