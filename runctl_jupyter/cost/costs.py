"""Cost, before, during and after: the estimate before launch, the price facts a run's
agent meters with, the sweep budget, the `runctl cost` report, the success line.

    runctl cost                       # spend by experiment, project, owner, type, day
    runctl cost price g5.xlarge --spot --region us-east-1

Hourly prices show to a tenth of a cent ($1.006/h), totals to the cent ($0.31).
"""

from __future__ import annotations

import html
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RunctlError
from .prices import Prices, dollars, hourly

RUNNING = ("queued", "provisioning", "starting", "running", "interrupted", "resuming")
MEDIAN_OF = 20  # earlier succeeded runs of the experiment a duration estimate looks at


# ---------------------------------------------------------------- price facts


def prices(session: Any) -> Prices:
    return Prices(session.store.home)


def price_facts(session: Any, backend_name: str, options: dict) -> dict | None:
    """What the agent meters a run with (spec["target"]["price"]); None for a local run."""
    if backend_name == "local":
        return None
    backend = session.backend(backend_name)
    instance_type = options.get("instance_type") or getattr(backend, "instance_type", None)
    spot = options.get("spot")
    spot = bool(getattr(backend, "spot", True)) if spot is None else bool(spot)
    region = options.get("region") or getattr(backend, "region", "") or _default_region(backend)
    zone = None
    if options.get("instance"):  # a reused instance: its own type, zone and lifecycle
        found = _describe_instance(region, str(options["instance"]))
        if found:
            instance_type, zone, spot = found
    if not instance_type:
        return None
    p = prices(session)
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


def _default_region(backend: Any) -> str:
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


# ---------------------------------------------------------------- the estimate


@dataclass
class Estimate:
    facts: dict | None
    hours: float | None = None  # one run's
    basis: str = ""
    trials: int = 1
    parallel: int = 1

    @property
    def rate(self) -> float:
        if not self.facts:
            return 0.0
        f = self.facts
        one = f["rate"] + f.get("ebs_gb", 0) * f.get("ebs_gb_month", 0) / 730.0
        return one * int(f.get("nodes") or 1)

    @property
    def total(self) -> float | None:
        if self.hours is None:
            return None
        return self.rate * self.hours * self.trials

    @property
    def wall_hours(self) -> float | None:
        if self.hours is None:
            return None
        return self.hours * math.ceil(self.trials / max(self.parallel, 1))

    @property
    def at_least(self) -> float:
        """The least it can cost: an hour of every trial that may run at once."""
        return self.rate * min(self.trials, self.parallel)

    def __str__(self) -> str:
        if not self.facts:
            return "Estimate: local run, $0"
        f = self.facts
        kind = "spot" if f["spot"] else "on-demand"
        nodes = int(f.get("nodes") or 1)
        what = f"{nodes} x {f['instance_type']}" if nodes > 1 else f["instance_type"]
        text = f"Estimate: {what} {kind} in {f['region']} at {hourly(self.rate)}"
        text += f" ({f['source']}"
        text += f"; {f['note']})" if f.get("note") else ")"
        if self.hours is None:
            return text + ", no duration to total it over: give --max-hours H for a total"
        if self.trials > 1:
            return (
                text + f" x {self.trials} trials x {_hours(self.hours)} ({self.basis})"
                f" = {dollars(self.total or 0)}, about {_hours(self.wall_hours or 0)} of wall time"
                f" with {self.parallel} in parallel"
            )
        return text + f" x {_hours(self.hours)} ({self.basis}) = {dollars(self.total or 0)}"


def _hours(h: float) -> str:
    if h < 1:
        return f"{h * 60:.0f}m"
    return f"{h:.3g}h"


