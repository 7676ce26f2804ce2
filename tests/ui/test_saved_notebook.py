"""A notebook saved from JupyterLab and reopened with its kernel shut down shows
runctl's static outputs and no dead widget ("Error displaying widget: model not
found", or "Loading widget..." for good): a finished run panel, a sweep panel,
`%runctl compare` of the three runs (its controls live while the kernel does),
and the runs table's Attach/Stop buttons of a run still going. Reopened with no
kernel, then with a fresh one. The lab is the session's (conftest.py); the saved
file is checked on disk too; screenshots of the reopened notebook are kept under
the test's tmp path.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

from labkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    KERNEL_IDLE,
    cell,
    open_notebook,
    run_cell,
    wait_cell_done,
)

NOTEBOOK = "saved.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY = "application/vnd.plotly.v1+json"

TRAIN = """%%runctl train --name {name} --experiment saved -p lr={lr}
import time
for step in range(15):
    runctl.log(step=step, total=15, loss=lr / (step + 1))
    time.sleep(0.03)"""

SWEEP = """%%runctl sweep --grid lr=0.1,0.01 --objective loss:min --max-parallel 2 --name saved-sweep --experiment saved
for step in range(5):
    runctl.log(step=step, loss=lr / (step + 1))"""

STILL_GOING = """%%runctl train --name saved-live --experiment saved-live --detach
import time
for step in range(3000):
    runctl.log(step=step, x=step)
    time.sleep(0.05)"""

CELLS = [
    "%load_ext runctl_jupyter",
    TRAIN.format(name="saved-a", lr=0.1),
    SWEEP,
    "%runctl compare --experiment saved",  # saved-a and the sweep's two trials
    STILL_GOING,
    "%runctl runs --experiment saved-live",
]
RUN_A, SWEEP_CELL, COMPARE, RUNS_TABLE = 1, 2, 3, 5

SAVE = """async () => {
  const nb = window.jupyterapp.shell.currentWidget;
  await window.jupyterapp.commands.execute('docmanager:save');
  return nb.context.model.dirty;
}"""

# Opens the notebook with no kernel: the notebook factory may neither start one
# nor ask which (a reopened notebook would otherwise start a fresh kernel).
OPEN_WITHOUT_KERNEL = """async (path) => {
  await window.jupyterapp.restored;
  const factory = window.jupyterapp.docRegistry.getWidgetFactory('Notebook');
  factory._preferKernel = false;
  factory._canStartKernel = false;
  const nb = await window.jupyterapp.commands.execute('docmanager:open', {path, factory: 'Notebook'});
  await nb.context.ready;
  await nb.sessionContext.ready;
  return nb.sessionContext.session ? nb.sessionContext.session.kernel.id : null;
}"""


START_KERNEL = """async () => {
  const nb = window.jupyterapp.shell.currentWidget;
  await nb.sessionContext.changeKernel({name: 'python3'});
}"""


def _write_notebook(root: Path) -> None:
    cells = [
        {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": s}
        for s in CELLS
    ]
    nb = {
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (root / NOTEBOOK).write_text(json.dumps(nb))


def _api(lab: dict, path: str, method: str = "GET"):
    req = urllib.request.Request(
        f"{lab['base']}/api/{path}",
        method=method,
        headers={"Authorization": f"token {lab['token']}"},
    )
    with urllib.request.urlopen(req, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _shut_down_kernels(lab: dict) -> None:
    for session in _api(lab, "sessions"):
        _api(lab, f"sessions/{session['id']}", method="DELETE")
    deadline = time.monotonic() + 20
    while _api(lab, "kernels"):
        assert time.monotonic() < deadline, "the kernel did not shut down"
        time.sleep(0.2)


def _stop_run(lab: dict, name: str) -> None:
    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    session = Session(Runctl(home=str(lab["home"]), grace_seconds=1.0))
    session.stop(name, force=True, wait=10.0)


def _html(output: dict) -> str:
    html = output.get("data", {}).get("text/html", "")
    return "".join(html) if isinstance(html, list) else html


def _check_saved_file(path: Path) -> None:
    """On disk: no widget view at all (no widget state is saved with default
    settings), and each panel's static outputs."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    views = [
        (i, o)
        for i, c in enumerate(cells)
        for o in c.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]
    assert views == [], f"widget views saved with no state: {views}"
    assert "widgets" not in nb["metadata"]
    assert any("runctl-summary" in _html(o) for o in cells[RUN_A]["outputs"])
    compare = cells[COMPARE]["outputs"]
    assert any("runctl-compare" in _html(o) and "saved-a" in _html(o) for o in compare)
    assert any(PLOTLY in o.get("data", {}) for o in compare), "the compare curves"
    assert any("runctl-sweep-summary" in _html(o) for o in cells[SWEEP_CELL]["outputs"])
    runs = cells[RUNS_TABLE]["outputs"]
    assert any("runctl-runs" in _html(o) and "saved-live" in _html(o) for o in runs)


