"""record.ipynb: a finished run as an executed notebook anyone can open and rerun.

Stdlib only: the agent writes the record next to the code, on a bare EC2
instance too, just before its `exit` event. The notebook is nbformat 4.5 written
as plain JSON; its `metadata.runctl` carries the spec, a run summary and the
shipped notebook objects, so `runctl rerun record.ipynb` needs nothing else.

Cells: summary (markdown) | parameters (tagged, papermill's convention) | setup
(the `runctl` object and the shipped objects) | the code with its output | the
metrics figure (a plotly mime bundle as plain JSON, with an HTML table fallback)
| the environment (markdown). A whole-notebook run (kind `notebook`) is its
executed `output.ipynb` with the summary inserted first.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import pickle
import re
import sys
from pathlib import Path
from typing import Any

from .errors import RunctlError
from .events import EVENTS_FILE, read_events

RECORD_FILE = "record.ipynb"
RECORD_FORMAT = 1
MAX_OUTPUT_LINES = 10_000
MAX_OUTPUT_CHARS = 300_000  # ~300 KB of output text at most, however long the lines
MAX_POINTS = 2_000
PLOTLY_MIME = "application/vnd.plotly.v1+json"
CODE_TAG = "runctl-code"
SUMMARY_TAG = "runctl-summary"
KEY_PACKAGES = (
    "numpy", "scipy", "pandas", "scikit-learn", "torch", "torchvision", "tensorflow", "keras",
    "jax", "jaxlib", "transformers", "lightning", "pytorch-lightning", "xgboost", "lightgbm",
    "catboost", "optuna", "cloudpickle", "runctl-jupyter",
)  # fmt: skip
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!{}$])")  # $ would start LaTeX in Jupyter


# --------------------------------------------------------------------------- public API


def write_record(run_dir: str | os.PathLike, final: dict | None = None) -> Path:
    """Write `record.ipynb` into the run folder atomically; return its path.

    `final` is the `exit` event about to be written (status, reason, exit_code,
    error, duration); without it the last `exit` event of the stream is used.
    """
    run_dir = Path(run_dir)
    notebook = build_record(run_dir, final)
    # No indent: it would put every figure point on its own line (~25% of the size).
    text = json.dumps(notebook, ensure_ascii=False, allow_nan=False) + "\n"
    path = run_dir / RECORD_FILE
    tmp = run_dir / f".{RECORD_FILE}.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def build_record(run_dir: str | os.PathLike, final: dict | None = None) -> dict:
    """The record notebook (nbformat 4.5) as a JSON-ready dict."""
    facts = _RunFacts(Path(run_dir), final)
    if facts.spec.get("kind") == "notebook":
        notebook = _notebook_record(facts)
    else:
        cells = [
            _markdown("summary", _summary_markdown(facts), tags=[SUMMARY_TAG]),
            _code("parameters", _parameters_source(facts.params), tags=["parameters"]),
            _code("setup", _setup_source(facts)),
            _code("code", facts.code, outputs=_code_outputs(facts), tags=[CODE_TAG]),
            _code("metrics", "# metrics", outputs=[_metrics_output(facts)]),
            _markdown("environment", _environment_markdown(facts.env)),
        ]
        notebook = {
            "nbformat": 4,
            "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"},
            },
            "cells": cells,
        }
    notebook["metadata"]["runctl"] = _clean(
        {
            "format": RECORD_FORMAT,
            "spec": facts.spec,
            "run": facts.summary(),
            "env": facts.env,
            "objects_b64": facts.objects_b64(),
        }
    )
    return notebook


def read_record(path: str | os.PathLike) -> dict:
    """What a rerun needs, from a record alone: {"spec", "objects", "code", "params"}.

    `code` is the record's code cell (edit it there to rerun changed code); for a
    whole-notebook run it is the notebook (JSON text) without outputs, summary
    or injected parameters. `objects` is the shipped objects.pkl, or None.
    """
    notebook = _load_notebook(Path(path))
    meta = notebook.get("metadata", {}).get("runctl")
    if not isinstance(meta, dict) or not isinstance(meta.get("spec"), dict):
        raise RunctlError(
            f"{path} is not a runctl record (no metadata.runctl): pass a record.ipynb written by runctl"
        )
    if meta.get("format") != RECORD_FORMAT:
        raise RunctlError(
            f"{path} is a runctl record of format {meta.get('format')!r}, this runctl reads "
            f"format {RECORD_FORMAT}: upgrade runctl-jupyter"
        )
    spec = meta["spec"]
    if spec.get("kind") == "notebook":
        code = json.dumps(_strip_to_input(notebook), indent=1)
    else:
        cells = [c for c in notebook.get("cells", []) if CODE_TAG in _tags(c)]
        if not cells:
            raise RunctlError(
                f"{path} has no cell tagged {CODE_TAG!r}: restore the tag on the code cell"
            )
        code = _source(cells[0])
    encoded = meta.get("objects_b64")
    objects = base64.b64decode(encoded) if encoded else None
    return {"spec": spec, "objects": objects, "code": code, "params": dict(spec.get("params", {}))}


def load_shipped_objects(run_id: str, path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The notebook objects shipped with run `run_id`, read from its record.

    Called by a record's setup cell: the record is found at `path`, the notebook
    Jupyter says is open, `record.ipynb` here, or any notebook here with that run id.
    """
    candidates = [Path(path)] if path else []
    main = sys.modules.get("__main__")
    for attr in ("__vsc_ipynb_file__", "__session__"):
        value = getattr(main, attr, None)
        if isinstance(value, str) and value.endswith(".ipynb"):
            candidates.append(Path(value))
    session = os.environ.get("JPY_SESSION_NAME", "")  # the notebook's path, set by Jupyter
    if session.endswith(".ipynb"):
        candidates.append(Path(session))
    candidates.append(Path(RECORD_FILE))
    candidates.extend(sorted(Path.cwd().glob("*.ipynb")))
    for candidate in candidates:
        try:
            meta = _load_notebook(candidate)["metadata"]["runctl"]
        except (RunctlError, KeyError, TypeError):
            continue
        if meta.get("spec", {}).get("run_id") == run_id and meta.get("objects_b64"):
            return pickle.loads(base64.b64decode(meta["objects_b64"]))
    raise RunctlError(
        f"cannot find the record of run {run_id} to load its notebook objects: call "
        f"load_shipped_objects({run_id!r}, 'path/to/record.ipynb') in the setup cell"
    )


