"""A run's price facts: what its agent meters with (spec["target"]["price"]).

Priced once before launch (type, spot or on-demand, region; a reused instance's
own type, zone and lifecycle; the root volume; the nodes) and written into the new
run's spec before its agent starts, so the agent, stdlib only, never needs the
Pricing API (agent/cost.py). A local run has none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .prices import Prices


def session_prices(session: Any) -> Prices:
    return Prices(session.store.home)


def price_facts(session: Any, backend_name: str, options: dict) -> dict | None:
    """What the agent meters a run with (spec["target"]["price"]); None for a local run."""
    if backend_name == "local":
        return None
    backend = session.backend(backend_name)
    instance_type = options.get("instance_type") or getattr(backend, "instance_type", None)
    spot = options.get("spot")
    spot = bool(getattr(backend, "spot", True)) if spot is None else bool(spot)
    region = options.get("region") or getattr(backend, "region", "") or default_region(backend)
    zone = None
    if options.get("instance"):  # a reused instance: its own type, zone and lifecycle
        found = _describe_instance(region, str(options["instance"]))
        if found:
            instance_type, zone, spot = found
    if not instance_type:
        return None
    p = session_prices(session)
    on_demand = p.on_demand(instance_type, region)
    rate = p.spot(instance_type, region, zone) if spot else on_demand
    gb = 0 if options.get("instance") else int(getattr(backend, "root_gb", 0) or 0)
    ebs, ebs_source = p.ebs(region)
    return {
        "instance_type": instance_type,
        "region": region,
        "zone": rate.zone,
        "spot": spot,
        "rate": rate.usd_per_hour,
        "on_demand": on_demand.usd_per_hour,
        "ebs_gb": gb,
        "ebs_gb_month": ebs,
        "source": rate.source,
        "note": rate.note,
        "on_demand_source": on_demand.source,
        "ebs_source": ebs_source,
        "nodes": int(options.get("nodes") or 1),  # a multi-node run pays M instances
    }


def default_region(backend: Any) -> str:
    try:
        return backend.clients.region
    except Exception:  # noqa: BLE001 - no boto3 session: the default region
        return "us-east-1"


def _describe_instance(region: str, instance_id: str) -> tuple[str, str, bool] | None:
    from .prices import quick_clients

    try:
        res = quick_clients(region).ec2.describe_instances(InstanceIds=[instance_id])
        inst = res["Reservations"][0]["Instances"][0]
    except Exception:  # noqa: BLE001 - the launch itself will say what is wrong
        return None
    zone = inst.get("Placement", {}).get("AvailabilityZone")
    return inst["InstanceType"], zone, inst.get("InstanceLifecycle") == "spot"


def attach_price(run_dir: Path, spec: dict, facts: dict | None) -> dict:
    """Put the price facts in a new run's spec (before its agent starts)."""
    if not facts:
        return spec
    from ..store.folders import write_spec

    spec.setdefault("target", {})["price"] = facts
    write_spec(Path(run_dir), spec)
    return spec
