"""The sidebar with a team (docs/teams.md), in the shared lab (labkit.start_lab): the
owner and project filters, teammates' runs with their owner and no Stop button, and a
live teammate's run changing status when a newer summary is pulled into the store.

The rows get into the lab's store as a pull puts them (`store.team.apply_pulled`, the
one write of aws/team_pull.py; the pull itself against S3 is tests/aws/test_team_store.py)."""

from __future__ import annotations

import sys
import time

from labkit import CHROMIUM, CHROMIUM_ARGS, shot

from runctl_jupyter import team_keys
from runctl_jupyter.store import Store
from runctl_jupyter.store.team import apply_pulled

TEAM = "vision"


def _pull(home, owner: str, run_id: str, name: str, project: str, status: str, millis: int) -> None:  # noqa: ANN001
    now = time.time()
    row = {
        "id": run_id, "name": name, "owner": owner, "project": project, "experiment": "team-ui",
        "backend": "aws", "created": now, "status": status, "started": now,
        "attempt_started": now if status == "running" else None, "cost": 0.42, "rate": 1.2,
        "final_metrics": {"loss": 0.25}, "params": {"lr": 0.1},
    }  # fmt: skip
    key = team_keys.index_key(TEAM, owner, millis, run_id)
    store = Store(home)
    apply_pulled(store.connection(), TEAM, owner, [(key, row)], key)
    store.close()


def test_the_sidebar_filters_by_owner_and_project_and_shows_teammates_live_runs(lab: dict) -> None:
    from playwright.sync_api import expect, sync_playwright

    home = lab["home"]
    _pull(home, "alice", "a11ce00001", "detr-live", "detr", "running", 1_000)
    _pull(home, "bob", "b0b0000001", "seg-done", "seg", "succeeded", 1_000)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(30000)
        try:
            page.goto(f"{lab['base']}/lab?reset&token={lab['token']}")
            page.locator('.lm-TabBar-tab[data-id="runctl-sidebar"]').click()
            sidebar = page.locator("#runctl-sidebar")
            expect(sidebar.locator(".jp-runctl-run").first).to_be_visible()
            teammates = sidebar.locator(".jp-runctl-run:has(.jp-runctl-owner)")
            expect(teammates).to_have_count(0)  # no owner filter: this home's runs

            sidebar.locator(".jp-runctl-filter-owner").fill("all")
            alice = sidebar.locator('.jp-runctl-run[data-owner="alice"]')
            expect(alice).to_have_attribute("data-status", "running")
            expect(alice.locator(".jp-runctl-owner")).to_have_text("alice")
            expect(alice).to_contain_text("detr / team-ui")
            expect(alice.locator(".jp-runctl-stop")).to_have_count(0)  # only its owner stops it
            expect(sidebar.locator('.jp-runctl-run[data-owner="bob"]')).to_have_count(1)
            shot(page, "team-1-owner-all")

            sidebar.locator(".jp-runctl-filter-project").fill("detr")
            expect(sidebar.locator(".jp-runctl-run")).to_have_count(1)
            expect(alice).to_have_count(1)

            _pull(home, "alice", "a11ce00001", "detr-live", "detr", "succeeded", 2_000)
            expect(alice).to_have_attribute("data-status", "succeeded", timeout=20000)
            shot(page, "team-2-live-status")

            sidebar.locator(".jp-runctl-filter-project").fill("")
            sidebar.locator(".jp-runctl-filter-owner").fill("bob")
            expect(sidebar.locator(".jp-runctl-run")).to_have_count(1)
            expect(sidebar.locator('.jp-runctl-run[data-owner="bob"]')).to_contain_text("seg-done")
        except BaseException:
            shot(page, "team-failure")
            print(lab["log"].read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            browser.close()
