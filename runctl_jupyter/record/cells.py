"""The cells of a record: summary, parameters, setup, the code's outputs, metrics,
environment; and the summary put first in a whole-notebook run's executed notebook.
Stdlib only.
"""

from __future__ import annotations

import datetime
import html
import math
import re
from typing import Any

from ..distributed import describe as describe_processes
from ..errors import RunctlError
from .facts import RunFacts, trigger_text
from .figure import metrics_figure
from .notebook import (
    PLOTLY_MIME,
    RECORD_FILE,
    SUMMARY_TAG,
    cell_tags,
    load_notebook,
    markdown_cell,
)

KEY_PACKAGES = (
    "numpy", "scipy", "pandas", "scikit-learn", "torch", "torchvision", "tensorflow", "keras",
    "jax", "jaxlib", "transformers", "lightning", "pytorch-lightning", "xgboost", "lightgbm",
    "catboost", "optuna", "cloudpickle", "runctl-jupyter",
)  # fmt: skip
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!{}$])")  # $ would start LaTeX in Jupyter


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


def summary_markdown(facts: RunFacts) -> str:
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
    processes = describe_processes(spec.get("distributed"))
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
    if trigger_text(spec.get("trigger")):
        rows.append(("Fired by", trigger_text(spec.get("trigger"))))
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


def parameters_source(params: dict) -> str:
    lines = ["# Parameters (papermill's `parameters` cell)"]
    for key, value in params.items():
        if str(key).isidentifier():
            lines.append(f"{key} = {_literal(value)}")
        else:
            lines.append(f"# {key!r} = {_literal(value)}  (not a Python name)")
    return "\n".join(lines)


def setup_source(facts: RunFacts) -> str:
    lines = [
        "# Setup: the `runctl` object (it only prints outside a run)",
        "from runctl_jupyter.runtime import runctl",
    ]
    names = [k for k in (facts.spec.get("params") or {}) if str(k).isidentifier()]
    if names:
        lines.append(f"runctl.use_params({{name: globals()[name] for name in {names!r}}})")
    if facts.objects_b64() is not None:
        shipped = ", ".join(map(str, facts.spec.get("objects", []))) or "the notebook objects"
        run_id = str(facts.spec.get("run_id", ""))
        lines += [
            "from runctl_jupyter.record import load_shipped_objects",
            "",
            f"# The notebook objects the run was given ({shipped}), from this record's metadata",
            f"globals().update(load_shipped_objects({run_id!r}))",
        ]
    return "\n".join(lines)


def code_outputs(facts: RunFacts) -> list[dict]:
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


def metrics_output(facts: RunFacts) -> dict:
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


def environment_markdown(env: dict) -> str:
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


def notebook_record(facts: RunFacts) -> dict:
    run_dir = facts.run_dir
    for name in ("output.ipynb", facts.spec.get("entry", "input.ipynb")):
        try:
            notebook = load_notebook(run_dir / name)
            break
        except RunctlError:
            continue
    else:
        notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    notebook["nbformat"] = 4
    notebook["nbformat_minor"] = max(5, int(notebook.get("nbformat_minor") or 0))
    notebook.setdefault("metadata", {})
    cells = [c for c in notebook.get("cells", []) if SUMMARY_TAG not in cell_tags(c)]
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
        markdown_cell(summary_id, summary_markdown(facts), tags=[SUMMARY_TAG]),
        *cells,
    ]
    return notebook