def downsample(xs: list, ys: list, max_points: int = MAX_POINTS) -> tuple[list, list]:
    """At most `max_points` points: the ends, plus each bucket's min and max (spikes survive)."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(1, (max_points - 2) // 2)
    size = (n - 2) / buckets
    keep = {0, n - 1}
    for b in range(buckets):
        lo, hi = 1 + int(b * size), 1 + int((b + 1) * size)
        if lo >= hi:
            continue
        segment = ys[lo:hi]
        keep.add(lo + segment.index(min(segment)))
        keep.add(lo + segment.index(max(segment)))
    index = sorted(keep)
    return [xs[i] for i in index], [ys[i] for i in index]


def metrics_figure(series: dict[str, tuple[list, list]], title: str = "metrics") -> dict:
    """A plotly figure dict: one line per metric vs step; metrics whose scales differ
    by more than 10x go on their own stacked subplot."""
    groups: list[list[str]] = []
    magnitude: dict[str, float] = {}
    for name, (_, ys) in series.items():
        top = max((abs(y) for y in ys), default=0.0)
        magnitude[name] = math.log10(top) if top > 0 else 0.0
        for group in groups:
            if abs(magnitude[group[0]] - magnitude[name]) <= 1.0:
                group.append(name)
                break
        else:
            groups.append([name])
    n = max(1, len(groups))
    gap = 0.08
    height = (1.0 - gap * (n - 1)) / n
    layout: dict[str, Any] = {
        "title": {"text": html.escape(title)},
        "height": 260 + 180 * (n - 1),
        "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
        "hovermode": "x unified",
    }
    data = []
    for i, group in enumerate(groups):
        suffix = "" if i == 0 else str(i + 1)
        top = 1.0 - i * (height + gap)
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, top - height), top], "anchor": f"x{suffix}"}
        xaxis: dict[str, Any] = {"anchor": f"y{suffix}", "showticklabels": i == n - 1}
        if i:
            xaxis["matches"] = "x"
        if i == n - 1:
            xaxis["title"] = {"text": "step"}
        layout[f"xaxis{suffix}"] = xaxis
        for name in group:
            xs, ys = downsample(*series[name])
            data.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": html.escape(name),
                    "x": xs,
                    "y": [float(f"{y:.7g}") for y in ys],
                    "xaxis": f"x{suffix}",
                    "yaxis": f"y{suffix}",
                }
            )
    return {"data": data, "layout": layout}


# --------------------------------------------------------------------------- reading a run


class _RunFacts:
    """Everything the record says, read once from the run folder."""

    def __init__(self, run_dir: Path, final: dict | None):
        self.run_dir = run_dir
        self.spec: dict = _read_json(run_dir / "spec.json", {})
        self.params: dict = _read_json(run_dir / "params.json", self.spec.get("params") or {})
        self.env: dict = _read_json(run_dir / "env.json", {})
        self.events, _ = read_events(run_dir / EVENTS_FILE)
        exits = [e for e in self.events if e.get("type") == "exit"]
        self.attempts = max((int(e.get("attempt") or 1) for e in self.events), default=1)
        if final is None:
            self.final = exits[-1] if exits else None
            earlier = exits[:-1]
        else:
            self.final = dict(final)
            earlier = [e for e in exits if int(e.get("attempt") or 1) < self.attempts]
        durations = [e.get("duration") for e in earlier]
        if self.final is not None:
            durations.append(self.final.get("duration"))
        self.duration = sum(d for d in durations if isinstance(d, (int, float))) or None
        self.code = self._code()

    def _code(self) -> str:
        entry = self.run_dir / self.spec.get("entry", "code.py")
        try:
            return entry.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "# the code of this run was not found in its run folder\n"

    @property
    def status(self) -> str:
        if self.final is not None:
            return str(self.final.get("status"))
        statuses = [e for e in self.events if e.get("type") == "status"]
        return str(statuses[-1]["status"]) if statuses else "unknown"

    @property
    def started(self) -> float | None:
        times = [e["t"] for e in self.events if isinstance(e.get("t"), (int, float))]
        return min(times) if times else self.spec.get("created")

    def series(self) -> dict[str, tuple[list, list]]:
        """name -> (steps, values), sorted by step; a step logged again (resume) keeps the last."""
        points: dict[str, dict[int, float]] = {}
        for event in self.events:
            if event.get("type") != "metric":
                continue
            step = event.get("step")
            if isinstance(step, bool) or not isinstance(step, (int, float)):
                continue
            for name, value in (event.get("values") or {}).items():
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    points.setdefault(str(name), {})[step] = float(value)
        out = {}
        for name, by_step in points.items():
            steps = sorted(by_step)
            out[name] = (steps, [by_step[s] for s in steps])
        return out

    def final_metrics(self) -> dict[str, Any]:
        last: dict[str, Any] = {}
        for event in self.events:
            if event.get("type") == "metric":
                last.update(event.get("values") or {})
        return last

    def checkpoints(self) -> list[dict]:
        return [
            {k: e.get(k) for k in ("step", "path", "bytes", "attempt")}
            for e in self.events
            if e.get("type") == "checkpoint"
        ]

    def cost(self) -> float | None:
        if self.spec.get("backend", "local") == "local":
            return 0.0
        costs = [e.get("dollars") for e in self.events if e.get("type") == "cost"]
        return costs[-1] if costs else None

    def summary(self) -> dict:
        if not hasattr(self, "_summary"):
            self._summary = self._make_summary()
        return self._summary

    def _make_summary(self) -> dict:
        final = self.final or {}
        return {
            "status": self.status,
            "reason": final.get("reason"),
            "exit_code": final.get("exit_code"),
            "error": final.get("error"),
            "duration": self.duration,
            "attempts": self.attempts,
            "started": self.started,
            "cost": self.cost(),
            "final_metrics": self.final_metrics(),
            "checkpoints": self.checkpoints(),
        }

    def objects_b64(self) -> str | None:
        if not hasattr(self, "_objects_b64"):
            path = self.run_dir / "objects.pkl"
            data = path.read_bytes() if path.exists() else None
            self._objects_b64 = base64.b64encode(data).decode("ascii") if data else None
        return self._objects_b64

    def output_lines(self) -> tuple[list[tuple[str, str]], int]:
        """[(stream, line)] of the code's output (the last ones), and how many were left out."""
        logs = [e for e in self.events if e.get("type") == "log"]
        lines: list[tuple[str, str]] = []
        if logs:
            attempt = None
            for event in logs:
                if self.attempts > 1 and event.get("attempt") != attempt:
                    attempt = event.get("attempt")
                    lines.append(("stdout", f"=== attempt {attempt} ===\n"))
                stream = "stderr" if event.get("stream") == "stderr" else "stdout"
                lines.extend((stream, line) for line in str(event.get("text", "")).splitlines(True))
        else:
            lines = [("stdout", line) for line in _tail_text(self.run_dir / "stdout.log")]
        kept, chars = 0, 0
        for _, line in reversed(lines):
            if kept >= MAX_OUTPUT_LINES or chars + len(line) > MAX_OUTPUT_CHARS:
                break
            kept += 1
            chars += len(line)
        return lines[len(lines) - kept :], len(lines) - kept


