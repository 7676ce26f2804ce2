"""python -m benchmarks [--quick] [--only NAME ...] [--out PATH] [--setup]"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .common import (
    REPO,
    WORK,
    Ctx,
    NotLanded,
    PeerError,
    PeerWorker,
    Result,
    Skipped,
    peer_python,
    setup_peer_venv,
)
from .report import render

# module -> the benchmark names it produces, in report order
MODULES: dict[str, list[str]] = {
    "log_step": ["log_step"],
    "metric_latency": ["metric_latency", "metric_latency_p99"],
    "launch_overhead": ["launch_overhead"],
    "store_bench": ["store_list", "store_metrics"],
    "store_team": ["store_team_list"],
    "load_ext": ["load_ext"],
    "record_size": ["record_size"],
    "compare_panel": ["compare_panel"],
    "sweep_overhead": ["sweep_overhead"],
    "aws_api_calls": ["aws_api_calls"],
    "dev_restart": ["dev_restart"],
    "cold_start": ["cold_start", "warm_start"],
}
RESULTS = REPO / "benchmarks" / "results.json"
DETAIL = REPO / "benchmarks" / "results_detail.json"
DOCS = REPO / "docs" / "benchmarks.md"


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f", {int(line.split()[1]) / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError):
        pass
    return f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores{mem}"


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        return head or "unknown"
    except OSError:
        return "unknown"


def _wanted(only: list[str] | None) -> dict[str, list[str]]:
    if not only:
        return MODULES
    chosen: dict[str, list[str]] = {}
    for name in only:
        for module, names in MODULES.items():
            if name == module or name in names:
                chosen[module] = names
                break
        else:
            known = sorted({n for names in MODULES.values() for n in names} | set(MODULES))
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(known)}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smoke mode: small sizes, 3 repetitions"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="run only this benchmark (repeatable)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="results.json path (default: benchmarks/results.json; a temp file with --quick)",
    )
    parser.add_argument(
        "--md",
        type=Path,
        help="markdown report path (default: docs/benchmarks.md; none with --quick)",
    )
    parser.add_argument(
        "--reps", type=int, help="repetitions per contender (default 7; 3 with --quick)"
    )
    parser.add_argument(
        "--no-peers", action="store_true", help="do not start the mlflow/wandb worker"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch folder under benchmarks/.work/"
    )
    parser.add_argument(
        "--setup", action="store_true", help="create the peers venv (mlflow, wandb) and exit"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite the markdown report from an existing results.json (+ _detail.json)",
    )
    args = parser.parse_args(argv)

    if args.render:
        source = args.out or RESULTS
        stored = json.loads(source.with_name(source.stem + "_detail.json").read_text())
        target = args.md or DOCS
        target.write_text(
            render(
                json.loads(source.read_text()),
                stored["benchmarks"],
                stored["meta"],
                stored.get("skipped", {}),
            )
        )
        print(str(target))
        return 0

    if args.setup:
        print(f"peers venv ready: {setup_peer_venv()}")
        return 0

    wanted = _wanted(args.only)
    reps = args.reps or (3 if args.quick else 7)
    if not args.quick and reps < 5:
        parser.error("a full run needs at least 5 repetitions (medians of >= 5)")
    if args.out:
        out = args.out
    elif args.quick:
        out = Path(tempfile.mkdtemp(prefix="runctl-bench-")) / "results.json"
    else:
        out = RESULTS
    md = args.md if args.md else (None if args.quick else DOCS)
    detail_path = out.with_name(out.stem + "_detail.json")

    WORK.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run-", dir=WORK))
    peer = None
    python = None if args.no_peers else peer_python()
    if python is not None:
        try:
            peer = PeerWorker(python, WORK / "peer_worker.log")
        except (PeerError, OSError) as exc:
            print(f"peers unavailable: {exc}", file=sys.stderr)
            peer = None
    elif not args.no_peers:
        print(
            "peers venv missing: run `python -m benchmarks --setup` to compare with mlflow/wandb",
            file=sys.stderr,
        )
    ctx = Ctx(quick=args.quick, work=work, peer=peer, reps=reps)

    started = time.time()
    load_start = os.getloadavg()[0]
    results: dict[str, dict[str, Any]] = {}
    detail: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    failed = False
    try:
        for module_name, names in wanted.items():
            t0 = time.time()
            print(f"[{module_name}] ...", file=sys.stderr, flush=True)
            try:
                module = importlib.import_module(f"benchmarks.{module_name}")
                produced: dict[str, Result] = module.run(ctx)
            except Skipped as exc:
                for name in names:
                    skipped[name] = f"not measured in this mode: {exc}"
                print(f"[{module_name}] skipped: {exc}", file=sys.stderr)
                continue
            except NotLanded as exc:
                for name in names:
                    skipped[name] = f"not measured yet: feature not landed ({exc})"
                print(f"[{module_name}] skipped: {exc}", file=sys.stderr)
                continue
            except Exception as exc:
                failed = True
                traceback.print_exc()
                for name in names:
                    skipped[name] = f"harness error: {type(exc).__name__}: {exc}"
                continue
            about = getattr(module, "ABOUT", {})
            for name, result in produced.items():
                results[name] = result.shape()
                detail[name] = {
                    "about": about.get(name, ""),
                    "notes": result.notes,
                    **result.detail,
                }
                print(f"[{module_name}] {name}: {json.dumps(result.shape())}", file=sys.stderr)
            print(f"[{module_name}] done in {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    finally:
        versions = {
            "python": platform.python_version(),
            "runctl-jupyter": _version("runctl-jupyter") or "source",
            "ipython": _version("ipython"),
            "numpy": _version("numpy"),
            "papermill": _version("papermill"),
            "nbclient": _version("nbclient"),
            "mlflow": peer.versions.get("mlflow") if peer else None,
            "wandb": peer.versions.get("wandb") if peer else None,
        }
        if peer is not None:
            peer.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    meta = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": time.time() - started,
        "machine": _machine(),
        "commit": _commit(),
        "versions": versions,
        "reps": reps,
        "quick": args.quick,
        "load_average": f"{load_start:.1f} at start, {os.getloadavg()[0]:.1f} at end (1-minute, {os.cpu_count()} cores)",
        "peer_python": str(python.relative_to(REPO))
        if python and python.is_relative_to(REPO)
        else (str(python) if python else None),
    }
    if args.only and out.exists():
        # a partial run updates its own entries and keeps the others
        merged = json.loads(out.read_text())
        merged.update(results)
        results = merged
        if detail_path.exists():
            old = json.loads(detail_path.read_text())
            old_detail = old.get("benchmarks", {})
            old_detail.update(detail)
            detail = old_detail
            skipped = {**old.get("skipped", {}), **skipped}
            skipped = {k: v for k, v in skipped.items() if k not in results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    detail_path.write_text(
        json.dumps({"meta": meta, "benchmarks": detail, "skipped": skipped}, indent=2) + "\n"
    )
    if md is not None:
        md.parent.mkdir(parents=True, exist_ok=True)
        md.write_text(render(results, detail, meta, skipped))
    print(str(out))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
