"""Budgets (from the issues) and the markdown report (docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cold_start_report import section

Entry = dict[str, Any]


@dataclass(frozen=True)
class Budget:
    benchmark: str
    issue: int
    text: str
    # (results.json entry, its detail) -> (passed, the measured figure as text); None if
    # not computable
    check: Callable[[Entry, dict], tuple[bool, str] | None]


def _peer(entry: Entry, name: str) -> float | None:
    value = entry.get("peers", {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None


def _ours(entry: Entry) -> float | None:
    value = entry.get("ours")
    return float(value) if isinstance(value, (int, float)) else None


def _ratio_check(
    peer: str, at_least: float, label: str
) -> Callable[[Entry], tuple[bool, str] | None]:
    def check(entry: Entry, detail: dict) -> tuple[bool, str] | None:
        ours, other = _ours(entry), _peer(entry, peer)
        if not ours or other is None:
            return None
        ratio = other / ours
        return ratio >= at_least, f"{label} {_x(ratio)}"

    return check


def _log_vs_jsonl(entry: Entry, detail: dict) -> tuple[bool, str] | None:
    ours, floor = _ours(entry), _peer(entry, "jsonl_buffered")
    if ours is None or not floor:
        return None
    ratio = ours / floor
    figure = f"runctl.log / JSON line = {ratio:.2f}x ({ours:.3g} vs {floor:.3g} us)"
    cpu = detail.get("cpu_ours_over_jsonl")
    if cpu is not None:
        figure += f"; in process CPU time {cpu:.2f}x"
    return ratio <= 2.0, figure


def _below(limit: float, unit: str) -> Callable[[Entry], tuple[bool, str] | None]:
    def check(entry: Entry, detail: dict) -> tuple[bool, str] | None:
        ours = _ours(entry)
        if ours is None:
            return None
        return ours < limit, f"{ours:.3g} {unit}"

    return check


def _launch(entry: Entry, detail: dict) -> tuple[bool, str] | None:
    ours, python_c = _ours(entry), _peer(entry, "python_c")
    if ours is None or python_c is None:
        return None
    extra = ours - python_c
    return extra <= 0.5, f"+{extra:.3f} s over python -c"


def _sweep(entry: Entry, detail: dict) -> tuple[bool, str] | None:
    ours = _ours(entry)
    if ours is None:
        return None
    figure = f"{ours:.2f}x ideal"
    variant = detail.get("wall_over_ideal_of_agent_durations_only")
    if variant is not None:
        figure += f" ({variant:.2f}x against the agents' own durations, launch excluded)"
    return ours <= 1.15, figure


def _calls(entry: Entry, detail: dict) -> tuple[bool, str] | None:
    ours, ssm = _ours(entry), _peer(entry, "ssm_poll_2s")
    if ours is None:
        return None
    figure = f"{ours:.0f} calls/run-hour"
    if ssm:
        figure += f" (SSM polling every 2 s: {ssm:.0f})"
    return ours <= 1000, figure


def _cold(scenario: str, limit: float) -> Callable[[Entry, dict], tuple[bool, str] | None]:
    """A start of docs/benchmarks.md's cold start section within `limit` seconds."""

    def check(entry: Entry, detail: dict) -> tuple[bool, str] | None:
        found = (detail.get("scenarios") or {}).get(scenario) or {}
        seconds = found.get("to_first_metric_s")
        if seconds is None:
            return None
        return seconds <= limit, f"{seconds:.1f} s on the fixture (AWS's own part: 0 here)"

    return check