# --------------------------------------------------------------------------- cells


def _markdown(cell_id: str, source: str, tags: list[str] | None = None) -> dict:
    metadata = {"tags": tags} if tags else {}
    return {"cell_type": "markdown", "id": cell_id, "metadata": metadata, "source": source}


def _code(cell_id: str, source: str, outputs: list | None = None, tags: list | None = None) -> dict:
    return {
        "cell_type": "code",
        "id": cell_id,
        "metadata": {"tags": tags} if tags else {},
        "execution_count": None,
        "outputs": outputs or [],
        "source": source,
    }


def _md(value: Any) -> str:
    """Run text made safe for markdown: no raw HTML, no markup, one line."""
    text = html.escape(str(value), quote=False)
    return _MD_SPECIAL.sub(r"\\\1", text).replace("\r", " ").replace("\n", " ")


def _num(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.4g}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def _when(t: Any) -> str:
    if not isinstance(t, (int, float)):
        return "unknown"
    moment = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def s3_location(spec: dict) -> str | None:
    """Where a cloud run's folder is synced (spec["sync"], docs/aws.md), or None."""
    sync = spec.get("sync") or {}
    if sync.get("kind") != "s3" or not sync.get("bucket"):
        return None
    prefix = str(sync.get("prefix") or "runctl/")
    prefix += "" if prefix.endswith("/") else "/"
    return f"s3://{sync['bucket']}/{prefix}runs/{spec.get('run_id', '')}/"


