"""Teammates' runs in the index (store/team.py): 10,000 pulled summary rows listed within
the store benchmark's budget (benchmarks/store_bench.py `TEAM_LIST_BUDGET`), next to this
home's own runs, filtered by owner and project; an older entry never replaces a newer."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.store_bench import TEAM_LIST_BUDGET, team_list
from runctl_jupyter import team_keys
from runctl_jupyter.store import Store
from runctl_jupyter.store.team import apply_pulled

TEAM = "vision"


def _row(i: int, owner: str, status: str = "succeeded") -> dict:
    return {
        "id": f"{i:010x}", "name": f"run-{i}", "owner": owner, "project": f"p{i % 7}",
        "experiment": f"exp-{i % 10}", "created": 1_764_380_000.0 + i, "status": status,
        "started": 1_764_380_001.0 + i, "duration": 59.0, "params": {"lr": 0.1},
        "final_metrics": {"loss": 1.0 / (i + 1)}, "cost": 0.01,
    }  # fmt: skip


def _pulled(store: Store, n: int, owners: int = 10) -> None:
    by_owner: dict[str, list] = {}
    for i in range(n):
        owner = f"member{i % owners}"
        key = team_keys.index_key(TEAM, owner, 1_764_380_000_000 + i, f"{i:010x}")
        by_owner.setdefault(owner, []).append((key, _row(i, owner)))
    for owner, rows in by_owner.items():
        apply_pulled(store.connection(), TEAM, owner, rows, rows[-1][0])


def test_ten_thousand_pulled_runs_are_listed_within_the_budget(tmp_path: Path):
    store = Store(tmp_path / "home")
    _pulled(store, 10_000)
    times = []
    for _ in range(3):  # the best of three: a loaded machine slows one, not all
        t0 = time.perf_counter()
        listed = team_list(store)
        times.append(time.perf_counter() - t0)
    assert listed == (10_000, 1_429)
    assert min(times) < TEAM_LIST_BUDGET, times
    rows = store.list_runs(owner="member3", project="p3", limit=5)
    assert [r["owner"] for r in rows] == ["member3"] * 5
    assert rows[0]["final_metrics"] == {"loss": 1.0 / (int(rows[0]["id"], 16) + 1)}
    assert store.list_runs(limit=None) == []  # no --owner: this home's own runs only


def test_an_older_entry_never_replaces_a_newer_one(tmp_path: Path):
    store = Store(tmp_path / "home")
    newer = team_keys.index_key(TEAM, "ann", 2_000, "00000000aa")
    older = team_keys.index_key(TEAM, "ann", 1_000, "00000000aa")
    apply_pulled(store.connection(), TEAM, "ann", [(newer, _row(170, "ann", "running"))], newer)
    apply_pulled(store.connection(), TEAM, "ann", [(older, _row(170, "ann", "queued"))], older)
    (row,) = store.list_runs(owner="ann")
    assert row["status"] == "running"
    cursor = store.connection().execute("SELECT after FROM team_cursors").fetchone()[0]
    assert cursor == newer  # the cursor never moves back either
