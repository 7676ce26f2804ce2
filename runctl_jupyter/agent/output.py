"""What the code prints and logs, turned into events.

Printed lines become `log` events, one per stream and tick; with `--metrics`,
stdout's lines become `metric` events too (`MetricParser`: `loss=0.3`, `loss: 0.3`,
JSON). The in-run `runctl` object writes its metrics, checkpoints and warnings to
`runtime/<attempt>-<pid>.jsonl`; `RuntimeTail` reads what is new in them each tick.
stdout.log keeps every byte; a `log` event keeps only the tail of a flood.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

LOG_EVENT_MAX_CHARS = 64 * 1024
_NUMBER = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf)"
_STEP_KEYS = ("step", "epoch", "iter", "iteration")


class MetricParser:
    """Metrics from printed lines (`--metrics loss,acc`): `loss=0.3`, `loss: 0.3`, JSON."""

    def __init__(self, names: list[str]):
        self.names = [n for n in names if n]
        self.step = -1
        keys = "|".join(re.escape(n) for n in [*self.names, *_STEP_KEYS])
        self._pattern = re.compile(rf"(?<![\w.])({keys})\s*[=:]\s*{_NUMBER}", re.IGNORECASE)

    def parse(self, line: str) -> dict | None:
        if not self.names:
            return None
        found: dict[str, float] = {}
        stripped = line.strip()
        if stripped.startswith("{"):
            try:
                data = json.loads(stripped)
            except ValueError:
                data = None
            if isinstance(data, dict):
                found = {k: float(v) for k, v in data.items() if isinstance(v, (int, float))}
        if not found:
            found = {m.group(1).lower(): float(m.group(2)) for m in self._pattern.finditer(line)}
        step = next((found.pop(k) for k in _STEP_KEYS if k in found), None)
        for k in _STEP_KEYS:
            found.pop(k, None)
        values = {n: found[n.lower()] for n in self.names if n.lower() in found}
        values.update({n: found[n] for n in self.names if n in found})
        if not values:
            return None
        self.step = int(step) if step is not None else self.step + 1
        return {"step": self.step, "values": values}


class RuntimeTail:
    """Reads new complete lines of every runtime/<attempt>-<pid>.jsonl file."""

    def __init__(self, folder: Path, attempt: int):
        self.folder = folder
        self.prefix = f"{attempt}-"  # earlier attempts' files were read by their own agents
        self.offsets: dict[str, int] = {}

    def read(self) -> list[dict]:
        records: list[dict] = []
        try:
            entries = list(os.scandir(self.folder))
        except FileNotFoundError:
            return records
        for entry in entries:
            if not entry.name.startswith(self.prefix):
                continue
            offset = self.offsets.get(entry.name, 0)
            if entry.stat().st_size <= offset:
                continue
            with open(entry.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n")
            if end < 0:
                continue
            self.offsets[entry.name] = offset + end + 1
            for line in data[: end + 1].splitlines():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    continue
        records.sort(key=lambda r: r.get("t", 0))
        return records


class PrintedLines:
    """The runner's stdout and stderr cut into whole lines (a line read in two chunks
    is one line), and the lines not yet sent as `log` events."""

    def __init__(self) -> None:
        self.partial = {"stdout": b"", "stderr": b""}
        self.pending: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def take(self, stream: str, data: bytes) -> list[str]:
        """The lines `data` completes (the rest waits for its newline)."""
        data = self.partial[stream] + data
        end = data.rfind(b"\n")
        if end < 0:
            self.partial[stream] = data
            return []
        self.partial[stream] = data[end + 1 :]
        lines = [raw.decode("utf-8", "replace") for raw in data[: end + 1].splitlines()]
        self.pending[stream].extend(lines)
        return lines

    def log_events(self) -> list[tuple[str, str]]:
        """(stream, text) of one `log` event per stream with lines pending."""
        out = []
        for stream, lines in self.pending.items():
            if not lines:
                continue
            text = "\n".join(lines) + "\n"
            if len(text) > LOG_EVENT_MAX_CHARS:  # the whole output stays in stdout.log
                text = (
                    f"[... {len(text) - LOG_EVENT_MAX_CHARS} characters not streamed]\n"
                    + text[-LOG_EVENT_MAX_CHARS:]
                )
            out.append((stream, text))
            lines.clear()
        return out
