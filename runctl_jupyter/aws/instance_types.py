"""Which instance type: its CPU/GPU facts, checked before anything is created.

A typo in `--instance-type` or `--fallback` is refused with the closest real names of
the region (the full list is read once per region and kept: it is long and fixed).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from .clients import Clients, error_code
from .launch_errors import InvalidInstanceType


@dataclass
class InstanceTypeInfo:
    name: str
    vcpus: int
    memory_gib: float
    gpus: int
    gpu_name: str | None
    gpu_memory_gib: float
    arch: str

    def describe(self) -> str:
        text = f"{self.name}: {self.vcpus} vCPU, {self.memory_gib:g} GiB"
        if self.gpus:
            text += (
                f", {self.gpus} x {self.gpu_name or 'GPU'} ({self.gpu_memory_gib:g} GiB GPU memory)"
            )
        return text


_TYPE_NAMES: dict[str, list[str]] = {}


def _all_type_names(clients: Clients) -> list[str]:
    names = _TYPE_NAMES.get(clients.region)
    if names is None:
        names = []
        for page in clients.ec2.get_paginator("describe_instance_types").paginate():
            names.extend(t["InstanceType"] for t in page["InstanceTypes"])
        _TYPE_NAMES[clients.region] = names
    return names


def validate_instance_type(clients: Clients, name: str) -> InstanceTypeInfo:
    """The type's CPU/GPU facts; an unknown type raises with the closest real names."""
    try:
        found = clients.ec2.describe_instance_types(InstanceTypes=[name])["InstanceTypes"]
    except Exception as exc:
        if error_code(exc) not in ("InvalidInstanceType", "InvalidParameterValue"):
            raise
        found = []
    if not found:
        close = difflib.get_close_matches(name, _all_type_names(clients), n=3, cutoff=0.6)
        hint = (
            f"; did you mean {' or '.join(close)}?"
            if close
            else "; see `aws ec2 describe-instance-types`"
        )
        raise InvalidInstanceType(f"unknown instance type {name!r} in {clients.region}{hint}")
    t = found[0]
    gpus = t.get("GpuInfo", {}).get("Gpus", [])
    archs = t.get("ProcessorInfo", {}).get("SupportedArchitectures", ["x86_64"])
    return InstanceTypeInfo(
        name=name,
        vcpus=int(t.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
        memory_gib=t.get("MemoryInfo", {}).get("SizeInMiB", 0) / 1024,
        gpus=sum(int(g.get("Count", 0)) for g in gpus),
        gpu_name=gpus[0].get("Name") if gpus else None,
        gpu_memory_gib=t.get("GpuInfo", {}).get("TotalGpuMemoryInMiB", 0) / 1024,
        arch="arm64" if "arm64" in archs and "x86_64" not in archs else "x86_64",
    )