def typical_hours(store: Any, experiment: str | None) -> tuple[float | None, str]:
    """The median duration of earlier succeeded runs of the experiment."""
    if not experiment:
        return None, ""
    rows = store.list_runs(experiment=experiment, status="succeeded", limit=MEDIAN_OF)
    durations = [r["duration"] for r in rows if r.get("duration")]
    if not durations:
        return None, ""
    n = len(durations)
    return statistics.median(durations) / 3600, (
        f"median of {n} earlier run{'s' if n > 1 else ''} of {experiment}"
    )


def estimate(
    session: Any,
    facts: dict | None,
    max_hours: float | None,
    experiment: str | None,
    trials: int = 1,
    parallel: int = 1,
) -> Estimate:
    if max_hours:
        hours, basis = float(max_hours), "--max-hours"
    else:
        hours, basis = typical_hours(session.store, experiment)
    return Estimate(facts, hours, basis, max(trials, 1), max(parallel, 1))


def before_launch(
    session: Any,
    backend_name: str,
    options: dict,
    max_hours: float | None,
    experiment: str | None,
    trials: int = 1,
    parallel: int = 1,
    yes: bool | None = None,
    limit: float | None = None,
    project: str | None = None,
) -> dict | None:
    """Price the run (or sweep), show the estimate, and refuse above c.Runctl.confirm_above
    without --yes. Runs before anything is created. Returns the price facts."""
    if yes is None:
        yes = bool(options.pop("yes", False))
    else:
        options.pop("yes", None)
    try:
        facts = price_facts(session, backend_name, options)
    except RunctlError as exc:  # no price: the launch goes on (its own checks say more)
        if limit is not None or options.get("cost_limit"):
            raise RunctlError(f"--cost-limit needs a price, and there is none: {exc}") from None
        print(f"Estimate unavailable ({exc}): this run's cost is not metered", flush=True)
        return None
    if facts is None:
        return None
    est = estimate(session, facts, max_hours, experiment, trials, parallel)
    print(str(est), flush=True)
    apply_monthly_budget(session, project or session.config.project, options)
    cap = limit if limit is not None else options.get("cost_limit")
    check_confirm(est, float(session.config.confirm_above), yes, cap)
    return facts


def month_spent(store: Any, project: str, owner: str, now: float | None = None) -> float:
    """This calendar month's (UTC) spend of a project and owner, from the stored runs."""
    import calendar

    t = time.gmtime(now if now is not None else time.time())
    start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0, 0, 0, 0))
    rows = store.list_runs(project=project, limit=None)
    return sum(
        float(r.get("cost") or 0)
        for r in rows
        if r.get("owner") == owner and (r.get("started") or r.get("created") or 0) >= start
    )


def apply_monthly_budget(session: Any, project: str, options: dict) -> None:
    """c.Runctl.monthly_budget: refuse a launch once the month's budget is spent, warn
    from 80%, and cap the run's --cost-limit at what is left (its agent stops it there)."""
    budget = float(session.config.monthly_budget or 0)
    if budget <= 0:
        return
    owner = session.config.owner
    session.store.refresh()
    spent = month_spent(session.store, project, owner)
    if spent >= budget:
        raise RunctlError(
            f"the monthly budget of project {project!r} for {owner} ({dollars(budget)}) is spent "
            f"({dollars(spent)}): raise c.Runctl.monthly_budget to launch more this month"
        )
    left = budget - spent
    if spent >= 0.8 * budget:
        print(
            f"warning: {dollars(spent)} of the {dollars(budget)} monthly budget of {project!r} is "
            f"spent; this run stops at {dollars(left)}",
            flush=True,
        )
    own = options.get("cost_limit")
    options["cost_limit"] = min(float(own), left) if own else left


