"""The agent's cost meter: dollars so far, `cost` events, and `--cost-limit` on the instance.

Stdlib only (it ships to EC2 with the agent). The notebook side puts the price
facts in `spec["target"]["price"]` before launch (runctl_jupyter/cost/facts.py):

    {"instance_type": "g5.xlarge", "region": "us-east-1", "zone": null, "spot": true,
     "rate": 0.4123, "on_demand": 1.006, "ebs_gb": 100, "ebs_gb_month": 0.08,
     "source": "EC2 spot price history (...)"}

EC2 bills Linux instances per second with a one-minute minimum, so the meter
adds `rate x seconds / 3600` (EBS likewise, per GB-month over 730 hours) from
when billing began: the instance's boot for an instance launched for this
attempt, the attempt's start on a reused one. Earlier attempts' dollars (from
the last `cost` event in events.jsonl) carry over. It writes a `cost` event at
start, every 30 s and at exit. With `--cost-limit D` it warns at 80% (`warning`,
code `cost-warning`) and stops the run gracefully at 100% (reason `cost-limit`),
on the instance, so a closed notebook cannot overspend. A spot run's price is
refreshed every 10 minutes from the spot price history of its zone when boto3 is
there (on EC2 it is; the import is lazy, so the agent stays stdlib-only).
A local run costs $0: one `cost` event says so at exit.
"""

from __future__ import annotations

import datetime
import json
import os
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

EVERY = 30.0
MIN_SECONDS = 60.0  # EC2 per-second billing has a one-minute minimum
HOURS_PER_MONTH = 730.0
WARN_AT = 0.8
SPOT_REFRESH = 600.0
IMDS = "http://169.254.169.254"

Write = Callable[..., object]
Stop = Callable[[str], None]


def boot_time() -> float | None:
    """Unix time this machine booted (EC2 starts billing an instance at its boot)."""
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return time.time() - uptime


def previous_cost(run_dir: Path, attempt: int) -> tuple[float, float, float | None]:
    """(dollars, on-demand dollars, time) of the last cost event of earlier attempts."""
    dollars = on_demand = 0.0
    when = None
    try:
        with open(run_dir / "events.jsonl", "rb") as f:
            for raw in f:
                if b'"cost"' not in raw:
                    continue
                try:
                    e = json.loads(raw)
                except ValueError:
                    continue
                if e.get("type") == "cost" and int(e.get("attempt") or 1) < attempt:
                    dollars = float(e.get("dollars") or 0)
                    on_demand = float(e.get("on_demand_dollars") or dollars)
                    when = e.get("t")
    except OSError:
        pass
    return dollars, on_demand, when


