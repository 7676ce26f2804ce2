"""The benchmark harness keeps working: `python -m benchmarks --quick` runs every
benchmark and writes results in the issue-9 shape. Numbers are checked to exist,
never for their values (benchmarks are not part of pass/fail)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# every benchmark the harness measures
EXPECTED = [
    "log_step",
    "metric_latency",
    "metric_latency_p99",
    "launch_overhead",
    "store_list",
    "store_metrics",
    "store_team_list",
    "load_ext",
    "record_size",
    "compare_panel",
    "sweep_overhead",
    "aws_api_calls",
    "cold_start",
    "warm_start",
]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict, str]:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(REPO), env.get("PYTHONPATH", "")] if p)
    command = [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)]
    if os.environ.get("RUNCTL_BENCH_PEERS") != "1":
        # CI has no peers venv (mlflow, wandb); RUNCTL_BENCH_PEERS=1 exercises it too
        command.append("--no-peers")
    proc = subprocess.run(
        command,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    detail = json.loads(out.with_name("results_detail.json").read_text())
    return json.loads(out.read_text()), detail, proc.stderr


def test_every_benchmark_produced_numbers(quick_run: tuple[dict, dict, str]) -> None:
    results, _, stderr = quick_run
    for name in EXPECTED:
        assert name in results, f"{name} missing from results: {stderr[-2000:]}"
        assert _is_number(results[name]["ours"]), (name, results[name])
    # peers that need no venv are always there
    assert _is_number(results["log_step"]["peers"]["jsonl_buffered"])
    assert _is_number(results["launch_overhead"]["peers"]["python_c"])


def test_results_have_the_issue_9_shape(quick_run: tuple[dict, dict, str]) -> None:
    results, _, _ = quick_run
    assert isinstance(results, dict) and results
    for name, entry in results.items():
        assert set(entry) == {"unit", "better", "ours", "peers"}, name
        assert isinstance(entry["unit"], str) and entry["unit"], name
        assert entry["better"] in ("lower", "higher"), name
        assert _is_number(entry["ours"]), name
        assert isinstance(entry["peers"], dict), name
        for peer, value in entry["peers"].items():
            assert isinstance(peer, str) and _is_number(value), (name, peer, value)


def test_quick_mode_leaves_committed_results_alone(quick_run: tuple[dict, dict, str]) -> None:
    committed = REPO / "benchmarks" / "results.json"
    if committed.exists():
        data = json.loads(committed.read_text())
        assert data, "committed results.json is empty"
        # a quick run never overwrites the committed file: it is a full run's output
        meta = json.loads((REPO / "benchmarks" / "results_detail.json").read_text())["meta"]
        assert meta["quick"] is False