def check_confirm(est: Estimate, above: float, yes: bool, cost_limit: float | None = None) -> None:
    if yes or above <= 0:
        return
    total = est.total
    if cost_limit:
        total = min(total, float(cost_limit)) if total is not None else float(cost_limit)
    if total is not None and total > above:
        raise RunctlError(
            f"the estimate is {dollars(total)}, above c.Runctl.confirm_above ({dollars(above)}): "
            "add --yes to launch it, or lower --max-hours / --cost-limit"
        )
    if total is None and est.at_least > above:
        raise RunctlError(
            f"this costs at least {dollars(est.at_least)} an hour, above c.Runctl.confirm_above "
            f"({dollars(above)}): add --yes to launch it, or set --max-hours / --cost-limit"
        )


# ---------------------------------------------------------------- per-run facts


def last_cost(run_dir: Path | str | None) -> dict | None:
    """The last `cost` event of a run (read from the end of its events.jsonl)."""
    if not run_dir:
        return None
    path = Path(run_dir) / "events.jsonl"
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            chunk = 1 << 16
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                data = f.read(size - start)
                for raw in reversed(data.splitlines()):
                    if b'"cost"' in raw:
                        try:
                            event = json.loads(raw)
                        except ValueError:
                            continue
                        if event.get("type") == "cost":
                            return event
                if start == 0:
                    return None
                chunk *= 4
    except OSError:
        return None


def cost_phrase(row: dict) -> str:
    """`cost $0.31 (spot, saved $0.74 against on-demand)`, or `cost $0 (local)`."""
    if (row.get("backend") or "local") == "local":
        return "cost $0 (local)"
    spent = float(row.get("cost") or 0)
    event = last_cost(row.get("run_dir")) or {}
    if not event.get("spot"):
        return f"cost {dollars(spent)} (on-demand)"
    saved = float(event.get("on_demand_dollars") or spent) - spent
    if saved >= 0.005:
        return f"cost {dollars(spent)} (spot, saved {dollars(saved)} against on-demand)"
    return f"cost {dollars(spent)} (spot)"


# ---------------------------------------------------------------- sweeps


def sweep_spent(store: Any, run_ids: list[str]) -> float:
    total = 0.0
    for run_id in run_ids:
        try:
            total += float(store.get(run_id).get("cost") or 0)
        except RunctlError:
            continue
    return total


class SweepBudget:
    """The sweep scheduler's `--cost-limit`: warn at 80%, halt at 100% (reason cost-limit)."""

    def __init__(self, limit: float | None) -> None:
        self.limit = float(limit) if limit else None
        self.warned = False
        self.reached = False

    def check(self, spent: float) -> str | None:
        """'warn' once at 80%, 'stop' once at 100%, else None."""
        if self.limit is None or self.reached:
            return None
        if spent >= self.limit:
            self.reached = True
            return "stop"
        if not self.warned and spent >= 0.8 * self.limit:
            self.warned = True
            return "warn"
        return None

    def trial_limit(self, own: float | None, spent: float) -> float | None:
        """A new trial may spend at most what the sweep has left (so a trial stops itself
        even if the scheduler is gone)."""
        if self.limit is None:
            return own
        left = max(self.limit - spent, 0.01)
        return min(own, left) if own else left


# ---------------------------------------------------------------- runctl cost price


def price_command(
    session: Any, instance_type: str, region: str | None, spot: bool, offline: bool
) -> Any:
    if not region:
        try:
            region = _default_region(session.backend("aws"))
        except Exception:  # noqa: BLE001
            region = "us-east-1"
    p = prices(session)
    return (
        p.spot(instance_type, region, offline=offline)
        if spot
        else p.on_demand(instance_type, region, offline=offline)
    )


# ---------------------------------------------------------------- runctl cost


