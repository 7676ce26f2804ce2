"""The local backend's clock: one entry a schedule in the user's crontab, kept by
python-crontab (never hand-written crontab text). The entry's command is only

    RUNCTL_HOME='/home/ann/.runctl' '/usr/bin/python3' -m runctl_jupyter schedule fire NAME

every value shell-quoted, NAME checked to [A-Za-z0-9._-]; the entry's comment
`runctl:NAME` finds it again. The crontab is the user's (`crontab -l`), or a file:
c.Runctl.crontab_file or $RUNCTL_CRONTAB (tests, machines with no cron daemon)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, RunctlError
from .files import check_schedule_name

COMMENT_PREFIX = "runctl:"


def open_crontab(crontab_file: str = "") -> Any:
    try:
        from crontab import CronTab
    except ImportError as exc:
        raise MissingDependency("python-crontab") from exc
    path = crontab_file or os.environ.get("RUNCTL_CRONTAB", "")
    try:
        if path:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            Path(path).expanduser().touch(exist_ok=True)
            return CronTab(tabfile=str(Path(path).expanduser()))
        return CronTab(user=True)
    except (OSError, ValueError) as exc:
        raise RunctlError(
            f"cannot read the crontab ({exc}): install cron, or set c.Runctl.crontab_file "
            "(or $RUNCTL_CRONTAB) to a crontab file your scheduler reads"
        ) from None


def fire_command(home: Path, name: str, if_new_data: bool = False) -> str:
    """The shell line cron runs: this Python, this home, `schedule fire NAME`."""
    words = [sys.executable, "-m", "runctl_jupyter", "schedule", "fire", check_schedule_name(name)]
    if if_new_data:
        words.append("--if-new-data")
    env = f"RUNCTL_HOME={shlex.quote(str(Path(home).resolve()))}"
    return env + " " + " ".join(shlex.quote(w) for w in words)


def _write(tab: Any) -> None:
    try:
        tab.write()
    except (OSError, ValueError) as exc:
        raise RunctlError(
            f"cannot write the crontab ({exc}): check `crontab -l` works, or set "
            "c.Runctl.crontab_file to a crontab file"
        ) from None


def install_entry(
    crontab_file: str, home: Path, name: str, cron: str, enabled: bool, if_new_data: bool
) -> str:
    """Add (or replace) the schedule's entry; returns the line as written."""
    tab = open_crontab(crontab_file)
    tab.remove_all(comment=COMMENT_PREFIX + name)
    job = tab.new(command=fire_command(home, name, if_new_data), comment=COMMENT_PREFIX + name)
    job.setall(cron)
    job.enable(enabled)
    _write(tab)
    return job.render()


def set_entry_enabled(crontab_file: str, name: str, enabled: bool) -> bool:
    """Comment the entry out (pause) or back in (resume); False when it is missing."""
    tab = open_crontab(crontab_file)
    jobs = list(tab.find_comment(COMMENT_PREFIX + name))
    for job in jobs:
        job.enable(enabled)
    if jobs:
        _write(tab)
    return bool(jobs)


def remove_entry(crontab_file: str, name: str) -> int:
    tab = open_crontab(crontab_file)
    removed = tab.remove_all(comment=COMMENT_PREFIX + name)
    if removed:
        _write(tab)
    return removed


def entry_lines(crontab_file: str, name: str) -> list[str]:
    return [job.render() for job in open_crontab(crontab_file).find_comment(COMMENT_PREFIX + name)]
