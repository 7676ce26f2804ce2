"""A teammate's run mirrored here (`compare alice/3f2a`, docs/teams.md): read-only.
Its folder is a mirror of what its owner published to the team store; this home never
launches, stops or resumes it, and `pull` fetches its new event chunks."""

from __future__ import annotations

from pathlib import Path

from ..errors import RunctlError


class TeamBackend:
    name = "team"

    def __init__(self, parent=None, **kwargs) -> None:  # noqa: ANN001 - traitlets-style parent
        self.parent = parent

    def _refuse(self, spec: dict, what: str) -> RunctlError:
        owner = (spec.get("target") or {}).get("owner") or spec.get("owner")
        return RunctlError(
            f"run {spec.get('run_id')} is {owner}'s (a team mirror): only its owner can {what} it"
        )

    def start(self, run_dir: Path, spec: dict, attempt: int) -> dict:
        raise self._refuse(spec, "start or resume")

    def stop(self, run_dir: Path, spec: dict, force: bool = False, reason: str = "user") -> None:
        raise self._refuse(spec, "stop")

    def pull(self, run_dir: Path, spec: dict) -> None:
        from ..aws.clients import Clients
        from ..aws.team_pull import pull_chunks

        pull_chunks(Clients().s3, Path(run_dir), spec)

    def is_alive(self, run_dir: Path, spec: dict) -> bool | None:
        return None
