"""`runctl aws setup` with `c.AWSBackend.ecr_repository`: the repository that caches the
images built from Dockerfiles (agent/ecr.py pulls and pushes them by their digest).

Made when missing (CreateRepository: scan on push, AES256 encryption, runctl's setup
tags); a repository that exists already (the user's own) is used as it is.
https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CreateRepository.html
"""

from __future__ import annotations

from . import tags
from .clients import Clients, error_code


def ensure(clients: Clients, name: str) -> bool:
    """The repository exists; True when this call made it."""
    ecr = clients.client("ecr")
    try:
        ecr.describe_repositories(repositoryNames=[name])
        return False
    except Exception as exc:
        if error_code(exc) != "RepositoryNotFoundException":
            raise
    ecr.create_repository(
        repositoryName=name,
        imageScanningConfiguration={"scanOnPush": True},
        # a tag is the build context's digest: once pushed it never changes (a run's code
        # on an instance may push, but cannot overwrite what another run will pull)
        imageTagMutability="IMMUTABLE",
        encryptionConfiguration={"encryptionType": "AES256"},
        tags=tags.tag_list(tags.setup_tags()),
    )
    return True
