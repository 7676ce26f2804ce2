"""The AWS account and what runctl leaves in it: `aws setup | policy | doctor`,
`resources` (the cloud resources runctl manages) and `cleanup` (the orphaned ones,
deleted with --yes)."""

from __future__ import annotations

from typing import Any

from .value_types import region_list

__all__ = ["CALLS", "add_aws", "add_cleanup", "add_resources"]


def _where(p: Any) -> None:
    """--region R (repeatable, or R1,R2) and --all-regions: where to look."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--region",
        dest="regions",
        action="extend",
        type=region_list,
        default=None,
        metavar="REGION",
        help="look in this region (repeat it, or R1,R2); default: c.AWSBackend.region",
    )
    g.add_argument(
        "--all-regions",
        action="store_true",
        help="look in every region enabled for the account (ec2 DescribeRegions)",
    )


def add_resources(sub: Any) -> None:
    p = sub.add_parser(
        "resources",
        help="runctl-managed cloud resources",
        description=(
            "List cloud resources with $/h and $/month; what could not be read is named "
            "under the table and the exit code is 3."
        ),
    )
    _where(p)
    p.add_argument("--all-owners", action="store_true")


def add_cleanup(sub: Any) -> None:
    p = sub.add_parser(
        "cleanup",
        help="delete orphaned cloud resources",
        description=(
            "List orphaned resources; delete them with --yes. On a partial listing "
            "(a describe call failed) nothing is deleted unless --partial too."
        ),
    )
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument(
        "--partial",
        action="store_true",
        help="delete even if the listing is partial (with --yes, or a yes at a terminal)",
    )
    _where(p)
    p.add_argument("--all-owners", action="store_true")


def add_aws(sub: Any) -> None:
    p = sub.add_parser(
        "aws",
        help="aws setup | policy | doctor",
        description="Set up, print the IAM policy for, or check the AWS account.",
    )
    p.add_argument("action", choices=("setup", "policy", "doctor"))
    p.add_argument("--region", metavar="REGION")
    p.add_argument(
        "--team",
        metavar="TEAM",
        help="policy: a team member's (reads teams/TEAM/, writes only its own owner key, "
        "stops only its own runs)",
    )
    p.add_argument(
        "--admin", action="store_true", help="policy --team: a team admin's (acts on the team's runs)"
    )


CALLS = {
    "resources": lambda ns: (
        "resources",
        {"regions": ns.regions, "all_regions": ns.all_regions, "all_owners": ns.all_owners},
    ),
    "cleanup": lambda ns: (
        "cleanup",
        {
            "yes": ns.yes,
            "partial": ns.partial,
            "regions": ns.regions,
            "all_regions": ns.all_regions,
            "all_owners": ns.all_owners,
        },
    ),
    "aws": lambda ns: (
        "aws",
        {"action": ns.action, "region": ns.region, "team": ns.team, "admin": ns.admin},
    ),
}
