"""The AWS account and what runctl leaves in it: `aws setup | policy | doctor`,
`resources` (the cloud resources runctl manages) and `cleanup` (the orphaned ones,
deleted with --yes)."""

from __future__ import annotations

from typing import Any

__all__ = ["CALLS", "add_aws", "add_cleanup", "add_resources"]


def add_resources(sub: Any) -> None:
    p = sub.add_parser(
        "resources", help="runctl-managed cloud resources", description="List cloud resources."
    )
    p.add_argument("--region", dest="regions", action="append", default=None, metavar="REGION")
    p.add_argument("--all-owners", action="store_true")


def add_cleanup(sub: Any) -> None:
    p = sub.add_parser(
        "cleanup",
        help="delete orphaned cloud resources",
        description="List orphaned resources; delete them with --yes.",
    )
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument("--all-owners", action="store_true")


def add_aws(sub: Any) -> None:
    p = sub.add_parser(
        "aws",
        help="aws setup | policy | doctor",
        description="Set up, print the IAM policy for, or check the AWS account.",
    )
    p.add_argument("action", choices=("setup", "policy", "doctor"))
    p.add_argument("--region", metavar="REGION")


CALLS = {
    "resources": lambda ns: ("resources", {"regions": ns.regions, "all_owners": ns.all_owners}),
    "cleanup": lambda ns: ("cleanup", {"yes": ns.yes, "all_owners": ns.all_owners}),
    "aws": lambda ns: ("aws", {"action": ns.action, "region": ns.region}),
}
