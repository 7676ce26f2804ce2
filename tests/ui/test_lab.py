"""The lab extension end to end: a real JupyterLab on 127.0.0.1 (token, temp
RUNCTL_HOME, temp root holding a copy of examples/01_quickstart.ipynb plus two
long-running cells), Debian's Chromium through Playwright.

It runs the quickstart's training cell, checks the live RunPanel (plot + Stop),
the sidebar (the run with its final status, the status bar item, opening a
record), Stop in the cell's own panel during a blocking run, and Stop from the
sidebar (with its confirmation dialog) on a detached run, and the "open record"
button of the summary a run leaves in its cell. The lab loads this tree's built
extension (runctl_jupyter/labextension) when there is one, else the installed
one. Screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from labkit import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MARKUP_NAME,
    OLD_RUNS,
    ROOT,
    cell,
    open_notebook,
    run_cell,
    shot,
    wait_cell_done,
)

from runctl_jupyter.registry import Registry, digest_of

BLOCKING_CELL = """%%runctl train --name blocking --experiment ui -p steps=3000
import time
for step in range(steps):
    runctl.log(step=step, total=steps, loss=1.0 / (step + 1))
    time.sleep(0.05)
    if runctl.should_stop:
        break"""

DETACHED_CELL = """%%runctl train --name from-sidebar --experiment ui --detach
import time
for step in range(3000):
    runctl.log(step=step, x=step)
    time.sleep(0.05)"""

QUICKSTART_CELLS = (1, 3, 5)  # %load_ext, the data, the training cell
FIRST_PAINT_BUDGET = 1.0  # seconds from opening the sidebar to its first rows


def _notebook(root: Path) -> tuple[str, int, int]:
    """The quickstart copy with the two long-running cells appended, outputs cleared."""
    nb = json.loads((ROOT / "examples" / "01_quickstart.ipynb").read_text())
    for code in nb["cells"]:
        if code["cell_type"] == "code":
            code["outputs"], code["execution_count"] = [], None
    for source in (BLOCKING_CELL, DETACHED_CELL):
        nb["cells"].append(
            {
                "cell_type": "code",
                "execution_count": None,
                "metadata": {},
                "outputs": [],
                "source": source,
            }
        )
    (root / "quickstart.ipynb").write_text(json.dumps(nb))
    n = len(nb["cells"])
    return "quickstart.ipynb", n - 2, n - 1


@pytest.fixture
def quickstart(lab: dict) -> dict:
    notebook, blocking, detached = _notebook(lab["root"])
    return {**lab, "notebook": notebook, "blocking": blocking, "detached": detached}


# ---- page helpers -------------------------------------------------------------------

# Times from the pointer press on the sidebar's tab to the first painted rows.
WATCH_FIRST_PAINT = """() => {
  const tab = document.querySelector('.lm-TabBar-tab[data-id="runctl-sidebar"]');
  window.__runctlPaint = {t0: null, t1: null};
  tab.addEventListener('pointerdown', () => { window.__runctlPaint.t0 = performance.now(); },
                       {once: true, capture: true});
  const seen = () => {
    if (document.querySelector('#runctl-sidebar .jp-runctl-run')) {
      window.__runctlPaint.t1 = performance.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(seen);
  observer.observe(document.body, {childList: true, subtree: true});
}"""
FIRST_PAINT = """async () => {
  const p = window.__runctlPaint;
  const start = performance.now();
  while (p.t1 === null && performance.now() - start < 10000) {
    await new Promise(r => setTimeout(r, 20));
  }
  return p.t1 === null ? 99 : (p.t1 - p.t0) / 1000;
}"""

SET_VISIBILITY = """(state) => {
  Object.defineProperty(document, 'visibilityState', {value: state, configurable: true});
  Object.defineProperty(document, 'hidden', {value: state === 'hidden', configurable: true});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


def sidebar_row(page, name: str):
    return page.locator(".jp-runctl-run", has=page.locator(".jp-runctl-name", has_text=name))


# ---- the test -------------------------------------------------------------------------


def test_sidebar_lists_runs_and_stop_works_from_the_cell_and_the_sidebar(quickstart: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30000)
        try:
            _scenario(page, quickstart, expect)
        except BaseException:
            shot(page, "failure")
            print(quickstart["log"].read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            browser.close()


def _scenario(page, lab: dict, expect) -> None:
    open_notebook(page, lab, lab["notebook"])

    # -- the status bar item is there from the start
    status = page.locator(".jp-runctl-status")
    expect(status).to_have_text(re.compile(r"^runctl: 0 running · \$0\.00/h$"))

    # -- first paint of the sidebar with 1,000 runs in the store
    page.evaluate(WATCH_FIRST_PAINT)
    page.locator('.lm-TabBar-tab[data-id="runctl-sidebar"]').click()
    elapsed = page.evaluate(FIRST_PAINT)
    print(f"sidebar first paint with {OLD_RUNS} runs: {elapsed * 1000:.0f} ms", file=sys.stderr)
    assert elapsed < FIRST_PAINT_BUDGET
    expect(page.locator(".jp-runctl-run")).to_have_count(50)
    expect(page.locator(".jp-runctl-more")).to_be_visible()
    # a run's text is text: the markup in a run name shows as typed and never runs
    expect(page.locator(".jp-runctl-name", has_text=MARKUP_NAME)).to_have_count(1)
    assert page.locator("#runctl-sidebar img").count() == 0
    assert page.evaluate("() => window.__runctlXSS") is None
    shot(page, "0-sidebar-1000-runs")

    # -- the quickstart: load_ext, data, the training cell
    for i in QUICKSTART_CELLS:
        run_cell(page, i)
        wait_cell_done(page, i, timeout=120)
    train = cell(page, QUICKSTART_CELLS[-1])
    expect(train.locator(".js-plotly-plot").first).to_be_visible()  # its metrics plot
    expect(train.locator(".jp-OutputArea-output")).not_to_have_count(0)
    shot(page, "1-quickstart-trained")

    # -- the sidebar lists it with its final status, last metrics and a sparkline
    row = sidebar_row(page, "quickstart")
    expect(row).to_have_attribute("data-status", "succeeded", timeout=15000)
    expect(row.locator(".jp-runctl-experiment")).to_have_text("digits-mlp")
    expect(row.locator(".jp-runctl-metric").first).to_contain_text("loss=")
    expect(row.locator("svg.jp-runctl-spark polyline")).to_have_count(1)
    expect(row.locator(".jp-runctl-stop")).to_have_count(0)  # ended: no Stop
    page.locator(".jp-runctl-filter-experiment").fill("digits-mlp")
    expect(page.locator(".jp-runctl-run")).to_have_count(1)
    shot(page, "2-sidebar-succeeded")
    page.locator(".jp-runctl-filter-experiment").fill("")

    # -- clicking a finished run opens its record.ipynb (a copy in the server root)
    row.click()
    record_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=re.compile(r"^quickstart-.*\.ipynb"))  # fmt: skip
    expect(record_tab).to_have_count(1)
    assert list((lab["root"] / "runctl-records").glob("quickstart-*.ipynb"))
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=lab["notebook"]).click()
    page.wait_for_function(
        "(name) => window.jupyterapp.shell.currentWidget.context?.path === name",
        arg=lab["notebook"],
    )

    # -- a blocking run: the live panel shows a plot and Stop; Stop in the cell stops it
    blocking = lab["blocking"]
    run_cell(page, blocking)
    live = cell(page, blocking)
    stop_button = live.locator("button.jupyter-button", has_text="Stop")
    expect(stop_button).to_be_visible(timeout=60000)
    expect(live.locator(".js-plotly-plot").first).to_be_visible()
    expect(sidebar_row(page, "blocking")).to_have_attribute("data-status", "running", timeout=15000)
    expect(status).to_have_text(re.compile(r"^runctl: 1 running · \$0\.00/h$"), timeout=15000)
    page.wait_for_function(  # a few points drawn before Stop
        "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].node"
        ".querySelectorAll('.js-plotly-plot .scatterlayer .trace').length > 0",
        arg=blocking,
    )
    shot(page, "3-blocking-live-panel")
    stop_button.click()
    wait_cell_done(page, blocking, timeout=45)  # the cell returned: the run stopped
    expect(sidebar_row(page, "blocking")).to_have_attribute("data-status", "stopped", timeout=15000)
    steps = _row(lab["home"], "blocking")["last_step"]
    assert steps is not None and steps < 2999, "the blocking run went on to its end"
    shot(page, "4-blocking-stopped-from-cell")

    # -- the "open record" button of the summary left in the cell opens its record too
    live.locator(".runctl-summary button", has_text="open record").click()
    blocking_tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=re.compile(r"^blocking-.*\.ipynb"))  # fmt: skip
    expect(blocking_tab).to_have_count(1)
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=lab["notebook"]).click()
    page.wait_for_function(
        "(name) => window.jupyterapp.shell.currentWidget.context?.path === name",
        arg=lab["notebook"],
    )

    # -- a detached run stopped from the sidebar, after its confirmation dialog
    run_cell(page, lab["detached"])
    wait_cell_done(page, lab["detached"])
    row = sidebar_row(page, "from-sidebar")
    expect(row).to_have_attribute("data-status", "running", timeout=30000)
    expect(status).to_have_text(re.compile(r"^runctl: 1 running"), timeout=15000)
    row.locator(".jp-runctl-stop").click()
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Stop run from-sidebar")
    shot(page, "5-sidebar-stop-confirm")
    dialog.locator("button.jp-mod-warn", has_text="Stop").click()
    expect(row).to_have_attribute("data-status", "stopped", timeout=30000)
    assert _row(lab["home"], "from-sidebar")["reason"] == "user"
    expect(status).to_have_text(re.compile(r"^runctl: 0 running · \$0\.00/h$"), timeout=15000)

    # -- the resources tab: no AWS runs here, so an empty list with its note
    page.locator(".jp-runctl-tab-resources").click()
    expect(page.locator(".jp-runctl-note")).to_contain_text("No AWS runs")
    expect(page.locator(".jp-runctl-burn")).to_have_text("$0/h")
    shot(page, "6-resources")

    # -- the models tab: the registry's names, aliases and versions with their runs
    registry = Registry(lab["home"])
    weights = lab["home"] / "weights.bin"
    weights.write_bytes(b"w" * 64)
    digest, size = digest_of(weights)
    for acc in (0.81, 0.93):
        registry.register("digits", str(weights), digest, size, run_id="r-ui", metrics={"acc": acc})
    registry.promote("digits", 2, "production")
    page.locator(".jp-runctl-tab-models").click()
    model = page.locator('.jp-runctl-model[data-model="digits"]')
    expect(model.locator(".jp-runctl-model-name")).to_contain_text("production=v2")
    expect(model.locator("tr[data-version]")).to_have_count(2)
    expect(model.locator('tr[data-version="2"]')).to_contain_text("acc=0.93")
    expect(model.locator('tr[data-version="2"]')).to_contain_text(digest[:12])
    shot(page, "7-models")

    # -- the schedules tab: a schedule added in a terminal shows with its next fire
    (lab["root"] / "nightly.py").write_text("print('nightly')\n")
    env = dict(os.environ, RUNCTL_HOME=str(lab["home"]))
    env["RUNCTL_CRONTAB"] = str(lab["home"] / "crontab")
    added = subprocess.run(
        [sys.executable, "-m", "runctl_jupyter", "schedule", "add", "nightly.py"]
        + ["--cron", "0 3 * * 1", "--schedule-name", "nightly"],
        cwd=lab["root"], env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    page.locator(".jp-runctl-tab-schedules").click()
    row = page.locator('tr[data-schedule="nightly"]')
    expect(row).to_contain_text("nightly.py")
    expect(row).to_contain_text("next ")
    shot(page, "8-schedules")

    # -- polite polling: nothing is asked while the page is hidden, and it resumes
    page.locator(".jp-runctl-tab", has_text="Runs").click()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/runctl/api/" in r.url else None)
    page.evaluate(SET_VISIBILITY, "hidden")
    page.wait_for_timeout(5000)  # a poll in flight or lingering may still land
    asked.clear()
    page.wait_for_timeout(8000)  # two idle intervals
    assert asked == [], f"polled while hidden: {asked}"
    page.evaluate(SET_VISIBILITY, "visible")
    deadline = time.monotonic() + 10
    while not asked:
        assert time.monotonic() < deadline, "polling did not resume when the page showed"
        page.wait_for_timeout(200)


def _row(home: Path, name: str) -> dict:
    from runctl_jupyter.store import Store

    store = Store(home)
    store.refresh()
    return store.get(store.resolve(name))
