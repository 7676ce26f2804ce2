"""Kept spot instances (`--keep`, a sweep's slots) are launched as EC2 can stop them:
a persistent request with interruption behaviour `stop` (never a one-time request with
stop behaviour, which EC2 refuses); ended by cancelling the request first, so nothing
launches in their place; and a request left behind by a gone instance is cleaned up.

moto's RunInstances makes no spot request object, so the tests that need one make it
the way AWS would have (RequestSpotInstances, persistent, stop), tagged as our launch
tags it, and check what our code does with it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from traitlets.config import Config

from runctl_jupyter.aws import tags
from runctl_jupyter.aws.clients import Clients
from runctl_jupyter.aws.launch import Launched, LaunchRequest, provision, terminate_launched
from runctl_jupyter.aws.resources import cleanup, list_resources, orphans
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.backends.aws import AWSBackend
from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session
from runctl_jupyter.sweeps.instances import InstancePool

PERSISTENT_STOP = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"},
}


def _capture(clients: Clients, *ops: str) -> list[tuple[str, dict]]:
    """(operation, parameters) of every request these clients send for `ops`, in order."""
    seen: list[tuple[str, dict]] = []
    for op in ops:

        def hook(params, _op=op, **kwargs):
            seen.append((_op, copy.deepcopy(params)))

        clients.ec2.meta.events.register(f"provide-client-params.ec2.{op}", hook)
    return seen


def _valid_on_ec2(params: dict) -> bool:
    """EC2's rule: a one-time spot instance is never stopped (neither on shutdown nor
    on an interruption), and RunInstances takes a persistent request only with `stop`
    or `hibernate` (AWS, SpotMarketOptions; "Stop a Spot Instance")."""
    spot = (params.get("InstanceMarketOptions") or {}).get("SpotOptions")
    if spot is None:
        return True
    kind = spot.get("SpotInstanceType", "one-time")
    interruption = spot.get("InstanceInterruptionBehavior", "terminate")
    shutdown = params.get("InstanceInitiatedShutdownBehavior", "stop")
    if kind == "one-time":
        return interruption == "terminate" and shutdown == "terminate"
    return interruption in ("stop", "hibernate")


def _req(**kw) -> LaunchRequest:
    base = dict(
        run_id="r1", owner="ann", project="proj", instance_type="t3.micro", poll=0.05, ssm_timeout=5
    )
    base.update(kw)
    return LaunchRequest(**base)


def _state(aws: Clients, instance_id: str) -> str:
    res = aws.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return res[0]["Instances"][0]["State"]["Name"]


def _requests(aws: Clients) -> list[dict]:
    return aws.ec2.describe_spot_instance_requests()["SpotInstanceRequests"]


def _persistent_request(aws: Clients, run_id: str = "r1", keep: bool = True) -> tuple[str, str]:
    """What AWS makes for a kept spot launch: a persistent request (stop on interruption)
    and its instance, both with the run's tags; (request id, instance id)."""
    run_tags = tags.run_tags(run_id, "ann", "proj")
    if keep:
        run_tags[tags.KEEP] = "true"
    req = aws.ec2.request_spot_instances(
        InstanceCount=1,
        Type="persistent",
        InstanceInterruptionBehavior="stop",
        LaunchSpecification={"ImageId": aws.test_amis["al2023-x86"], "InstanceType": "t3.micro"},
        TagSpecifications=[
            {"ResourceType": "spot-instances-request", "Tags": tags.tag_list(run_tags)}
        ],
    )["SpotInstanceRequests"][0]
    request_id = req["SpotInstanceRequestId"]
    instance_id = _requests(aws)[0]["InstanceId"]
    aws.ec2.create_tags(Resources=[instance_id], Tags=tags.tag_list(run_tags))
    return request_id, instance_id


@pytest.fixture
def ready(aws: Clients) -> Clients:
    setup(aws)
    return aws