def test_a_saved_notebook_reopened_without_a_kernel_shows_no_dead_widgets(lab, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    _write_notebook(lab["root"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.set_default_timeout(30000)
        try:
            _scenario(page, lab, tmp_path, expect)
        except BaseException:
            page.screenshot(path=str(tmp_path / "failure.png"))
            print(lab["log"].read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            browser.close()
            try:
                _stop_run(lab, "saved-live")
            except Exception:  # already over, or never started
                pass


def _scenario(page, lab: dict, tmp_path: Path, expect) -> None:
    open_notebook(page, lab, NOTEBOOK)
    for i in range(len(CELLS)):
        run_cell(page, i)
        wait_cell_done(page, i, timeout=120)

    # -- live while the kernel is: compare's controls, the runs table's buttons
    expect(cell(page, COMPARE).locator(".widget-dropdown select").first).to_be_visible(
        timeout=30000
    )
    expect(
        cell(page, RUNS_TABLE).locator("button.jupyter-button", has_text="Attach")
    ).to_be_visible()
    # finished panels already left their static summary
    expect(cell(page, RUN_A).locator(".runctl-summary")).to_have_count(1)
    expect(cell(page, SWEEP_CELL).locator(".runctl-sweep-summary")).to_have_count(1)

    assert page.evaluate(SAVE) is False, "the notebook is still dirty after saving"
    # -- a save leaves the page's widgets alone: the order toggle still re-sorts,
    # and the next save keeps the comparison as shown
    first_row = cell(page, COMPARE).locator(".runctl-compare tbody tr").first
    expect(first_row).to_contain_text("saved-sweep-1")  # best loss first
    cell(page, COMPARE).locator("button.jupyter-button", has_text="ascending").click()
    expect(first_row).to_contain_text("saved-sweep-0")
    assert page.evaluate(SAVE) is False
    _check_saved_file(lab["root"] / NOTEBOOK)
    _stop_run(lab, "saved-live")
    _shut_down_kernels(lab)

    # -- reopened with no kernel
    page.goto(f"{lab['base']}/lab?reset&token={lab['token']}")
    page.wait_for_function("() => !!window.jupyterapp")
    assert page.evaluate(OPEN_WITHOUT_KERNEL, NOTEBOOK) is None, "a kernel was started"
    notebook = page.locator(".jp-Notebook")
    expect(notebook.locator(".runctl-compare")).to_have_count(1, timeout=30000)  # a slow first draw
    expect(notebook.locator(".runctl-compare tbody tr").first).to_contain_text("saved-sweep-0")
    expect(notebook.locator(".runctl-summary")).to_have_count(1)
    expect(notebook.locator(".runctl-sweep-summary")).to_have_count(1)
    expect(notebook.locator(".runctl-runs")).to_have_count(1)
    # the curves, drawn by plotly's renderer (its mime type needs no kernel)
    expect(cell(page, COMPARE).locator(".jp-RenderedPlotly").first).to_be_visible()
    page.wait_for_timeout(2500)  # the widget manager gives up on a missing model after 2 s
    text = notebook.inner_text()
    assert "Error displaying widget" not in text and "model not found" not in text
    assert "Loading widget" not in text
    assert _api(lab, "kernels") == [], "reopening started a kernel"
    shot = tmp_path / "saved-notebook-no-kernel.png"
    page.screenshot(path=str(shot))
    cell(page, RUNS_TABLE).scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "saved-notebook-no-kernel-end.png"))
    print(f"screenshots: {shot}, {shot.with_name(shot.stem + '-end.png')}", file=sys.stderr)

    # -- and with a fresh kernel (what reopening starts by default): a dead view
    # would now read "Error displaying widget: model not found"
    page.evaluate(START_KERNEL)
    page.wait_for_function(KERNEL_IDLE, timeout=60000)
    page.wait_for_timeout(2500)
    text = notebook.inner_text()
    assert "Error displaying widget" not in text and "Loading widget" not in text
    expect(notebook.locator(".runctl-compare")).to_have_count(1)
