"""How the scheduler notices a trial's end at once instead of at its next poll.

Between two polls the scheduler watches the `events.jsonl` of its running trials
(a stat every few milliseconds: cheap) and wakes as soon as one of them gains an
`exit` event, so the freed slot gets its next trial within milliseconds. The
store stays the one judge of a trial's status: a wake-up only makes the
scheduler look now rather than at its next poll; metric lines do not wake it
(a trial that logs a lot costs no extra store refreshes). A remote trial's
mirror only grows when the scheduler pulls it, so those are found by the poll.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..events import EVENTS_FILE

CHECK_EVERY = 0.004  # seconds between two looks at the files while waiting...
STAT_COST = 0.0005  # ...and at least this much per file: a wide sweep stats no more often
TAIL = 4096  # bytes of new output searched for the exit event
EXIT_MARK = b'"type":"exit"'


class EndWatch:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}  # events file -> size at the last look

    def wait(self, run_dirs: list[Path], timeout: float) -> bool:
        """Sleep up to `timeout`; True as soon as one of the runs wrote its exit event."""
        files = [os.path.join(d, EVENTS_FILE) for d in run_dirs]
        sizes = self.sizes = {f: self.sizes.get(f, 0) for f in files}  # forget ended trials
        pause = max(CHECK_EVERY, STAT_COST * len(files))
        deadline = time.monotonic() + timeout
        while True:
            for path in files:
                try:
                    size = os.stat(path).st_size
                except FileNotFoundError:
                    continue
                if size != sizes[path] and self._exited(path, size):
                    return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))

    def _exited(self, path: str, size: int) -> bool:
        """The file grew (or shrank) since the last look: does the new part end the run?"""
        seen = self.sizes[path]
        self.sizes[path] = size
        if size < seen:  # rewritten (never in practice): look again from the start
            seen = 0
        try:
            with open(path, "rb") as f:
                f.seek(max(seen, size - TAIL))
                return EXIT_MARK in f.read(size - seen)
        except OSError:
            return False