BUDGETS: list[Budget] = [
    Budget(
        "log_step",
        2,
        "runctl.log (3 scalars) within 2x of a buffered JSON-line write",
        _log_vs_jsonl,
    ),
    Budget(
        "log_step",
        2,
        "runctl.log at least 50x cheaper than mlflow.log_metrics (file store)",
        _ratio_check("mlflow_file", 50, "mlflow_file / runctl.log ="),
    ),
    Budget(
        "metric_latency",
        2,
        "log call -> notebook series, local backend: p50 < 250 ms",
        _below(250, "ms"),
    ),
    Budget(
        "launch_overhead",
        2,
        "trivial cell end to end within 0.5 s of `python -c`",
        _launch,
    ),
    Budget("load_ext", 2, "`%load_ext runctl_jupyter` under 0.3 s", _below(0.3, "s")),
    Budget(
        "store_list",
        3,
        "list/filter 10,000 runs at least 10x faster than MLflow sqlite search_runs",
        _ratio_check("mlflow_sqlite", 10, "MLflow / ours ="),
    ),
    Budget(
        "store_team_list",
        18,
        "list 10,000 pulled teammates' runs (and filter a project) under 1 s, as the local listing",
        _below(1.0, "s"),
    ),
    Budget(
        "store_metrics",
        3,
        "metric history 100 runs x 1,000 steps x 3 metrics at least 10x faster than MLflow sqlite get_metric_history",
        _ratio_check("mlflow_sqlite", 10, "MLflow / ours ="),
    ),
    Budget(
        "compare_panel",
        3,
        "compare panel of 100 runs x 1,000 steps x 3 metrics built in under 1 s",
        _below(1.0, "s"),
    ),
    Budget(
        "sweep_overhead",
        5,
        "200 trivial trials, --max-parallel 2, within 1.15x of the ideal (sum of trial times / 2)",
        _sweep,
    ),
    Budget(
        "dev_restart",
        17,
        "a dev run's restart on a warm instance: save -> first new log line <= 3 s",
        _below(3.0, "s"),
    ),
    Budget(
        "aws_api_calls",
        4,
        "at most ~1,000 AWS API calls per run-hour of streaming (vs polling SSM every 2 s)",
        _calls,
    ),
    Budget(
        "cold_start",
        19,
        "our part of a cold start <= 20 s, cell to first metric (an image with the pinned packages)",
        _cold("cold_baked_ami", 20.0),
    ),
    Budget(
        "cold_start",
        19,
        "the same from a bare image (venv, boto3 and the pins installed from the index)",
        _cold("cold", 20.0),
    ),
    Budget(
        "cold_start", 19, "a warm start (`--keep`, then `--instance`) <= 5 s", _cold("warm", 5.0)
    ),
]


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value == 0:
            return "0"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _x(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:,.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def _ratio_text(entry: Entry, peer: str) -> str:
    ours, other = _ours(entry), _peer(entry, peer)
    if not ours or other is None or other == 0:
        return "n/a"
    if entry.get("better") == "lower":
        return _x(other / ours) if other >= ours else f"{_x(other / ours)} (peer faster)"
    return _x(ours / other)


def _rep_range(info: dict, peer: str, better: str) -> str:
    """Min-max of the per-repetition ratios (peer and ours measured back to back)."""
    samples = info.get("samples")
    if not isinstance(samples, dict):
        return "-"
    ours, other = samples.get("ours"), samples.get(peer)
    if not ours or not other or len(ours) != len(other) or len(ours) < 2:
        return "-"
    pairs = [(o, p) for o, p in zip(ours, other) if o and p]
    if not pairs:
        return "-"
    ratios = [p / o if better == "lower" else o / p for o, p in pairs]
    return f"{_x(min(ratios))} - {_x(max(ratios))}"


def render(
    results: dict[str, Entry],
    detail: dict[str, Any],
    meta: dict[str, Any],
    skipped: dict[str, str],
) -> str:
    lines: list[str] = []
    add = lines.append
    add("# Benchmarks")
    add("")
    add(
        "Measured by `python -m benchmarks` (issue 9); the numbers are in "
        "`benchmarks/results.json`, the raw samples in `benchmarks/results_detail.json`. "
        "Every comparison runs side by side in one run of the harness: the contenders "
        "alternate repetition by repetition (the order rotates), and each figure is the "
        f"median of {meta.get('reps', '?')} repetitions. The machine is shared and noisy, "
        "so read the ratios, not the absolute times."
    )
    if meta.get("quick"):
        add("")
        add(
            "**Quick (smoke) mode: small sizes and few repetitions; these figures say the "
            "harness runs, they do not measure the budgets.**"
        )
    add("")
    add("## Machine and versions")
    add("")
    add(f"- date: {meta.get('date')} (harness took {meta.get('seconds', 0):.0f} s)")
    add(f"- machine: {meta.get('machine')}")
    add(f"- commit: {meta.get('commit')}")
    if meta.get("load_average"):
        add(f"- load average: {meta['load_average']}")
    if meta.get("load_note"):
        add(f"- load: {meta['load_note']}")
    versions = meta.get("versions", {})
    add("- versions: " + ", ".join(f"{k} {v or 'not installed'}" for k, v in versions.items()))
    if meta.get("peer_python"):
        add(
            f"- peers (mlflow, wandb) ran in a separate venv ({meta['peer_python']}) "
            "as a worker process that times each operation itself"
        )
    wandb_ran = "wandb_offline" in (results.get("log_step", {}).get("peers") or {})
    if versions.get("wandb"):
        add(
            '- wandb ran offline here (`mode="offline"`, its local wandb-core service)'
            if wandb_ran
            else "- wandb is installed but did not run offline here (see the log_step notes)"
        )
    elif meta.get("peer_python"):
        add("- wandb could not be installed in the peers venv: not measured")
    add("")
    add("Reproduce:")
    add("")
    add(
        "    python -m benchmarks --setup     # once: the peers venv (mlflow, wandb) under benchmarks/.work/"
    )
    add(
        "    python -m benchmarks             # everything: writes benchmarks/results.json and this page"
    )
    add("    python -m benchmarks --only log_step --only store_list")
    add(
        "    python -m benchmarks --quick     # smoke mode (CI): small sizes, results to a temp folder"
    )
    add("")
    add("## Results")
    add("")
    add(
        "Ratio = peer / ours of the medians for lower-is-better figures (so >1x means runctl "
        "is faster). Range = the lowest and highest ratio of single repetitions, where both "
        "were measured back to back: how much the noise moves it."
    )
    add("")
    add("| benchmark | unit | ours | peer | peer value | ratio | range |")
    add("|---|---|---|---|---|---|---|")
    for name, entry in results.items():
        peers = entry.get("peers") or {}
        if not peers:
            add(f"| `{name}` | {entry['unit']} | {_fmt(entry.get('ours'))} | - | - | - | - |")
            continue
        info = detail.get(name, {})
        for i, (peer, value) in enumerate(peers.items()):
            head = (
                f"| `{name}` | {entry['unit']} | {_fmt(entry.get('ours'))}" if i == 0 else "| | | "
            )
            spread = _rep_range(info, peer, entry.get("better", "lower"))
            add(f"{head} | {peer} | {_fmt(value)} | {_ratio_text(entry, peer)} | {spread} |")
    add("")
    add("## Budgets")
    add("")
    add("| issue | budget | measured | result |")
    add("|---|---|---|---|")
    for budget in BUDGETS:
        entry = results.get(budget.benchmark)
        if entry is None:
            reason = skipped.get(budget.benchmark) or "not measured in this run"
            add(f"| {budget.issue} | {budget.text} | - | {reason} |")
            continue
        outcome = budget.check(entry, detail.get(budget.benchmark, {}))
        if outcome is None:
            add(f"| {budget.issue} | {budget.text} | - | not computable (a figure is missing) |")
        else:
            passed, figure = outcome
            add(f"| {budget.issue} | {budget.text} | {figure} | {'PASS' if passed else 'FAIL'} |")
    add("")
    add("## What each benchmark measures")
    add("")
    for name in results:
        info = detail.get(name, {})
        about = info.get("about")
        if about:
            add(f"- `{name}`: {about}")
        for note in info.get("notes", []):
            add(f"  - note: {note}")
    cold = section(results, detail)  # the AWS cold start's own tables, when measured
    lines.extend(["", *cold] if cold else [])
    if skipped:
        add("")
        add("## Not measured")
        add("")
        for name, reason in skipped.items():
            add(f"- `{name}`: {reason}")
    add("")
    return "\n".join(lines)
