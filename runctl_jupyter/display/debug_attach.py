"""The attach settings of a `train --debug` run, as the panel and the shell show them.

From the run's `debugger` event (where debugpy listens on the run's machine, docs/events.md)
and what the notebook side added under `attach` (the local port, the local run folder,
the port-forwarding command of an AWS run): a VS Code launch.json "attach" entry, and
where to set breakpoints. JupyterLab's debugger debugs a notebook's own kernel (the
Jupyter Debug Protocol); it cannot attach to another process's debugpy, so the
settings name VS Code (any DAP client takes the same host, port and mappings).
"""

from __future__ import annotations

import json

from ._format import esc

JUPYTERLAB_NOTE = (
    "JupyterLab's debugger debugs this notebook's kernel only, not a run's process: attach "
    "with VS Code (or another DAP client) as below"
)


def launch_config(event: dict) -> dict:
    """The `configurations` entry of VS Code's launch.json that attaches to this run."""
    attach = event.get("attach") or {}
    remote_root = event.get("run_dir") or ""
    return {
        "name": f"runctl {attach.get('run_id') or ''}".rstrip(),
        "type": "debugpy",
        "request": "attach",
        "connect": {"host": "127.0.0.1", "port": int(attach.get("port") or event.get("port") or 0)},
        "pathMappings": [
            {"localRoot": attach.get("local_run_dir") or remote_root, "remoteRoot": remote_root}
        ],
    }


def attach_lines(event: dict) -> list[str]:
    """What to do, line by line (plain text): the shell prints these, the panel shows them."""
    state = event.get("state")
    attach = event.get("attach") or {}
    where = f"127.0.0.1:{event.get('port')}"
    if state == "attached":
        return [f"debugger attached (rank {event.get('rank')}, {where} on the run's machine)"]
    if state == "timeout":
        return [
            f"no debugger attached in time: the run goes on (debugpy still listens on {where}"
            " on the run's machine; attaching later still works)"
        ]
    lines = [
        f"rank {event.get('rank')} waits {float(event.get('timeout') or 0):g} s for a debugger "
        f"on {where} of the machine running it"
    ]
    if attach.get("forward_command"):
        lines.append(f"port forwarding (SSM, no inbound rule): {attach['forward_command']}")
    if attach.get("tunnel"):
        lines.append(attach["tunnel"])
    lines.append(
        "VS Code: add this to .vscode/launch.json's configurations, then Run and Debug it:"
    )
    lines.append(json.dumps(launch_config(event), indent=2))
    if attach.get("breakpoints_in"):
        lines.append(f"set breakpoints in {attach['breakpoints_in']}")
    lines.append(JUPYTERLAB_NOTE)
    return lines


def attach_html(event: dict) -> str:
    """The panel's block: the lines, the launch.json entry in a <pre>."""
    parts = []
    for line in attach_lines(event):
        if line.startswith("{"):
            parts.append(
                '<pre class="runctl-debug-launch" style="margin:2px 0;padding:4px;'
                f'background:#f3f6fb;font-size:0.85em">{esc(line)}</pre>'
            )
        else:
            parts.append(f"<div>{esc(line)}</div>")
    return '<div class="runctl-debugger" style="margin:4px 0">' + "".join(parts) + "</div>"
