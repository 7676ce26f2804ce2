"""Opening a run's record from the RunPanel.

The record lives in the run folder under RUNCTL_HOME, usually outside the
Jupyter server's root, where the browser cannot open it. Like the lab sidebar
(server/handlers.py, OpenRecordHandler), the panel's "Open record" button copies
it, on click, to `runctl-records/<name>-<id>.ipynb` under the notebook's working
directory and links that copy (a relative link JupyterLab opens). A click before
the record exists (it is written when the run ends) asks for the copy then; when
the copy cannot be made, the record's absolute path is shown instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ._format import esc
from .summary import record_link

RECORDS_FOLDER = "runctl-records"


def record_copy_name(name: str | None, run_id: str) -> str:
    """The copy's file name, the same for the panel and the lab sidebar."""
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name or run_id))[:60]
    return f"{safe}-{run_id}.ipynb"


def copy_record(source: str | os.PathLike, name: str | None, run_id: str) -> Path:
    """Copy a record to `runctl-records/` under the working directory (atomically,
    replacing an older copy); returns the copy's path. Raises OSError."""
    folder = Path.cwd() / RECORDS_FOLDER
    folder.mkdir(exist_ok=True)
    target = folder / record_copy_name(name, run_id)
    tmp = folder / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _below_cwd(path: str) -> bool:
    try:
        return not os.path.relpath(os.path.abspath(path)).startswith("..")
    except ValueError:  # another drive
        return False


class RecordOpener:
    """The panel's "Open record" button and the link it leaves next to it."""

    def __init__(self, record_path: str | None):
        self.record_path = record_path
        self.copy: Path | None = None  # the copy made on the last click
        self.pending = False  # clicked before the record existed: copy when the run ends
        self.error = ""
        self.button = None
        self.note = None

    def build(self, widgets, run: dict) -> tuple:
        """(button, note) widgets; the button is hidden when there is nothing to copy."""
        below = bool(self.record_path and _below_cwd(self.record_path))
        self.button = widgets.Button(
            description="Open record",
            icon="book",
            tooltip=f"copy the run's record.ipynb to {RECORDS_FOLDER}/ here and link it",
            layout=widgets.Layout(display="none" if below or not self.record_path else ""),
        )
        self.note = widgets.HTML(record_link(self.record_path, run.get("id")) if below else "")
        return self.button, self.note

    def click(self, run: dict) -> None:
        if not self.record_path:
            return
        if not Path(self.record_path).is_file():
            self.pending = True
            name = record_copy_name(run.get("name"), str(run.get("id")))
            self._show(
                "the record is written when the run ends: it is copied to "
                f"<code>{esc(RECORDS_FOLDER)}/{esc(name)}</code> then"
            )
            return
        self._copy(run)
        self._show(self.link())

    def finish(self, run: dict) -> str | None:
        """The record path the static summary links: the copy when one was asked for
        (made again: the record is rewritten when a resumed run ends)."""
        asked = self.pending or self.copy is not None
        if asked and self.record_path and Path(self.record_path).is_file():
            self._copy(run)
        return str(self.copy) if self.copy is not None else self.record_path

    def link(self) -> str:
        if self.copy is not None:
            return record_link(str(self.copy))
        return f"could not copy the record here ({esc(self.error)}); it is at " + record_link(
            self.record_path
        )

    def _copy(self, run: dict) -> None:
        self.pending = False
        assert self.record_path, "click() and finish() copy only a record that exists"
        try:
            self.copy = copy_record(self.record_path, run.get("name"), str(run.get("id")))
        except OSError as exc:
            self.copy, self.error = None, exc.strerror or str(exc)

    def _show(self, html: str) -> None:
        if self.note is not None:
            self.note.value = html
