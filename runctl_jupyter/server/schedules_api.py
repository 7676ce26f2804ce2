"""GET /runctl/api/schedules: the schedules for the sidebar's Schedules tab (a failed
fired run is visible there, as in `runctl schedules`)."""

from __future__ import annotations

from typing import Any

from ..schedules.api import schedule_row, with_fired
from ..schedules.files import all_schedules


def schedules_payload(session: Any) -> dict[str, Any]:
    # an AWS schedule's fired runs are found in S3 (with_fired), as `runctl schedules` does
    rows = [
        schedule_row(session, with_fired(session, s)) for s in all_schedules(session.store.home)
    ]
    return {"schedules": rows}
