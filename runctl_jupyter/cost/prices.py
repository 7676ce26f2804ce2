"""EC2 and EBS prices: the Pricing API (cached a day), spot price history, a bundled table.

    prices = Prices(home)
    prices.on_demand("g5.xlarge", "us-east-1")   # Price(usd_per_hour=1.006, source="AWS Pricing API ...")
    prices.spot("g5.xlarge", "us-east-1", zone="us-east-1a")
    prices.ebs("us-east-1")                      # (0.08 $/GB-month, source)
    storage_price("s3_gb_month", "us-east-1", "STANDARD", "S3")   # (0.023, source)

On-demand prices come from the AWS Pricing API (Linux, shared tenancy), cached on
disk under `$RUNCTL_HOME/cache/prices.json` with the day they were fetched: at
most one Pricing API call per instance type and region per day (a failed call is
remembered for the day too). Without AWS, without pricing permission, or with
`offline=True`, the bundled table `data/prices.json` answers (real published
prices with their source and date). Spot prices come from
`describe_spot_price_history` for the zone in use (the cheapest zone when none is
given), cached an hour. Every answer says where it came from.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import RunctlError

TABLE_FILE = Path(__file__).resolve().parents[1] / "data" / "prices.json"
CACHE_FILE = "prices.json"
PRICING_REGION = "us-east-1"  # the Pricing API's own endpoint
SPOT_CACHE_SECONDS = 3600.0
HOURS_PER_MONTH = 730.0  # AWS prorates GB-month prices over 730 hours
CONNECT_TIMEOUT = 2.0
READ_TIMEOUT = 5.0
# what quick clients are made from: another endpoint, profile or key gets its own
QUICK_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_CONFIG_FILE")


@dataclass
class Price:
    """One hourly price and where it came from."""

    instance_type: str
    region: str
    usd_per_hour: float
    kind: str  # "on-demand" or "spot"
    source: str  # "AWS Pricing API (2026-11-29)", "bundled table (... 2024-11-01)", ...
    zone: str | None = None
    note: str = ""  # why a fallback answered, or what a bound means

    def describe(self) -> str:
        where = f"{self.region}" + (f" ({self.zone})" if self.zone else "")
        text = f"{self.instance_type} {self.kind} in {where}: {hourly(self.usd_per_hour)} — {self.source}"
        return text + (f"; {self.note}" if self.note else "")

    def __str__(self) -> str:
        return self.describe()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.describe())


def hourly(usd: float) -> str:
    """An hourly price to a tenth of a cent: $1.006/h."""
    return f"${usd:.3f}/h"


def dollars(usd: float) -> str:
    """A total to the cent: $0.31."""
    return f"${usd:.2f}"


def today() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")


_TABLE: dict[str, Any] | None = None


def table() -> dict[str, Any]:
    """The bundled price table (data/prices.json)."""
    global _TABLE
    if _TABLE is None:
        _TABLE = json.loads(TABLE_FILE.read_text())
    return _TABLE


def table_source() -> str:
    return f"bundled table (AWS published prices, {table()['date']})"


_QUICK: dict[tuple[Any, ...], Any] = {}


def quick_clients(region: str) -> Any:
    """Clients with short timeouts and few retries: a price or a report never hangs.
    Made once per region and AWS environment: a new client reloads its service model
    (a second for EC2's), which every launch would pay before its first call."""
    from botocore.config import Config

    from ..aws.clients import Clients

    key = (region, *(os.environ.get(k) for k in QUICK_CLIENT_ENV))
    clients = _QUICK.get(key)
    if clients is None:
        clients = Clients(region=region, connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT)
        clients.config = clients.config.merge(
            Config(retries={"mode": "standard", "max_attempts": 2})
        )
        _QUICK[key] = clients
    return clients


def _error_text(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return str(code or type(exc).__name__)


def parse_price_list(price_list: list[Any]) -> float | None:
    """The hourly USD price in a Pricing API `GetProducts` answer (on-demand terms)."""
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for term in (product.get("terms", {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                if dim.get("unit") not in ("Hrs", "Hours"):
                    continue
                usd = float(dim.get("pricePerUnit", {}).get("USD") or 0)
                if usd > 0:
                    return usd
    return None


def pricing_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    pairs = {
        "instanceType": instance_type,
        "regionCode": region,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
    }
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in pairs.items()]


class Prices:
    """Price look-ups with a dated on-disk cache. `pricing` / `ec2` clients can be given
    (tests pass botocore-stubbed ones); otherwise they come from the client factory."""

    def __init__(
        self,
        home: str | os.PathLike[str],
        pricing: Any = None,
        ec2: Any = None,
        clock: Any = time.time,
    ) -> None:
        self.cache_path = Path(home).expanduser() / "cache" / CACHE_FILE
        self._pricing = pricing
        self._ec2: dict[str, Any] = {}
        if ec2 is not None:
            self._ec2["*"] = ec2
        self.clock = clock
        self.calls = {"pricing": 0, "spot": 0}

    # -- cache -------------------------------------------------------------------
    def _read_cache(self) -> dict[str, Any]:
        try:
            data = json.loads(self.cache_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_cache(self, section: str, key: str, entry: dict[str, Any]) -> None:
        data = self._read_cache()
        data.setdefault(section, {})[key] = entry
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_path.with_name(f"{CACHE_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, self.cache_path)

    def _day(self) -> str:
        return _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc).strftime("%Y-%m-%d")

    # -- clients -----------------------------------------------------------------
    def _pricing_client(self) -> Any:
        if self._pricing is None:
            self._pricing = quick_clients(PRICING_REGION).client("pricing")
        return self._pricing

    def _ec2_client(self, region: str) -> Any:
        if "*" in self._ec2:
            return self._ec2["*"]
        if region not in self._ec2:
            self._ec2[region] = quick_clients(region).ec2
        return self._ec2[region]

    # -- on-demand ---------------------------------------------------------------
    def table_on_demand(self, instance_type: str, region: str) -> float | None:
        return (table()["on_demand"].get(region) or {}).get(instance_type)

    def on_demand(self, instance_type: str, region: str, offline: bool = False) -> Price:
        """The Linux on-demand $/h: cache of the day, else the Pricing API, else the table."""
        key = f"{region}/{instance_type}"
        note = ""
        if not offline:
            day = self._day()
            entry = self._read_cache().get("on-demand", {}).get(key)
            if entry and entry.get("day") == day:
                if entry.get("usd"):
                    return Price(
                        instance_type,
                        region,
                        float(entry["usd"]),
                        "on-demand",
                        f"cache (AWS Pricing API, {day})",
                    )
                note = f"Pricing API unavailable today ({entry.get('error')})"
            else:
                usd, error = self._fetch_on_demand(instance_type, region)
                self._write_cache(
                    "on-demand", key, {"day": day, "usd": usd, "error": error, "t": self.clock()}
                )
                if usd:
                    return Price(
                        instance_type, region, usd, "on-demand", f"AWS Pricing API ({day})"
                    )
                note = f"Pricing API unavailable ({error})"
        usd = self.table_on_demand(instance_type, region)
        if usd is None:
            known = ", ".join(sorted(table()["on_demand"]))
            why = note or "offline"
            raise RunctlError(
                f"no price for {instance_type} in {region}: {why}, and the bundled table "
                f"({table()['date']}) has no such row (it covers common types in {known}); "
                "check the type, or give AWS pricing access (pricing:GetProducts)"
            )
        return Price(instance_type, region, float(usd), "on-demand", table_source(), note=note)

    def _fetch_on_demand(self, instance_type: str, region: str) -> tuple[float | None, str | None]:
        self.calls["pricing"] += 1
        try:
            answer = self._pricing_client().get_products(
                ServiceCode="AmazonEC2",
                Filters=pricing_filters(instance_type, region),
                FormatVersion="aws_v1",
                MaxResults=10,
            )
        except Exception as exc:  # noqa: BLE001 - no credentials, no permission, no network
            return None, _error_text(exc)
        usd = parse_price_list(answer.get("PriceList") or [])
        return (usd, None) if usd else (None, "no such product")

    # -- spot ----------------------------------------------------------------------
    def spot(
        self, instance_type: str, region: str, zone: str | None = None, offline: bool = False
    ) -> Price:
        """The current spot $/h in `zone` (the cheapest zone when None). Offline or without
        access, the on-demand price stands in as the upper bound (spot never bills more)."""
        error: str | None = "offline"
        if not offline:
            key = f"{region}/{zone or '*'}/{instance_type}"
            entry = self._read_cache().get("spot", {}).get(key)
            if entry and self.clock() - float(entry.get("t", 0)) < SPOT_CACHE_SECONDS:
                when = _dt.datetime.fromtimestamp(entry["t"], _dt.timezone.utc)
                return Price(
                    instance_type,
                    region,
                    float(entry["usd"]),
                    "spot",
                    f"cache (spot price history, {when:%Y-%m-%d %H:%M} UTC)",
                    zone=entry.get("zone"),
                )
            found, error = self._fetch_spot(instance_type, region, zone)
            if found is not None:
                usd, where = found
                self._write_cache("spot", key, {"usd": usd, "zone": where, "t": self.clock()})
                when = _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc)
                return Price(
                    instance_type,
                    region,
                    usd,
                    "spot",
                    f"EC2 spot price history ({when:%Y-%m-%d %H:%M} UTC)",
                    zone=where,
                )
        bound = self.on_demand(instance_type, region, offline=offline)
        return Price(
            instance_type,
            region,
            bound.usd_per_hour,
            "spot",
            bound.source,
            zone=zone,
            note=f"spot price unavailable ({error}): the on-demand price is its upper bound",
        )

    def _fetch_spot(
        self, instance_type: str, region: str, zone: str | None
    ) -> tuple[tuple[float, str] | None, str | None]:
        self.calls["spot"] += 1
        kwargs: dict[str, Any] = {
            "InstanceTypes": [instance_type],
            "ProductDescriptions": ["Linux/UNIX"],
            "StartTime": _dt.datetime.fromtimestamp(self.clock(), _dt.timezone.utc),
        }
        if zone:
            kwargs["AvailabilityZone"] = zone
        try:
            history = self._ec2_client(region).describe_spot_price_history(**kwargs)
        except Exception as exc:  # noqa: BLE001
            return None, _error_text(exc)
        return latest_spot(history.get("SpotPriceHistory") or [], zone)

    # -- EBS -----------------------------------------------------------------------
    def ebs(self, region: str, volume_type: str = "gp3") -> tuple[float, str]:
        """$ per GB-month of an EBS volume type, or of a snapshot (`snapshot`,
        `snapshot-archive`) (bundled table; us-east-1's when the region has no row, said so
        in the source)."""
        found = storage_price("ebs_gb_month", region, volume_type, "EBS")
        if found is None:
            known = ", ".join(k for k in table()["ebs_gb_month"]["us-east-1"])
            raise RunctlError(f"no EBS price for volume type {volume_type!r}: use one of {known}")
        return found


def storage_price(section: str, region: str, key: str, what: str) -> tuple[float, str] | None:
    """A storage price from the bundled table (`ebs_gb_month`, `ebs_iops_month`,
    `s3_gb_month`): (USD, source), us-east-1's when the region has no row; None if unknown."""
    prices = table()[section]
    row = prices.get(region)
    source = f"bundled table (AWS published {what} prices, {prices.get('date') or table()['date']})"
    if not isinstance(row, dict) or key not in row:
        row = prices["us-east-1"]
        source += f"; {region} not in it, us-east-1's price used"
    if key not in row:
        return None
    return float(row[key]), source


def latest_spot(
    entries: list[dict[str, Any]], zone: str | None
) -> tuple[tuple[float, str] | None, str | None]:
    """The newest price per zone from a SpotPriceHistory list; that zone's, else the cheapest."""
    newest: dict[str, tuple[Any, float]] = {}
    for e in entries:
        if e.get("ProductDescription", "Linux/UNIX") != "Linux/UNIX":
            continue
        az = e.get("AvailabilityZone") or "?"
        stamp = e.get("Timestamp")
        if az not in newest or (stamp is not None and stamp > newest[az][0]):
            newest[az] = (stamp, float(e["SpotPrice"]))
    if zone:
        if zone in newest:
            return (newest[zone][1], zone), None
        return None, f"no spot price for {zone}"
    if not newest:
        return None, "no spot price history"
    az = min(newest, key=lambda z: newest[z][1])
    return (newest[az][1], az), None


def ebs_hourly(gb: float, usd_per_gb_month: float) -> float:
    return gb * usd_per_gb_month / HOURS_PER_MONTH