def _summary_markdown(facts: _RunFacts) -> str:
    spec, summary = facts.spec, facts.summary()
    status = summary["status"] + (f" ({summary['reason']})" if summary["reason"] else "")
    target = spec.get("target") or {}
    backend = str(spec.get("backend", "local"))
    options = spec.get("options") or {}
    instance = target.get("instance_type") or options.get("instance_type")
    if instance:
        backend += f" · {instance}" + (" (spot)" if target.get("spot") else "")
    cost = summary["cost"]
    rows = [
        ("Status", status),
        ("Duration", _duration(summary["duration"])),
        ("Started", _when(summary["started"])),
        ("Attempts", summary["attempts"]),
        ("Experiment", spec.get("experiment", "")),
        ("Project", spec.get("project", "")),
        ("Backend", backend),
        ("Cost", "unknown" if cost is None else f"${cost:.2f}"),
    ]
    from .distributed import describe

    processes = describe(spec.get("distributed"))
    if processes:
        rows.insert(rows.index(("Backend", backend)) + 1, ("Processes", processes))
    if spec.get("kind") == "script":
        script = spec.get("script_path") or spec.get("entry", "")
        rows.append(("Script", " ".join(map(str, [script, *spec.get("args", [])]))))
    location = s3_location(spec)
    if location:
        rows.append(("Stored in", f"{location} (events, logs, checkpoints, this record)"))
    if spec.get("tags"):
        rows.append(("Tags", ", ".join(map(str, spec["tags"]))))
    if spec.get("rerun_of"):
        rows.append(("Rerun of", spec["rerun_of"]))
    error = summary.get("error") or {}
    if summary["status"] == "failed" and error:
        rows.append(("Error", f"{error.get('type', '')}: {error.get('message', '')}"))
    lines = [
        f"# Run {_md(spec.get('name', ''))} · {_md(spec.get('run_id', ''))}",
        "",
        "| | |",
        "|---|---|",
        *(f"| {key} | {_md(value)} |" for key, value in rows),
    ]
    if facts.params:
        lines += ["", "**Parameters**", "", "| name | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(repr(v))} |" for k, v in facts.params.items()]
    final = summary["final_metrics"]
    if final:
        lines += ["", "**Final metrics**", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_md(k)} | {_md(_num(v))} |" for k, v in final.items()]
    lines += [
        "",
        f"Rerun: `runctl rerun {RECORD_FILE}` (a new run), or run this notebook's cells "
        "(the `runctl` object then only prints).",
    ]
    return "\n".join(lines)


