"""What each listed resource costs (`runctl resources`): $/h, dollars so far, and on what
basis.

- an instance: its run's own meter when the store knows the run (shared by the run's
  instances), else the bundled on-demand price x age (an orphan's upper bound; 0 $/h
  once stopped);
- a volume: its size x its type's $/GB-month (gp3, gp2, io1, io2, st1, sc1, standard),
  plus io1/io2 provisioned IOPS x $/IOPS-month, in every state (EBS bills until deleted);
- a snapshot: its size x the standard (or archive) snapshot $/GB-month: an upper bound,
  as AWS bills only the blocks a snapshot stores (incremental);
- the bucket: the STANDARD bytes under runctl's prefix x S3 Standard's $/GB-month.

Storage is priced per GB-month; its $/h is that over 730 hours, as AWS prorates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .prices import HOURS_PER_MONTH, Prices, storage_price


def _per_month(usd: float) -> str:
    return f"${usd:g}/GB-month"


def _storage(res: Any) -> tuple[float | None, str]:
    """(USD per hour, basis) of a volume, snapshot or bucket; (None, why) if unpriced."""
    facts = res.facts
    size = float(facts.get("size_gb") or 0.0)
    if res.kind == "volume":
        vtype = facts.get("volume_type") or "gp3"
        found = storage_price("ebs_gb_month", res.region, vtype, "EBS")
        if found is None:
            return None, f"no price for volume type {vtype}"
        month = size * found[0]
        basis = f"{vtype} {_per_month(found[0])}"
        iops = facts.get("iops")
        per_iops = storage_price("ebs_iops_month", res.region, vtype, "EBS") if iops else None
        if per_iops is not None:
            month += iops * per_iops[0]
            basis += f" + {iops} IOPS x ${per_iops[0]:g}/IOPS-month"
        return month / HOURS_PER_MONTH, basis
    if res.kind == "snapshot":
        key = facts.get("storage") or "snapshot"
        found = storage_price("ebs_gb_month", res.region, key, "EBS")
        if found is None:
            return None, f"no price for {key}"
        return size * found[0] / HOURS_PER_MONTH, f"{key} {_per_month(found[0])}, upper bound"
    if res.kind == "bucket":
        found = storage_price("s3_gb_month", res.region, "STANDARD", "S3")
        if found is None:  # pragma: no cover - the bundled table has us-east-1's
            return None, "no S3 price"
        bound = ", lower bound" if facts.get("lower_bound") else ""
        return size * found[0] / HOURS_PER_MONTH, f"S3 Standard {_per_month(found[0])}{bound}"
    return None, ""


def resource_costs(
    found: Iterable[Any], prices: Prices, run_row: Callable[[str], dict | None]
) -> dict[str, dict[str, Any]]:
    """{resource id: {"rate": $/h, "spent": dollars so far, "basis": how}} for what bills."""
    found = list(found)
    costs: dict[str, dict[str, Any]] = {}
    per_run: dict[str, int] = {}
    for res in found:
        if res.kind == "instance" and res.run_id:
            per_run[res.run_id] = per_run.get(res.run_id, 0) + 1
    for res in found:
        age = res.age_hours()
        if res.kind == "instance":
            row = run_row(res.run_id) if res.run_id else None
            if row is not None and row.get("rate") is not None:
                share = per_run.get(res.run_id, 1)  # a multi-node run's meter counts every node
                spent = row.get("cost")
                costs[res.id] = {
                    "rate": row["rate"] / share,
                    "spent": None if spent is None else spent / share,
                    "basis": "run meter",
                }
                continue
            itype = res.facts.get("instance_type") or (res.detail or "").split(" ")[0]
            rate = prices.table_on_demand(itype, res.region) if itype else None
            spent = rate * age if rate is not None and age is not None else None
            costs[res.id] = {
                "rate": rate if res.state in ("pending", "running") else 0.0,
                "spent": spent,
                "basis": "on-demand table, upper bound" if rate is not None else "unpriced",
            }
            continue
        rate, basis = _storage(res)
        if basis:
            spent = rate * age if rate is not None and age is not None else None
            costs[res.id] = {"rate": rate, "spent": spent, "basis": basis}
    return costs