def test_a_kept_spot_launch_asks_for_a_persistent_request_that_stops(ready: Clients):
    seen = _capture(ready, "RunInstances")
    launched = provision(ready, _req(keep=True))
    [(_, params)] = seen
    assert params["InstanceMarketOptions"] == PERSISTENT_STOP
    assert params["InstanceInitiatedShutdownBehavior"] == "stop"  # the idle stop
    assert _valid_on_ec2(params)
    request_tags = next(
        t["Tags"]
        for t in params["TagSpecifications"]
        if t["ResourceType"] == "spot-instances-request"
    )
    assert tags.tag_dict(request_tags)[tags.KEEP] == "true"  # kept with its instance
    assert tags.tag_dict(request_tags)[tags.RUN_ID] == "r1"
    assert launched.keep and launched.spot
    # read back: a spot instance whose own shutdown stops it
    attr = ready.ec2.describe_instance_attribute(
        InstanceId=launched.instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert attr["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
    inst = ready.ec2.describe_instances(InstanceIds=[launched.instance_id])["Reservations"][0]
    assert inst["Instances"][0]["InstanceLifecycle"] == "spot"


def test_a_spot_run_that_is_not_kept_stays_one_time_and_terminates(ready: Clients):
    seen = _capture(ready, "RunInstances")
    provision(ready, _req())  # no boot script: a one-time request, as before
    [(_, params)] = seen
    assert params["InstanceMarketOptions"]["SpotOptions"] == {
        "SpotInstanceType": "one-time",
        "InstanceInterruptionBehavior": "terminate",
    }
    assert params["InstanceInitiatedShutdownBehavior"] == "terminate"
    assert _valid_on_ec2(params)


def test_a_sweep_slot_is_launched_as_a_kept_persistent_spot_instance(ready: Clients, tmp_path):
    """The pool's options for a new slot, through the backend's request, to RunInstances."""
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    session = Session(config=Runctl(config=cfg))
    pool = InstancePool(session, {"backend": "aws", "options": {}}, lambda **r: None)
    options = {"instance_type": "t3.micro", **pool.options(0)}
    spec = {"run_id": "s1-0", "project": "proj", "options": options}
    backend = AWSBackend(clients=ready, aws_poll=0.05, ssm_timeout=5)
    spot = backend.spot  # the default: spot; a slot is kept, so no fleet boot script
    req = backend._launch_request(spec, options, ready.identity(), spot, None)
    seen = _capture(ready, "RunInstances", "RequestSpotInstances", "CreateFleet")
    launched = provision(ready, req)
    assert [op for op, _ in seen] == ["RunInstances"]
    params = seen[0][1]
    assert params["InstanceMarketOptions"] == PERSISTENT_STOP
    assert params["InstanceInitiatedShutdownBehavior"] == "stop"
    assert _valid_on_ec2(params)
    # the next trial of the slot reuses it: no second launch
    pool.started(0, {**launched.facts(), "region": ready.region})
    pool.ended(0, None)
    assert pool.options(1) == {"instance": launched.instance_id}
    again = provision(ready, _req(run_id="s1-1", instance_id=launched.instance_id))
    assert again.reused and again.instance_id == launched.instance_id
    assert len(seen) == 1


def test_ending_a_kept_spot_instance_cancels_its_request_before_terminating(ready: Clients):
    request_id, instance_id = _persistent_request(ready)
    seen = _capture(ready, "CancelSpotInstanceRequests", "TerminateInstances")
    ended = terminate_launched(ready, Launched(instance_id=instance_id, spot_request_id=request_id))
    assert [op for op, _ in seen] == ["CancelSpotInstanceRequests", "TerminateInstances"]
    assert seen[0][1] == {"SpotInstanceRequestIds": [request_id]}
    assert ended == [request_id, instance_id]
    assert _state(ready, instance_id) in ("shutting-down", "terminated")
    assert [r for r in _requests(ready) if r["State"] in ("open", "active", "disabled")] == []


def test_the_idle_stop_leaves_the_kept_instance_and_its_request_for_the_next_run(ready: Clients):
    """The watcher's `shutdown -h now` on an instance launched with shutdown behaviour
    stop: EC2 stops it (played here with StopInstances) and disables its request. Nothing
    runs, nothing new is launched, cleanup leaves both (kept), `resources` lists both."""
    launched = provision(ready, _req(keep=True))
    request_id, spot_instance = _persistent_request(ready, run_id="r2")
    runs_before = ready.calls.get("ec2.RunInstances", 0)
    ready.ec2.stop_instances(InstanceIds=[launched.instance_id, spot_instance])
    assert {_state(ready, launched.instance_id), _state(ready, spot_instance)} <= {
        "stopping",
        "stopped",
    }
    found = list_resources(ready)
    by_id = {r.id: r for r in found}
    assert by_id[request_id].kind == "spot-request" and by_id[request_id].kept
    assert by_id[spot_instance].kept and by_id[launched.instance_id].kept
    assert orphans(found, lambda run_id: "succeeded", owner="ann") == []
    assert ready.calls.get("ec2.RunInstances", 0) == runs_before  # nothing relaunched


def test_cleanup_cancels_a_kept_request_whose_instance_is_gone(ready: Clients):
    """Terminated by hand without cancelling: a persistent request would launch another
    instance, so it is an orphan though kept, and `cleanup` cancels it."""
    request_id, instance_id = _persistent_request(ready)
    alive = list_resources(ready)
    assert orphans(alive, lambda run_id: "succeeded", owner="ann") == []
    ready.ec2.terminate_instances(InstanceIds=[instance_id])
    found = list_resources(ready)
    stranded = orphans(found, lambda run_id: "succeeded", owner="ann")
    assert [(r.kind, r.id) for r in stranded] == [("spot-request", request_id)]
    assert stranded[0].stranded and not stranded[0].kept
    results = cleanup(ready, stranded)
    assert [(r.id, ok, what) for r, ok, what in results] == [(request_id, True, "cancelled")]
    assert [r for r in _requests(ready) if r["SpotInstanceRequestId"] == request_id] == []


def test_a_sweep_ends_a_slot_that_an_interruption_stopped(ready: Clients, tmp_path: Path):
    """EC2 stops an interrupted slot and would start it again when capacity comes back:
    the pool drops it and ends it for good (request cancelled, then terminated)."""
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    session = Session(config=Runctl(config=cfg))
    records: list[dict] = []
    pool = InstancePool(session, {"backend": "aws", "options": {}}, lambda **r: records.append(r))
    request_id, instance_id = _persistent_request(ready)
    facts = {"instance_id": instance_id, "region": ready.region, "spot_request_id": request_id}
    pool.started(0, {**facts, "reused": False})
    pool.ended(0, None)
    ready.ec2.stop_instances(InstanceIds=[instance_id])  # the interruption
    assert pool.options(1) == {"keep": True}  # a new launch
    assert {"type": "instance", "instance_id": instance_id, "event": "lost"} in records
    assert _state(ready, instance_id) in ("shutting-down", "terminated")
    assert [r for r in _requests(ready) if r["SpotInstanceRequestId"] == request_id] == []