class CostMeter:
    """Created by the agent for one attempt; `tick()` every loop pass, `final()` before exit."""

    def __init__(
        self,
        spec: dict,
        run_dir: Path,
        attempt: int,
        write: Write,
        stop: Stop,
        clock: Callable[[], float] = time.time,
        every: float = EVERY,
        refresher: Any = None,
    ) -> None:
        self.write = write
        self.stop = stop
        self.clock = clock
        self.every = every
        target = spec.get("target") or {}
        self.price: dict = dict(target.get("price") or {})
        options = spec.get("options") or {}
        limit = options.get("cost_limit", spec.get("cost_limit"))
        self.limit = float(limit) if limit else None
        self.local = not self.price
        self.no_price_source = "local" if spec.get("backend", "local") == "local" else "unpriced"
        self.base, self.base_on_demand, prev_t = previous_cost(run_dir, attempt)
        now = clock()
        start = now
        on_ec2 = (spec.get("sync") or {}).get("kind") == "s3"
        reused = bool(options.get("instance") or target.get("reused"))
        if on_ec2 and not reused:
            boot = boot_time()
            floor = max(float(spec.get("created") or 0), float(prev_t or 0))
            if boot is not None:
                start = min(now, max(boot, floor))
        self.billing_start = float(self.price.get("billing_start") or start)
        # the price facts are one instance's; a multi-node run pays for each of its nodes
        self.nodes = max(int(self.price.get("nodes") or 1), 1)
        self.rate = float(self.price.get("rate") or 0.0) * self.nodes
        self.on_demand_rate = float(self.price.get("on_demand") or 0.0) * self.nodes or self.rate
        self.ebs_rate = (
            float(self.price.get("ebs_gb") or 0)
            * float(self.price.get("ebs_gb_month") or 0)
            / HOURS_PER_MONTH
            * self.nodes
        )
        # instance dollars before the current rate took over (a spot price refresh)
        self._segment_start = self.billing_start
        self._banked = 0.0
        self.last_write: float | None = None
        self.warned = False
        self.stopped = False
        self.refresher = refresher
        if refresher is None and on_ec2 and self.price.get("spot"):
            self.refresher = SpotRefresher(self.price)

    # -- arithmetic ----------------------------------------------------------------
    def seconds(self, now: float) -> float:
        return max(now - self.billing_start, MIN_SECONDS)

    def instance_dollars(self, now: float) -> float:
        billed_end = self.billing_start + self.seconds(now)
        return self._banked + self.rate * max(billed_end - self._segment_start, 0.0) / 3600.0

    def dollars(self, now: float | None = None) -> float:
        """This run's dollars so far (every attempt)."""
        if self.local:
            return self.base
        now = self.clock() if now is None else now
        return self.base + self.instance_dollars(now) + self.ebs_rate * self.seconds(now) / 3600.0

    def on_demand_dollars(self, now: float) -> float:
        if self.local:
            return self.base_on_demand
        secs = self.seconds(now)
        return self.base_on_demand + (self.on_demand_rate + self.ebs_rate) * secs / 3600.0

    def set_rate(self, rate: float, now: float | None = None) -> None:
        """A new instance $/h from now on (a refreshed spot price)."""
        now = self.clock() if now is None else now
        self._banked = self.instance_dollars(now)
        self._segment_start = max(now, self.billing_start + MIN_SECONDS)
        self.rate = float(rate)

    # -- the agent's hooks ------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        if self.local:
            return
        if self.refresher is not None:
            new = self.refresher.poll()  # one instance's spot price
            if new is not None and new * self.nodes != self.rate:
                self.set_rate(new * self.nodes, now)
        if self.last_write is None or now - self.last_write >= self.every:
            self._event(now)
        self._check_limit(now)

    def final(self, now: float | None = None) -> None:
        """The last cost event of the attempt (the agent calls it just before `exit`)."""
        now = self.clock() if now is None else now
        if self.refresher is not None:
            self.refresher.close()
        self._event(now, final=True)

    def _event(self, now: float, final: bool = False) -> None:
        self.last_write = now
        if self.local:
            self.write("cost", dollars=round(self.base, 6), rate=0.0, source=self.no_price_source)
            return
        fields: dict[str, Any] = {
            "dollars": round(self.dollars(now), 6),
            "rate": round(self.rate + self.ebs_rate, 6),
            "on_demand_dollars": round(self.on_demand_dollars(now), 6),
            "spot": bool(self.price.get("spot")),
            "instance_type": self.price.get("instance_type"),
            "source": self.price.get("source"),
        }
        if self.nodes > 1:
            fields["nodes"] = self.nodes
        if final:
            fields["final"] = True
        self.write("cost", **fields)

    def _check_limit(self, now: float) -> None:
        if self.limit is None or self.stopped:
            return
        spent = self.dollars(now)
        if not self.warned and spent >= WARN_AT * self.limit:
            self.warned = True
            self.write(
                "warning",
                message=f"cost ${spent:.2f} has reached 80% of the --cost-limit ${self.limit:.2f}",
                code="cost-warning",
                dollars=round(spent, 6),
                limit=self.limit,
            )
        if spent >= self.limit:
            self.stopped = True
            self._event(now)
            self.write(
                "warning",
                message=f"--cost-limit ${self.limit:.2f} reached (${spent:.2f}): stopping the run",
                code="cost-limit",
                dollars=round(spent, 6),
                limit=self.limit,
            )
            self.stop("cost-limit")


class SpotRefresher:
    """Looks up the spot price of this instance's zone at start, then every 10 minutes, in a thread
    (boto3 imported lazily; without it, or without access, the price stays)."""

    def __init__(self, price: dict, every: float = SPOT_REFRESH, client: Any = None) -> None:
        self.price = price
        self.every = every
        self.client = client
        self._new: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runctl-spot-price", daemon=True)
        self._thread.start()

    def poll(self) -> float | None:
        with self._lock:
            new, self._new = self._new, None
        return new

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        wait = 0.0  # the first look-up at once: the estimate priced the cheapest zone
        while not self._stop.wait(wait):
            wait = self.every
            try:
                found = self.lookup()
            except Exception:  # noqa: BLE001 - the last known price stays
                found = None
            if found is not None:
                with self._lock:
                    self._new = found

    def lookup(self) -> float | None:
        zone = self.price.get("zone") or imds_zone()
        if not zone:
            return None
        client = self.client
        if client is None:
            try:
                import boto3
            except ImportError:
                return None
            client = boto3.client("ec2", region_name=self.price.get("region"))
            self.client = client
        answer = client.describe_spot_price_history(
            InstanceTypes=[self.price["instance_type"]],
            ProductDescriptions=["Linux/UNIX"],
            AvailabilityZone=zone,
            StartTime=datetime.datetime.now(datetime.timezone.utc),
        )
        entries = answer.get("SpotPriceHistory") or []
        if not entries:
            return None
        newest = max(entries, key=lambda e: e.get("Timestamp") or 0)
        return float(newest["SpotPrice"])


def imds_zone(base: str | None = None, timeout: float = 1.0) -> str | None:
    """This instance's availability zone from IMDSv2 (None off EC2)."""
    base = (base or os.environ.get("RUNCTL_IMDS_URL") or IMDS).rstrip("/")
    try:
        req = urllib.request.Request(
            base + "/latest/api/token",
            method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
        )
        token = urllib.request.urlopen(req, timeout=timeout).read().decode()
        req = urllib.request.Request(
            base + "/latest/meta-data/placement/availability-zone",
            headers={"X-aws-ec2-metadata-token": token},
        )
        return urllib.request.urlopen(req, timeout=timeout).read().decode().strip() or None
    except Exception:  # noqa: BLE001 - not on EC2
        return None
