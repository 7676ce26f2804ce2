"""Which image an instance boots: `--ami`, else AWS's public SSM parameter for the
type (the Deep Learning AMI on a GPU type, Amazon Linux 2023 otherwise, each for the
type's architecture), checked to exist in the region before anything is created."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .clients import Clients, error_code
from .launch_errors import LaunchError

if TYPE_CHECKING:
    from .instance_types import InstanceTypeInfo

GPU_AMI_PARAMETER = (
    "/aws/service/deeplearning/ami/{arch}/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
CPU_AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"


def resolve_ami(clients: Clients, info: InstanceTypeInfo, ami: str | None = None) -> dict:
    """The image to boot: `--ami`, else the public SSM parameter for GPU (DLAMI) or CPU (AL2023)."""
    if not ami:
        template = GPU_AMI_PARAMETER if info.gpus else CPU_AMI_PARAMETER
        name = template.format(arch=info.arch)
        try:
            ami = clients.ssm.get_parameter(Name=name)["Parameter"]["Value"]
        except Exception as exc:
            raise LaunchError(
                f"cannot read the public AMI parameter {name} ({error_code(exc) or exc}); pass --ami ami-..."
            ) from exc
    try:
        images = clients.ec2.describe_images(ImageIds=[ami])["Images"]
    except Exception as exc:
        if not error_code(exc).startswith("InvalidAMIID"):
            raise
        images = []
    if not images:
        raise LaunchError(
            f"AMI {ami} does not exist in {clients.region}; check --ami or the region"
        )
    return images[0]