def _literal(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float({str(value)!r})"
    return repr(value)


def _parameters_source(params: dict) -> str:
    lines = ["# Parameters (papermill's `parameters` cell)"]
    for key, value in params.items():
        if str(key).isidentifier():
            lines.append(f"{key} = {_literal(value)}")
        else:
            lines.append(f"# {key!r} = {_literal(value)}  (not a Python name)")
    return "\n".join(lines)


def _setup_source(facts: _RunFacts) -> str:
    lines = [
        "# Setup: the `runctl` object (it only prints outside a run)",
        "from runctl_jupyter.runtime import runctl",
    ]
    names = [k for k in (facts.spec.get("params") or {}) if str(k).isidentifier()]
    if names:
        lines.append(f"runctl.use_params({{name: globals()[name] for name in {names!r}}})")
    if facts.objects_b64() is not None:
        names = ", ".join(map(str, facts.spec.get("objects", []))) or "the notebook objects"
        run_id = str(facts.spec.get("run_id", ""))
        lines += [
            "from runctl_jupyter.record import load_shipped_objects",
            "",
            f"# The notebook objects the run was given ({names}), from this record's metadata",
            f"globals().update(load_shipped_objects({run_id!r}))",
        ]
    return "\n".join(lines)


def _code_outputs(facts: _RunFacts) -> list[dict]:
    lines, omitted = facts.output_lines()
    outputs: list[dict] = []
    if omitted:
        note = (
            f"[runctl: {omitted:,} earlier output lines are not in this record; "
            f"all of them are in stdout.log of run {facts.spec.get('run_id', '')}]\n"
        )
        outputs.append({"output_type": "stream", "name": "stdout", "text": note})
    for stream, line in lines:
        if outputs and outputs[-1]["name"] == stream:
            outputs[-1]["text"] += line
        else:
            outputs.append({"output_type": "stream", "name": stream, "text": line})
    final = facts.final or {}
    error = final.get("error")
    if final.get("status") == "failed" and isinstance(error, dict):
        tb_text = str(error.get("traceback") or "").rstrip("\n")
        _drop_printed_traceback(outputs, tb_text)
        traceback = tb_text.splitlines()
        outputs.append(
            {
                "output_type": "error",
                "ename": str(error.get("type") or "Error"),
                "evalue": str(error.get("message") or ""),
                "traceback": traceback or [f"{error.get('type')}: {error.get('message')}"],
            }
        )
    return outputs


def _drop_printed_traceback(outputs: list[dict], traceback: str) -> None:
    """The runner also prints the traceback on stderr: show it once, as the error output."""
    if not traceback:
        return
    for output in reversed(outputs):
        if output["name"] != "stderr":
            continue
        text = output["text"].rstrip("\n")
        if text.endswith(traceback):
            output["text"] = text[: -len(traceback)]
            if not output["text"]:
                outputs.remove(output)
        return


def _metrics_output(facts: _RunFacts) -> dict:
    series = facts.series()
    if not series:
        return {
            "output_type": "display_data",
            "data": {"text/plain": "no metrics were logged"},
            "metadata": {},
        }
    figure = metrics_figure(series, title=f"{facts.spec.get('name', '')} metrics")
    rows = []
    plain = []
    for name, (steps, values) in series.items():
        cells = [name, _num(values[-1]), _num(min(values)), _num(max(values)), len(steps)]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        plain.append(f"{name}: last {_num(values[-1])} at step {steps[-1]} ({len(steps)} points)")
    table = (
        "<table><thead><tr><th>metric</th><th>last</th><th>min</th><th>max</th><th>points</th>"
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )
    return {
        "output_type": "display_data",
        "data": {PLOTLY_MIME: figure, "text/html": table, "text/plain": "\n".join(plain)},
        "metadata": {},
    }


def _environment_markdown(env: dict) -> str:
    rows = []
    python = env.get("python") or {}
    if python:
        rows.append(("Python", f"{python.get('version', '')} ({python.get('implementation', '')})"))
    os_info = env.get("os") or {}
    if os_info:
        rows.append(("OS", os_info.get("platform") or os_info.get("system", "")))
    rows.append(("GPU", _gpus(env.get("gpus"))))
    git = env.get("git")
    if git:
        text = f"{(git.get('commit') or 'no commit')[:12]} on {git.get('branch') or 'detached'}"
        if git.get("dirty"):
            text += f", dirty ({len(git.get('changed') or [])} changed files)"
        if git.get("remote"):
            text += f", {git['remote']}"
        rows.append(("Git", text))
    if env.get("seeds"):
        rows.append(("Seeds", ", ".join(f"{k}={v!r}" for k, v in env["seeds"].items())))
    host = env.get("host") or {}
    if host:
        host_python = (host.get("python") or {}).get("version", "")
        host_os = (host.get("os") or {}).get("platform", "")
        gpus = _gpus(host.get("gpus"))
        rows.append(
            ("Ran on", f"{host.get('hostname', '')}: Python {host_python}, {host_os}, GPU {gpus}")
        )
    packages = env.get("packages") or {}
    key = [f"{name} {packages[name]}" for name in KEY_PACKAGES if name in packages]
    if packages:
        rows.append(("Packages", ", ".join(key) + f" ({len(packages)} installed in all)"))
    lines = ["## Environment", "", "| | |", "|---|---|"]
    lines += [f"| {name} | {_md(value)} |" for name, value in rows]
    return "\n".join(lines)


def _gpus(gpus: Any) -> str:
    if not gpus:
        return "none"
    return ", ".join(f"{g.get('name', '?')} ({g.get('memory', '?')})" for g in gpus)


# --------------------------------------------------------------------------- notebook runs


def _notebook_record(facts: _RunFacts) -> dict:
    run_dir = facts.run_dir
    for name in ("output.ipynb", facts.spec.get("entry", "input.ipynb")):
        try:
            notebook = _load_notebook(run_dir / name)
            break
        except RunctlError:
            continue
    else:
        notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    notebook["nbformat"] = 4
    notebook["nbformat_minor"] = max(5, int(notebook.get("nbformat_minor") or 0))
    notebook.setdefault("metadata", {})
    cells = [c for c in notebook.get("cells", []) if SUMMARY_TAG not in _tags(c)]
    used = set()
    for index, cell in enumerate(cells):
        cell_id = cell.get("id")
        if (
            not isinstance(cell_id, str)
            or not re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cell_id)
            or cell_id in used
        ):
            cell["id"] = f"cell-{index}"
        used.add(cell["id"])
    summary_id = "runctl-summary" if "runctl-summary" not in used else "runctl-summary-1"
    notebook["cells"] = [
        _markdown(summary_id, _summary_markdown(facts), tags=[SUMMARY_TAG]),
        *cells,
    ]
    return notebook


