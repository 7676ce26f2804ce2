"""Where the spot fleet refills a run: another AZ when the first one's capacity is gone,
a `--fallback` type when the type's is. The fixture plays AWS (the notice, the
termination, the refill in the best override with capacity, the new instance's boot
script); nobody watches between the launch and the end of the run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from runctl_jupyter.aws.setup import setup

_spec = importlib.util.spec_from_file_location(
    "fleet_refill_spot_helpers", Path(__file__).resolve().parent / "test_spot_resume_aws.py"
)
spot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spot)  # type: ignore[union-attr]

PARAMS = {"seed": 5, "steps": 60, "delay": 0.05}


def _resumed_elsewhere(aws, instance, tmp_path, options: dict, gone: str) -> dict:
    """Launch, take `gone` (an AZ or a type) away, interrupt: the replacement instance
    (described) that ran attempt 2 to the end."""
    setup(aws)
    session = spot._session(tmp_path)
    run = session.train(
        code=spot.fault_helpers.TRAIN,
        params=PARAMS,
        backend="aws",
        options={**spot.OPTIONS, **options},
        detach=True,
    )
    target = json.loads((session.store.run_dir(run.id) / "aws.json").read_text())
    first = target["instance_id"]
    assert target["availability_zone"] == "us-east-1a" and target["instance_type"] == "t3.micro"
    del session
    instance.no_capacity.add(gone)
    spot._interrupt_at_step(instance, run.id, first, 10)
    fleet_id, old, new = spot._wait(lambda: instance.refills, 60, "the fleet refilled", instance)[0]
    assert (fleet_id, old) == (target["fleet_id"], first)
    described = aws.ec2.describe_instances(InstanceIds=[new])["Reservations"][0]["Instances"][0]
    spot._wait(
        lambda: any(e["type"] == "exit" for e in spot._instance_events(instance, run.id, new)),
        180,
        "attempt 2 ends on the replacement",
        instance,
    )
    spot._wait_all_gone(aws, instance)
    later = spot._session(tmp_path)
    row = later.store.get(later.attach(run.id).id)
    assert row["status"] == "succeeded" and row["attempt"] == 2
    metrics = later.store.metrics(run.id)
    assert [s for s, _ in metrics["w"]] == list(range(PARAMS["steps"]))
    return described


def test_a_refill_goes_to_another_zone_when_the_first_zone_has_no_capacity(aws, instance, tmp_path):
    new = _resumed_elsewhere(aws, instance, tmp_path, {}, gone="us-east-1a")
    assert new["Placement"]["AvailabilityZone"] == "us-east-1b"
    assert new["InstanceType"] == "t3.micro"
    assert {t["Key"]: t["Value"] for t in new["Tags"]}["runctl:managed"] == "true"


def test_a_refill_takes_the_fallback_type_when_the_type_has_no_capacity(aws, instance, tmp_path):
    new = _resumed_elsewhere(aws, instance, tmp_path, {"fallback": ["t3.small"]}, gone="t3.micro")
    assert new["InstanceType"] == "t3.small"
    assert new["Placement"]["AvailabilityZone"] == "us-east-1a"
