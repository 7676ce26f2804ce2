"""How a launch fails: the errors the user acts on, and the AWS codes that mean "no
capacity here, try the next candidate" (a single launch, a spot fleet's fallback and a
multi-node run's subnets all tell them apart the same way)."""

from __future__ import annotations

from .clients import AWSError

CAPACITY_ERRORS = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
}


class LaunchError(AWSError):
    pass


class InvalidInstanceType(LaunchError):
    pass


class VolumeZoneMismatch(LaunchError):
    pass


class NoCapacity(LaunchError):
    pass
