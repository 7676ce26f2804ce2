"""Merge whole runs of `python -m benchmarks --only cold_start --out DIR/results.json` into
benchmarks/results.json and its detail, then re-render docs/benchmarks.md:

    python -m benchmarks.cold_start_merge --code after DIR1 DIR3 DIR5 --code before DIR2 DIR4

The runs of the first `--code` are the published figures: for each start (cold,
cold_baked_ami, warm) the run whose median is the median of those runs gives the
figure and its step tables; every run of every code is listed with its commit, time
and load (cold_start_report._invocations), so the before and after are read side by
side, measured in the same hour on the same shared machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from .__main__ import DETAIL, RESULTS

STARTS = ("cold", "cold_baked_ami", "warm")


def _load(folder: Path) -> tuple[dict, dict]:
    stored = json.loads((folder / "results_detail.json").read_text())
    return stored["meta"], stored["benchmarks"]["cold_start"]


def _row(code: str, meta: dict, detail: dict) -> dict:
    row = {
        "code": code,
        "commit": meta["commit"],
        "date": meta["date"].split(" ", 1)[-1].replace(" UTC", ""),
        "load": meta["load_average"].split(" (")[0],
    }
    for name in STARTS:
        row[name] = (detail["scenarios"].get(name) or {}).get("to_first_metric_s")
    return row


def merge(groups: list[tuple[str, list[Path]]]) -> None:
    runs = [(code, folder, *_load(folder)) for code, folders in groups for folder in folders]
    published = [r for r in runs if r[0] == groups[0][0]]
    scenarios: dict[str, dict] = {}
    for name in STARTS:
        ranked = sorted(published, key=lambda r: r[3]["scenarios"][name]["to_first_metric_s"])
        scenarios[name] = ranked[len(ranked) // 2][3]["scenarios"][name]
    middle = sorted(published, key=lambda r: r[3]["scenarios"]["cold"]["to_first_metric_s"])
    meta = middle[len(middle) // 2][2]
    detail = json.loads(DETAIL.read_text())
    entry = detail["benchmarks"]["cold_start"]
    for stale in ("before", "paired"):  # earlier comparisons: the invocations table replaces them
        entry.pop(stale, None)
    entry["scenarios"] = scenarios
    in_time = sorted(runs, key=lambda r: r[2]["date"])  # as they ran, one after another
    entry["invocations"] = [_row(code, m, d) for code, _, m, d in in_time]
    entry["measured"] = {k: meta[k] for k in ("date", "load_average", "reps", "commit")}
    entry["notes"] = [
        f"{len(published)} runs of 5 rounds (cold -> warm -> cold_baked_ami); each start's "
        "figure and tables: the run whose median is the median of the runs"
    ]
    detail["benchmarks"]["warm_start"]["notes"] = entry["notes"]
    detail["benchmarks"]["warm_start"]["cold_baked_ami_s"] = scenarios["cold_baked_ami"][
        "to_first_metric_s"
    ]
    DETAIL.write_text(json.dumps(detail, indent=2) + "\n")
    results = json.loads(RESULTS.read_text())
    results["cold_start"]["ours"] = scenarios["cold"]["to_first_metric_s"]
    results["warm_start"]["ours"] = scenarios["warm"]["to_first_metric_s"]
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    subprocess.run([sys.executable, "-m", "benchmarks", "--render"], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start_merge")
    parser.add_argument("--code", nargs="+", action="append", metavar=("NAME", "DIR"))
    args = parser.parse_args(argv)
    if not args.code or any(len(group) < 2 for group in args.code):
        parser.error("give --code NAME DIR... at least once (the first: the published runs)")
    merge([(group[0], [Path(d) for d in group[1:]]) for group in args.code])
    return 0


if __name__ == "__main__":
    sys.exit(main())