@dataclass
class CostReport:
    """Spend by experiment, project, owner, instance type and day; what runs now."""

    runs: list[dict]
    groups: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    running: list[dict] = field(default_factory=list)
    live: list[dict] = field(default_factory=list)
    note: str = ""
    total: float = 0.0
    saved: float = 0.0

    def burn_rate(self) -> float:
        return sum(float(r.get("rate") or 0) for r in self.running)

    def lines(self) -> list[str]:
        out = [
            f"spend: {dollars(self.total)} over {len(self.runs)} runs"
            + (
                f", spot saved {dollars(self.saved)} against on-demand"
                if self.saved >= 0.005
                else ""
            )
        ]
        for by, rows in self.groups.items():
            if not rows:
                continue
            out.append(f"by {by}:")
            width = max(len(k) for k, _, _ in rows)
            for key, spent, saved in rows:
                extra = f"  (saved {dollars(saved)})" if saved >= 0.005 else ""
                out.append(f"  {key.ljust(width)}  {dollars(spent):>10}{extra}")
        if self.running:
            out.append(f"running now: {len(self.running)}, burning {hourly(self.burn_rate())}")
            for r in self.running:
                out.append(
                    f"  {r['id']}  {r.get('name')}  {r['status']}  {dollars(float(r.get('cost') or 0))}"
                    f"  {hourly(float(r.get('rate') or 0))}"
                )
        else:
            out.append("running now: nothing")
        for inst in self.live:
            out.append(
                f"  AWS {inst['id']} {inst['type']} {inst['lifecycle']} {inst['state']}"
                f" {hourly(inst['rate'])} run {inst.get('run') or '-'}{' (kept)' if inst.get('kept') else ''}"
            )
        if self.note:
            out.append(self.note)
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))

    def _repr_html_(self) -> str:
        return "<pre class='runctl-cost'>" + html.escape(str(self)) + "</pre>"

    def figure(self) -> Any:
        """Spend per day, stacked by experiment (plotly)."""
        import plotly.graph_objects as go

        per: dict[str, dict[str, float]] = {}
        for r in self.runs:
            day = _day(r)
            per.setdefault(str(r.get("experiment")), {}).setdefault(day, 0.0)
            per[str(r.get("experiment"))][day] += float(r.get("cost") or 0)
        fig = go.Figure()
        for exp, days in sorted(per.items()):
            xs = sorted(days)
            fig.add_bar(x=xs, y=[round(days[d], 2) for d in xs], name=exp)
        fig.update_layout(
            barmode="stack", title="spend per day", yaxis_title="$", height=320,
            margin={"l": 50, "r": 20, "t": 40, "b": 40},
        )  # fmt: skip
        return fig

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display({"text/plain": str(self), "text/html": self._repr_html_()}, raw=True)
        if self.runs:
            try:
                fig = self.figure()
            except ImportError:
                return
            display(
                {"application/vnd.plotly.v1+json": fig.to_plotly_json(), "text/plain": ""},
                raw=True,
            )


def _day(row: dict) -> str:
    t = row.get("started") or row.get("created") or time.time()
    return time.strftime("%Y-%m-%d", time.localtime(t))


def report(session: Any, live: bool = True) -> CostReport:
    """The `runctl cost` report from the store; live AWS instances when reachable."""
    store = session.store
    store.refresh()
    rows = store.list_runs(limit=None)
    groups: dict[str, dict[str, list[float]]] = {
        k: {} for k in ("experiment", "project", "owner", "instance type", "day")
    }
    total = saved_all = 0.0
    for r in rows:
        spent = float(r.get("cost") or 0)
        event = last_cost(r.get("run_dir")) if r.get("backend") != "local" else None
        saved = 0.0
        itype = "local"
        if event:
            itype = str(event.get("instance_type") or "?")
            if event.get("spot"):
                saved = max(float(event.get("on_demand_dollars") or spent) - spent, 0.0)
        elif r.get("backend") != "local":
            itype = "?"
        total += spent
        saved_all += saved
        keys = {
            "experiment": str(r.get("experiment")),
            "project": str(r.get("project")),
            "owner": str(r.get("owner")),
            "instance type": itype,
            "day": _day(r),
        }
        for by, key in keys.items():
            acc = groups[by].setdefault(key, [0.0, 0.0])
            acc[0] += spent
            acc[1] += saved
    ordered = {
        by: sorted(((k, v[0], v[1]) for k, v in g.items()), key=lambda x: (-x[1], x[0]))
        for by, g in groups.items()
    }
    ordered["day"] = sorted(((k, v[0], v[1]) for k, v in groups["day"].items()), reverse=True)
    running = [r for r in rows if r["status"] in RUNNING]
    rep = CostReport(rows, ordered, running, total=total, saved=saved_all)
    if live:
        rep.live, rep.note = live_instances(session)
    return rep


