"""In a team, stopping one's own local run needs no AWS: its agent lives on this machine
(this boot, its pid), so it is this home's own (runs/identity.py). A teammate's pulled
run is never that; its stop asks IAM who the caller is (tests/aws/test_team_iam.py)."""

from __future__ import annotations

import json
import time

import pytest

from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.session import Session


def test_ones_own_local_run_stops_offline_and_a_pulled_one_asks_iam(tmp_path, no_aws):
    from runctl_jupyter.runs.identity import Caller

    session = Session(config=Runctl(home=str(tmp_path / "home"), team="vision"))
    session._team_caller = Caller("arn:aws:iam::123456789012:user/alice")  # asked at launch
    session.team._settings = {  # found at launch (runs/team.py); its publishing fails offline
        "team": "vision",
        "owner": "alice",
        "bucket": "runctl-123456789012-us-east-1",
        "region": "us-east-1",
        "profile": None,
    }
    run = session.train(code="import time\nwhile True: time.sleep(0.05)\n", detach=True)
    session._team_caller = None  # forgotten: a stop that asked IAM would fail offline
    for _ in range(200):
        session.store.refresh(run.id)
        if session.store.get(run.id)["status"] == "running":
            break
        time.sleep(0.05)
    stopped = session.stop(run.id, wait=20)
    assert stopped.row["status"] == "stopped"
    assert session._team_caller is None  # IAM was not asked
    # a teammate's local run, as pulled: its agent is not on this machine
    spec = json.loads((session.store.run_dir(run.id) / "spec.json").read_text())
    assert spec["owner"] == "alice"
    run_dir = session.store.run_dir(run.id)
    agent = json.loads((run_dir / "agent.json").read_text())
    agent["boot_id"] = "another-machine"
    (run_dir / "agent.json").write_text(json.dumps(agent))
    spec["owner"] = "bob"
    (run_dir / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(RunctlError) as caught:
        session.backend_stop(run.id)
    assert "\n" not in str(caught.value) and "GetCallerIdentity" in str(caught.value)
