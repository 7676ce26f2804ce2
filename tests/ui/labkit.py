"""What the UI tests share: a real JupyterLab on 127.0.0.1 (token, temp RUNCTL_HOME
seeded with OLD_RUNS finished runs, temp root; this tree on the PYTHONPATH of the
server and its kernels), Debian's Chromium for Playwright, and page helpers."""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

# Lab user settings (the pitfalls): no rename dialog on first save, no news.
SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {
        "renameUntitledFileOnSave": False
    },
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

OLD_RUNS = 1000  # finished runs already in the store: the sidebar's first paint budget
MARKUP_NAME = "<img src=x onerror=window.__runctlXSS=1>"  # the newest old run's name


def seed_runs(home: Path, n: int) -> None:
    """n finished runs, written as the launcher and the agent write them."""
    from runctl_jupyter.events import EventWriter
    from runctl_jupyter.store import Store

    store = Store(home)
    for i in range(n):
        run_id = f"old{i:05d}"
        run_dir = home / "runs" / run_id
        run_dir.mkdir(parents=True)
        name = MARKUP_NAME if i == n - 1 else f"old-{i}"
        spec = {"format": 1, "run_id": run_id, "name": name, "experiment": "old",
                "kind": "cell", "params": {"i": i}, "backend": "local", "created": 1.0e9 + i}  # fmt: skip
        (run_dir / "spec.json").write_text(json.dumps(spec))
        writer = EventWriter(run_dir, attempt=1)
        writer.write("status", t=1.0e9 + i, status="running", format=1)
        for step in range(20):
            writer.write("metric", t=1.0e9 + i + step, step=step, values={"loss": 1.0 / (step + 1)})
        writer.write("exit", t=1.0e9 + i + 20, status="succeeded", reason=None, exit_code=0, error=None, duration=20.0)  # fmt: skip
        writer.close()
        store.add_run(spec)
    store.refresh()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_lab(tmp_path: Path) -> Iterator[dict]:
    """A JupyterLab on 127.0.0.1 over `tmp_path` (root/, runctl-home/ with OLD_RUNS runs,
    settings/); yields what a test needs to reach it, stops it and any run left going."""
    root, home, settings = tmp_path / "root", tmp_path / "runctl-home", tmp_path / "settings"
    root.mkdir()
    for name, value in SETTINGS.items():
        path = settings / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    seed_runs(home, OLD_RUNS)
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    built = ROOT / "runctl_jupyter" / "labextension"
    if (built / "package.json").exists():  # this tree's build first, not an older installed one
        (tmp_path / "jupyter" / "labextensions").mkdir(parents=True)
        (tmp_path / "jupyter" / "labextensions" / "runctl-jupyter").symlink_to(built)
        env["JUPYTER_PATH"] = os.pathsep.join(
            p for p in (str(tmp_path / "jupyter"), env.get("JUPYTER_PATH")) if p
        )
    env.update(
        RUNCTL_HOME=str(home),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p),
    )
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
            f"--port={port}", f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}", "--allow-root", "--expose-app-in-browser",
            "--ServerApp.open_browser=False", "--LabApp.news_url=",
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                req = urllib.request.Request(
                    f"{base}/runctl/api/summary", headers={"Authorization": f"token {token}"}
                )
                with urllib.request.urlopen(req, timeout=2) as response:
                    assert response.status == 200
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "lab.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "JupyterLab did not start in 60 s"
                time.sleep(0.3)
        yield {
            "base": base,
            "token": token,
            "home": home,
            "root": root,
            "log": tmp_path / "lab.log",
        }
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        stop_leftover_runs(home)


def stop_leftover_runs(home: Path) -> None:
    """A failed test must not leave training processes behind."""
    if not (home / "runs").exists():
        return
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    session = Session(Runctl(home=str(home), grace_seconds=1.0))
    for row in session.runs(status="running", limit=None).rows:
        try:
            session.stop(row["id"], force=True, wait=2.0)
        except Exception:
            pass


# ---- page helpers -------------------------------------------------------------------

KERNEL_IDLE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.connectionStatus === 'connected' && k.status === 'idle';
}"""


def open_notebook(page, lab: dict, path: str) -> None:
    """Open `path` alone in the lab (`reset`: no tab an earlier test left open) and wait
    for its kernel: connected and idle before the first run (else it is silently dropped)."""
    page.goto(f"{lab['base']}/lab/tree/{path}?reset&token={lab['token']}")
    page.wait_for_function(KERNEL_IDLE, timeout=60000)


RUN_CELL = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget;
  nb.content.activeCellIndex = i;
  nb.content.deselectAll();
  void window.jupyterapp.commands.execute('notebook:run-cell');
}"""

CELL_STATE = """(i) => {
  const nb = window.jupyterapp.shell.currentWidget;
  const cell = nb.content.widgets[i];
  const outputs = cell.model.outputs.toJSON();
  const error = outputs.find(o => o.output_type === 'error');
  return {
    count: cell.model.executionCount,
    kernel: nb.sessionContext.session?.kernel?.status,
    error: error ? error.ename + ': ' + error.evalue : null
  };
}"""


_COUNT = "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.executionCount"


def run_cell(page, i: int) -> None:
    before = page.evaluate(_COUNT, i)
    page.evaluate(RUN_CELL, i)
    # the cell was taken: its execution count goes to null while it runs, then to a new
    # number (a quick cell can do both between two looks: either change will do)
    page.wait_for_function(
        f"(a) => {{ const c = ({_COUNT})(a.i); return c === null || c !== a.before; }}",
        arg={"i": i, "before": before},
    )


def wait_cell_done(page, i: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        state = page.evaluate(CELL_STATE, i)
        assert state["error"] is None, f"cell {i} raised {state['error']}"
        if state["count"] is not None and state["kernel"] == "idle":
            return
        assert time.monotonic() < deadline, f"cell {i} still running: {state}"
        time.sleep(0.2)


def cell(page, i: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(i)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