def live_instances(session: Any) -> tuple[list[dict], str]:
    """Running runctl-managed instances and their $/h; a one-line note when AWS is unreachable."""
    try:
        backend = session.backend("aws")
        region = backend.region or _default_region(backend)
        from .prices import quick_clients

        ec2 = quick_clients(region).ec2
        res = ec2.describe_instances(
            Filters=[
                {"Name": "tag:runctl:managed", "Values": ["true"]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
    except Exception as exc:  # noqa: BLE001 - no AWS configured or reachable
        reason = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code") or type(
            exc
        ).__name__
        return [], f"live AWS figures unavailable ({reason}): the spend above is from stored runs"
    p = prices(session)
    out = []
    for reservation in res.get("Reservations", []):
        for inst in reservation.get("Instances", []):
            tags = {t["Key"]: t["Value"] for t in inst.get("Tags") or []}
            spot = inst.get("InstanceLifecycle") == "spot"
            itype = inst["InstanceType"]
            zone = inst.get("Placement", {}).get("AvailabilityZone")
            try:
                price = p.spot(itype, region, zone) if spot else p.on_demand(itype, region)
                rate = price.usd_per_hour
            except RunctlError:
                rate = 0.0
            out.append(
                {
                    "id": inst["InstanceId"],
                    "type": itype,
                    "lifecycle": "spot" if spot else "on-demand",
                    "state": inst["State"]["Name"],
                    "rate": rate,
                    "run": tags.get("runctl:run-id"),
                    "kept": tags.get("runctl:keep") == "true",
                }
            )
    return out, ""


def cost(
    session: Any,
    action: str = "report",
    instance_type: str | None = None,
    region: str | None = None,
    spot: bool = False,
    offline: bool = False,
) -> Any:
    """`runctl cost` (the report) or `runctl cost price TYPE`."""
    if action == "price":
        if not instance_type:
            raise RunctlError("say which instance type: cost price TYPE, e.g. cost price g5.xlarge")
        return price_command(session, instance_type, region, spot, offline)
    if action != "report":
        raise RunctlError(f"unknown cost command {action!r}; use cost, or cost price TYPE")
    return report(session, live=not offline)


def check_sweep_budget(scheduler: Any, every: float = 1.0) -> None:
    """The scheduler's budget check (runs in its loop, at most once a second): warn at
    80% of the sweep's --cost-limit; at 100% halt the sweep, stopping running trials
    with reason cost-limit (queued ones stay for --resume)."""
    budget = scheduler.budget
    now = time.monotonic()
    if budget.limit is None or now - scheduler.last_spent < every:
        return
    scheduler.last_spent = now
    ids = [t["run_id"] for t in scheduler.state.trials if t.get("run_id")]
    scheduler.spent = spent = sweep_spent(scheduler.store, ids)
    what = budget.check(spent)
    if what == "warn":
        scheduler.warn(
            f"the sweep has spent {dollars(spent)}, 80% of its --cost-limit {dollars(budget.limit)}"
        )
    elif what == "stop":
        scheduler.warn(
            f"the sweep's --cost-limit {dollars(budget.limit)} is reached ({dollars(spent)}): "
            "stopping its running trials (queued ones are not started)"
        )
        if scheduler.halt is None:
            scheduler.halt = ("stopped", "cost-limit")
        for trial in scheduler._running():
            scheduler._stop_run(trial["run_id"], "cost-limit")