def _strip_to_input(notebook: dict) -> dict:
    """The notebook as it was before running: no summary, injected parameters or outputs."""
    clean = json.loads(json.dumps(notebook))
    clean["metadata"].pop("runctl", None)
    clean["metadata"].pop("papermill", None)
    cells = []
    for cell in clean.get("cells", []):
        if {SUMMARY_TAG, "injected-parameters"} & set(_tags(cell)):
            continue
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cells.append(cell)
    clean["cells"] = cells
    return clean


# --------------------------------------------------------------------------- helpers


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def _load_notebook(path: Path) -> dict:
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise RunctlError(f"no notebook at {path}: check the path") from exc
    except (OSError, ValueError) as exc:
        raise RunctlError(f"{path} is not a readable notebook ({exc}): check the file") from exc
    if not isinstance(notebook, dict) or not isinstance(notebook.get("metadata", {}), dict):
        raise RunctlError(f"{path} is not a notebook (not a JSON object): check the file")
    return notebook


def _tags(cell: dict) -> list:
    tags = (cell.get("metadata") or {}).get("tags") or []
    return tags if isinstance(tags, list) else []


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def _tail_text(path: Path, max_bytes: int = 8 * MAX_OUTPUT_CHARS) -> list[str]:
    """The last lines of a (possibly huge) log file, without reading all of it."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", "replace").splitlines(True)
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is cut
    return lines


def _clean(value: Any) -> Any:
    """Strict JSON: non-finite floats become strings ("nan", "inf") so the notebook stays valid."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
