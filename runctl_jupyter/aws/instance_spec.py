"""What every instance runctl launches has, whichever way it is launched.

A single instance (RunInstances), a spot fleet's launch template and the nodes of a
multi-node run all take these: the instance profile, IMDSv2 required, an encrypted
root volume that goes with the instance, and the run's tags on instance and volume.
"""

from __future__ import annotations

from typing import Any

from . import tags


def instance_settings(
    instance_profile: str, root_gb: int, image: dict, run_tags: dict, shutdown: str = "terminate"
) -> dict[str, Any]:
    tag_list = tags.tag_list(run_tags)
    return {
        "IamInstanceProfile": {"Name": instance_profile},
        "MetadataOptions": {
            "HttpTokens": "required",
            "HttpEndpoint": "enabled",
            "HttpPutResponseHopLimit": 2,
        },
        "BlockDeviceMappings": [
            {
                "DeviceName": image.get("RootDeviceName") or "/dev/xvda",
                "Ebs": {
                    "VolumeSize": root_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "InstanceInitiatedShutdownBehavior": shutdown,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tag_list},
            {"ResourceType": "volume", "Tags": tag_list},
        ],
    }


def add_one_time_spot(kwargs: dict[str, Any], run_tags: dict) -> None:
    """RunInstances parameters asking for a one-time spot instance, its request tagged.

    Only with shutdown behaviour `terminate`: EC2 cannot stop an instance of a one-time
    request (AWS, "Stop a Spot Instance"); a kept spot instance is persistent (below)."""
    _add_spot(
        kwargs,
        run_tags,
        {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
    )


def add_persistent_spot(kwargs: dict[str, Any], run_tags: dict) -> None:
    """RunInstances parameters of a kept spot instance: a persistent request that stops
    (never terminates) on an interruption, so the instance can stop and start again.

    AWS: RunInstances takes a persistent request only with interruption behaviour
    `stop` or `hibernate` (API reference, SpotMarketOptions); only an instance of a
    persistent request can be stopped ("Stop a Spot Instance"; stopping it disables the
    request, starting it enables it again); the request must be cancelled before the
    instance is terminated, or it launches another ("Terminate a Spot Instance")."""
    _add_spot(
        kwargs, run_tags, {"SpotInstanceType": "persistent", "InstanceInterruptionBehavior": "stop"}
    )


def _add_spot(kwargs: dict[str, Any], run_tags: dict, options: dict[str, str]) -> None:
    kwargs["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": options}
    kwargs["TagSpecifications"].append(
        {"ResourceType": "spot-instances-request", "Tags": tags.tag_list(run_tags)}
    )
