"""What a listing of runctl-managed resources holds: the resources it read, and the
describe calls it could not read (a listing that names its gaps is *partial*)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

from . import tags


@dataclass
class Resource:
    kind: str
    id: str
    region: str
    state: str
    created: _dt.datetime | None
    tags: dict[str, str] = field(default_factory=dict)
    detail: str = ""  # instance type, volume size, ...
    run_status: str | None = None
    stranded: bool = False  # a kept spot request whose instance is gone
    # what prices it: {"instance_type"}, {"size_gb", "volume_type", "iops"}, {"size_gb",
    # "storage": "snapshot" | "s3-standard"}; `lower_bound` when the size is at least that
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.tags.get(tags.OWNER, "")

    @property
    def run_id(self) -> str:
        return self.tags.get(tags.RUN_ID, "")

    @property
    def kept(self) -> bool:
        return tags.is_kept(self.tags) and not self.stranded

    def age_hours(self, now: _dt.datetime | None = None) -> float | None:
        if self.created is None:
            return None
        now = now or _dt.datetime.now(_dt.timezone.utc)
        created = (
            self.created if self.created.tzinfo else self.created.replace(tzinfo=_dt.timezone.utc)
        )
        return max(0.0, (now - created).total_seconds() / 3600)

    def row(self) -> dict[str, Any]:
        age = self.age_hours()
        return {
            "kind": self.kind,
            "id": self.id,
            "region": self.region,
            "state": self.state,
            "detail": self.detail,
            "age_h": None if age is None else round(age, 2),
            "owner": self.owner,
            "run": self.run_id,
            "run_status": self.run_status,
            "kept": self.kept,
        }


@dataclass
class Failure:
    """One describe call that answered an error: what was not read, where, and why."""

    service: str  # "ec2", "s3"
    operation: str  # "DescribeVolumes"
    region: str
    code: str  # AWS's error code, or the botocore error's name (EndpointConnectionError)
    kind: str = ""  # the resource kind it would have listed
    message: str = ""  # a connection error's own words (its endpoint); "" for AWS's answers

    def describe(self) -> str:
        what = f" ({self.kind}s)" if self.kind else ""
        return f"{self.service} {self.operation} in {self.region}{what}: {self.code}"


class Listing(list):
    """The resources read (a list of Resource), `.failures` what could not be read,
    `.regions` where it looked."""

    def __init__(
        self,
        resources: Any = (),
        failures: Any = (),
        regions: Any = (),
    ) -> None:
        super().__init__(resources)
        self.failures: list[Failure] = list(failures)
        self.regions: list[str] = list(regions)

    @property
    def partial(self) -> bool:
        return bool(self.failures)

    def add(self, other: Listing) -> None:
        seen = {(r.kind, r.id) for r in self}  # IAM is global: each region lists its roles
        self.extend(r for r in other if (r.kind, r.id) not in seen)
        self.failures.extend(other.failures)
        self.regions.extend(r for r in other.regions if r not in self.regions)

    def gaps(self) -> list[str]:
        """One line per failed call: what the listing lacks."""
        return [f"could not read {f.describe()}" for f in self.failures]


def partial_note(failures: list[Failure]) -> str:
    """The line under a partial table (shell and notebook)."""
    n = len(failures)
    return (
        f"partial listing: {n} describe call{'s' if n != 1 else ''} failed, "
        "so resources of those kinds and regions may be missing"
    )
