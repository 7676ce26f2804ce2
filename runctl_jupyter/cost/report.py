"""`runctl cost`: spend by experiment, project, owner, team, instance type and day from
the stored runs (what spot saved, from each run's last `cost` event), what runs now and
its burn rate, the runctl-managed instances AWS reports; and `runctl cost price`.

    runctl cost                       # spend by experiment, project, owner, type, day
    runctl cost --by owner --month 2026-11   # one grouping, one calendar month (UTC)
    runctl cost price g5.xlarge --spot --region us-east-1

A run counts once in each grouping, so every grouping adds up to the total. A run's
month is the one it started in (UTC), as for the monthly budgets (cost/monthly_budget.py).

It works from the stored runs alone: with no AWS reachable it says so in one line.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunctlError
from .facts import default_region, session_prices
from .monthly_budget import in_month, run_team
from .prices import Price, dollars, hourly
from .spent import last_cost

BY = ("owner", "project", "team", "experiment")
NO_TEAM = "(no team)"
RUNNING = ("queued", "provisioning", "starting", "running", "interrupted", "resuming")


@dataclass
class CostReport:
    """Spend by experiment, project, owner, instance type and day; what runs now."""

    runs: list[dict[str, Any]]
    groups: dict[str, list[tuple[str, float, float]]] = field(default_factory=dict)
    running: list[dict[str, Any]] = field(default_factory=list)
    live: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    total: float = 0.0
    saved: float = 0.0
    month: str = ""  # --month YYYY-MM: only the runs started in it

    def burn_rate(self) -> float:
        return sum(float(r.get("rate") or 0) for r in self.running)

    def lines(self) -> list[str]:
        out = [
            f"spend{' in ' + self.month if self.month else ''}: {dollars(self.total)} over "
            f"{len(self.runs)} runs"
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


def _day(row: dict[str, Any]) -> str:
    t = row.get("started") or row.get("created") or time.time()
    return time.strftime("%Y-%m-%d", time.localtime(t))


def report(
    session: Any, live: bool = True, by: str | None = None, month: str | None = None
) -> CostReport:
    """The `runctl cost` report from the store (`by`: one grouping; `month`: YYYY-MM, the
    runs started in it); live AWS instances when reachable."""
    store = session.store
    store.refresh()
    rows = store.list_runs(limit=None)
    if month:
        rows = [r for r in rows if in_month(r, month)]
    if by:
        names: tuple[str, ...] = (by,)
    else:
        names = ("experiment", "project", "owner", "instance type", "day")
        if session.config.team:
            names = (*names[:3], "team", *names[3:])
    groups: dict[str, dict[str, list[float]]] = {k: {} for k in names}
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
        for name in names:
            acc = groups[name].setdefault(_key(r, name, itype), [0.0, 0.0])
            acc[0] += spent
            acc[1] += saved
    ordered = {
        name: sorted(((k, v[0], v[1]) for k, v in g.items()), key=lambda x: (-x[1], x[0]))
        for name, g in groups.items()
    }
    if "day" in groups:
        ordered["day"] = sorted(((k, v[0], v[1]) for k, v in groups["day"].items()), reverse=True)
    running = [r for r in rows if r["status"] in RUNNING]
    rep = CostReport(rows, ordered, running, total=total, saved=saved_all, month=month or "")
    if live:
        rep.live, rep.note = live_instances(session)
    return rep


def _key(row: dict[str, Any], name: str, itype: str) -> str:
    """A run's key in one grouping."""
    if name == "instance type":
        return itype
    if name == "day":
        return _day(row)
    if name == "team":
        return run_team(row) or NO_TEAM
    return str(row.get(name))


def live_instances(session: Any) -> tuple[list[dict[str, Any]], str]:
    """Running runctl-managed instances and their $/h; a one-line note when AWS is unreachable."""
    try:
        backend = session.backend("aws")
        region = backend.region or default_region(backend)
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
    p = session_prices(session)
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


def price_command(
    session: Any, instance_type: str, region: str | None, spot: bool, offline: bool
) -> Price:
    if not region:
        try:
            region = default_region(session.backend("aws"))
        except Exception:  # noqa: BLE001
            region = "us-east-1"
    p = session_prices(session)
    return (
        p.spot(instance_type, region, offline=offline)
        if spot
        else p.on_demand(instance_type, region, offline=offline)
    )


def cost(
    session: Any,
    action: str = "report",
    instance_type: str | None = None,
    region: str | None = None,
    spot: bool = False,
    offline: bool = False,
    by: str | None = None,
    month: str | None = None,
) -> CostReport | Price:
    """`runctl cost [--by owner|project|team|experiment] [--month YYYY-MM]` (the report) or
    `runctl cost price TYPE`."""
    if action == "price":
        if not instance_type:
            raise RunctlError("say which instance type: cost price TYPE, e.g. cost price g5.xlarge")
        return price_command(session, instance_type, region, spot, offline)
    if action != "report":
        raise RunctlError(f"unknown cost command {action!r}; use cost, or cost price TYPE")
    if by is not None and by not in BY:
        raise RunctlError(f"cost --by takes {', '.join(BY)}, not {by!r}")
    return report(session, live=not offline, by=by, month=month)
