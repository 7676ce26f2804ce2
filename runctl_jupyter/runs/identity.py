"""Who the caller is, in a team (c.Runctl.team): the owner a run records, and who may stop it.

With a team, a run's owner is the caller's IAM identity (`sts:GetCallerIdentity`: an IAM
user's name, an assumed role's session name; aws/clients.py `owner_from_arn`), as the
AWS tags have always said: it is the owner key of the team's prefix in S3 and what the
team policy's `${aws:username}` compares with (aws/team_policy.py). With no team, the
owner is c.Runctl.owner (the login name by default), as before.

A teammate's run may be stopped only by its owner or by a user or role named in
c.Runctl.team_admins; IAM says the same (the team policy's conditions on
`aws:ResourceTag/runctl:owner`), this says it first, in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..aws.clients import owner_from_arn
from ..errors import RunctlError


@dataclass(frozen=True)
class Caller:
    arn: str

    @property
    def name(self) -> str:
        """What a run records as its owner: the user's name, an assumed role's session name."""
        return owner_from_arn(self.arn)

    def names(self) -> set[str]:
        """Every name c.Runctl.team_admins may use for the caller: the ARN, the user (or
        session) name, an assumed role's role name."""
        found = {self.arn, self.name}
        parts = self.arn.rsplit(":", 1)[-1].split("/")
        if parts[0] == "assumed-role" and len(parts) >= 2:
            found.add(parts[1])
        return found


def caller(session: Any) -> Caller:
    """The caller's IAM identity, asked once a session (one line when AWS says no)."""
    found = getattr(session, "_team_caller", None)
    if found is None:
        ident = session.backend("aws").clients.identity()
        found = Caller(str(ident["Arn"]))
        session._team_caller = found
    return found


def run_owner(session: Any) -> str:
    """The owner a new run records: c.Runctl.owner, or in a team the IAM identity (a
    different c.Runctl.owner set on purpose is refused: the team's IAM policy would refuse
    its keys and its tags)."""
    config = session.config
    if not config.team:
        return str(config.owner)
    who = caller(session).name
    if session._owner_chosen() and config.owner != who:
        raise RunctlError(
            f"c.Runctl.owner is {config.owner!r} but your IAM identity is {who!r}: in team "
            f"{config.team!r} a run's owner is the IAM identity; unset c.Runctl.owner"
        )
    return who


def check_may_stop(session: Any, spec: dict) -> None:
    """Refuse, in one line, to stop a teammate's run unless the caller owns it or is one
    of c.Runctl.team_admins. No team: every run here is the caller's."""
    config = session.config
    owner = str(spec.get("owner") or "")
    if not config.team or not owner:
        return
    if spec.get("backend", "local") == "local":
        run_dir = session.store.run_dir(spec["run_id"])
        if session.backend("local").is_alive(run_dir, spec):
            return  # its agent lives on this machine (this boot, its pid): this home's own
    me = caller(session)
    if owner == me.name or set(config.team_admins) & me.names():
        return
    raise RunctlError(
        f"run {spec.get('run_id')} is {owner}'s: only {owner} or a team admin "
        f"(c.Runctl.team_admins) may stop it; ask {owner}, or an admin, to stop it"
    )
