"""GET /runctl/api/schedules: the schedules for the sidebar's Schedules tab (a failed
fired run is visible there, as in `runctl schedules`)."""

from __future__ import annotations

from typing import Any

from ..schedules.api import schedule_row
from ..schedules.files import all_schedules


def schedules_payload(session: Any) -> dict[str, Any]:
    rows = [schedule_row(session, s) for s in all_schedules(session.store.home)]
    return {"schedules": rows}
