"""The cold start's section of docs/benchmarks.md: each start step by step, the AWS calls
in order, the boot phases, and what AWS itself would add on EC2 (its published figures,
marked as estimates: the fixture boots nothing)."""

from __future__ import annotations

from typing import Any

LAUNCH_DOC = (  # AWS's API text, as the SDK reference carries it
    "https://docs.aws.amazon.com/sdk-for-kotlin/api/latest/autoscaling/aws.sdk.kotlin.services"
    ".autoscaling.model/-predictive-scaling-configuration/scheduling-buffer-time.html"
)
COLDBOOT = "https://github.com/brevdev/ec2-coldboot-research"
RUN_COMMAND_STATUS = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/monitor-commands.html"

# (what AWS does, seconds on the fixture, seconds on EC2, where that figure comes from)
AWS_PART = [
    (
        "RunInstances -> `running`",
        "0 (moto: running at once)",
        "~16 (third-party measurement; AWS only says 'a few minutes' at most)",
        f"[brevdev/ec2-coldboot-research]({COLDBOOT}) (measured pending -> running, t3 to r7i); "
        f"[EC2 Auto Scaling API reference]({LAUNCH_DOC}): 'It can take a few minutes to launch "
        "an EC2 instance'",
    ),
    (
        "`running` -> SSM agent Online (OS boot, agent start, registration)",
        "0 (the fixture reports every running instance Online)",
        "~10-30 (estimate: AWS publishes no figure)",
        "none found (unverified); in the same third-party study a cold launch took 25.8 s to "
        "SSH, ~16 s of it pending -> running",
    ),
    (
        "SendCommand -> the agent picks it up",
        "<= 0.1 (the player's loop)",
        "~1 (estimate: the agent long-polls for messages)",
        f"[Run Command statuses]({RUN_COMMAND_STATUS}) (archived page: Pending until the agent "
        "receives it); no latency published",
    ),
    (
        "each AWS API call from the notebook",
        "~0.01-0.1 (moto on 127.0.0.1)",
        "~0.05-0.15 a call from a laptop to its region (estimate)",
        "network round trip; no AWS figure",
    ),
]


def _s(value: Any) -> str:
    return f"{value:.1f}" if isinstance(value, (int, float)) else "-"


def section(results: dict, detail: dict) -> list[str]:
    """Markdown lines; none when the cold start was not measured."""
    info = detail.get("cold_start") or {}
    scenarios = info.get("scenarios")
    if not scenarios:
        return []
    lines = ["## Cold start, step by step (issue 19)", ""]
    lines.append(
        "`%%runctl train --backend aws` from the cell to the first metric in the live view "
        "(`python -m benchmarks --only cold_start`), measured on the fixture: moto on "
        "127.0.0.1 and the instance player of tests/aws, which runs the exact SSM script "
        "with bash on a bare Python (pip installs from the local package index). "
        "**Measured here** = on the fixture, where AWS's own part is zero; **estimated** = "
        "what AWS adds on EC2, from the figures cited below."
    )
    lines += ["", "| start | to first metric, s (median) | samples, s | AWS calls | requirements |"]
    lines.append("|---|---|---|---|---|")
    for name, scenario in scenarios.items():
        samples = ", ".join(_s(v) for v in scenario.get("samples_s", []))
        lines.append(
            f"| {name} | {_s(scenario['to_first_metric_s'])} | {samples} | "
            f"{scenario['aws_calls']} | {scenario.get('requirements') or '-'} |"
        )
    lines += (
        _invocations(info.get("invocations")) + _before_after(info) + _paired(info.get("paired"))
    )
    lines += ["", "Boot script phases (median seconds, measured; `bootstrap.json` marks):", ""]
    names = sorted({p for s in scenarios.values() for p in s.get("boot_phases_median_s", {})})
    lines.append("| phase | " + " | ".join(scenarios) + " |")
    lines.append("|---|" + "---|" * len(scenarios))
    for phase in names:
        row = [_s(s.get("boot_phases_median_s", {}).get(phase)) for s in scenarios.values()]
        lines.append(f"| {phase} | " + " | ".join(row) + " |")
    for name, scenario in scenarios.items():
        lines += [
            "",
            f"Every step of the median `{name}` start (seconds since the cell began):",
            "",
        ]
        lines += _steps(scenario)
    lines += _where_it_goes(scenarios)
    lines += ["", "What AWS itself adds on EC2 (not on the fixture):", ""]
    lines.append("| step | on the fixture, s (measured) | on EC2, s (estimated) | source |")
    lines.append("|---|---|---|---|")
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in AWS_PART]
    lines += [
        "",
        "So on EC2 (estimated): a cold start adds ~27-47 s of AWS's own (running, then SSM "
        "Online, then the command's delivery) and ~0.05-0.15 s a notebook call to the "
        "fixture's figure; a warm start (`--instance`) adds only the delivery and the calls' "
        "round trips, ~2-5 s. The boot's installs (boto3, the pins) download from PyPI "
        "there, from the package index configured here.",
        "",
        "What is left, and why it is not ours to cut (issue 19's goals: our part of a cold "
        "start <= 20 s, a warm start <= 5 s):",
        "",
        "- a bare image: the pip run is the download, unpacking and install of boto3 with "
        "botocore (its service models are most of its size), s3transfer, jmespath, dateutil, "
        "urllib3, six, cloudpickle and the pins (here numpy): bytes from the package index "
        "and files on disk. Cut already: pip is no longer installed into the venv (it runs "
        "from the Python's bundled wheel), one pip run instead of two (the pins ride in the "
        "script), no compile of modules nobody imports. What remains is the packages "
        "themselves; the way around it is an image that has them (`cold_baked_ami`: an AMI "
        "made from a kept instance, docs/aws.md). Not done: a wheel cache in the run bucket "
        "(the instance would need boto3 to read it, or presigned URLs in the SSM command, "
        "which are credentials in the command's history; and the notebook's own wheels are "
        "for its platform, not the instance's), the image's `aws` CLI (Amazon Linux has it, "
        "Ubuntu does not; the agent's sync still needs boto3);",
        "- every start: the staging Python's start and boto3's import on the instance (its "
        "CPU; seconds on a loaded 2-core machine, ~0.3 s on a quiet one), and the agent's "
        "own boto3 import before the first chunk's PUT (now beside the runner's start, not "
        "before it);",
        "- on this fixture: the instance, moto and the notebook share 2 cores with the other "
        "engineers' suites (the load averages above), so each Python start costs ~0.5-1 s "
        "instead of ~0.02 s; the price lookup of the day fails on moto (no Pricing API: two "
        "calls, ~1-3 s) where AWS answers once;",
        "- on EC2: AWS's own part above (~27-47 s for a launch, ~1 s for the command's "
        "delivery) and each call's round trip.",
        "",
    ]
    return lines


def _steps(scenario: dict) -> list[str]:
    out = ["| at | takes | what |", "|---|---|---|"]
    for step in scenario.get("steps", []):
        if step["kind"] == "aws" and step["s"] < 0.25:
            continue  # the quick calls (and the polls while the boot runs) are listed below
        what = step["what"]
        what = what if what.startswith(step["kind"]) else f"{step['kind']}: {what}"
        out.append(f"| {step['at']:.2f} | {step['s']:.2f} | {what} |")
    calls = ", ".join(scenario.get("aws_calls_in_order", []))
    out += ["", f"AWS calls in order ({scenario['aws_calls']}): {calls}"]
    return out


def _before_after(info: dict) -> list[str]:
    """The same starts before the cuts, when a run of the older code was merged in."""
    before, after = info.get("before"), info.get("scenarios") or {}
    if not before:
        return []
    now, then = info.get("measured") or {}, before.get("measured") or {}
    out = [
        "",
        f"Before the cuts (commit {then.get('commit')}, {then.get('date')}, load "
        f"{then.get('load_average')}) and after (commit {now.get('commit')}, {now.get('date')}, "
        f"load {now.get('load_average')}), on the same shared machine; medians in seconds. The "
        "load differed between the two runs (every Python start takes ~0.8 s at load 15 on 2 "
        "cores, ~0.02 s on a quiet machine): compare the phases more than the totals.",
        "",
        "| start | before | after | pins before -> after | requirements phase before -> after |",
        "|---|---|---|---|---|",
    ]
    for name, done in after.items():
        was = before.get(name) or {}
        req_was = (was.get("boot_phases_median_s") or {}).get("requirements")
        req_now = (done.get("boot_phases_median_s") or {}).get("requirements")
        out.append(
            f"| {name} | {_s(was.get('to_first_metric_s'))} | {_s(done['to_first_metric_s'])} | "
            f"{was.get('requirements', '-')} -> {done.get('requirements', '-')} | "
            f"{_s(req_was)} -> {_s(req_now)} |"
        )
    return out


def _paired(paired: dict | None) -> list[str]:
    """Quick runs of the old and the new code, alternating (the same load for both)."""
    if not paired:
        return []
    out = [
        "",
        f"Side by side: `--quick` runs (one start of each kind a run) of commit "
        f"{paired['before']} and {paired['after']}, alternating {paired['runs']} times "
        f"({paired['when']}); medians in seconds:",
        "",
        "| start | before | after | phase medians before -> after |",
        "|---|---|---|---|",
    ]
    for name, got in paired["scenarios"].items():
        phases = ", ".join(
            f"{k} {_s(got['phases_before'].get(k))} -> {_s(v)}"
            for k, v in got["phases_after"].items()
        )
        out.append(f"| {name} | {_s(got['before'])} | {_s(got['after'])} | {phases} |")
    return out


def _invocations(runs: list[dict] | None) -> list[str]:
    """Whole runs of `python -m benchmarks --only cold_start`, this code's alternating with
    the code before the cuts (the same hour, the same shared machine); each cell is that
    run's median of its rounds, and the last rows the medians of those medians."""
    if not runs:
        return []
    names = ("cold", "cold_baked_ami", "warm")
    out = [
        "",
        "Whole runs of `python -m benchmarks --only cold_start` (5 rounds each), one after "
        "another in the same hour on the same shared machine, the code after the cuts and "
        "main before them (its commit at the run's end: main moved while it ran, on no "
        "part of this path); each cell is the run's median, in seconds (the tables below "
        "come from the code after the cuts, per start the run whose median is the median):",
        "",
        "| run | code | commit | ended (UTC) | load (1 min) at start, end | "
        + " | ".join(names)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(names),
    ]
    for n, run in enumerate(runs, 1):
        cells = " | ".join(_s(run.get(name)) for name in names)
        out.append(
            f"| {n} | {run['code']} | {run['commit']} | {run['date']} | {run['load']} | {cells} |"
        )
    for code in dict.fromkeys(r["code"] for r in runs):
        mine = [r for r in runs if r["code"] == code]
        cells = " | ".join(_s(_median([r.get(name) for r in mine])) for name in names)
        out.append(f"| median of {len(mine)} | {code} | | | | {cells} |")
    return out


def _median(values: list[Any]) -> float | None:
    got = sorted(v for v in values if isinstance(v, (int, float)))
    if not got:
        return None
    mid = len(got) // 2
    return got[mid] if len(got) % 2 else (got[mid - 1] + got[mid]) / 2


# the median start's steps in five parts (what each is made of: docs/aws.md, the bootstrap)
PARTS = [
    (
        "notebook, to the SSM command's pickup: spec and environment capture, the price "
        "(once a day), the credentials check, the launch or the kept instance's checks, "
        "the bundle's upload, SendCommand",
        ("notebook: provisioning", "notebook: starting", "instance:"),
    ),
    (
        "boot: Python, venv and pip (boto3, cloudpickle and the pins from the package index, "
        "one pip run)",
        ("boot: python", "boot: venv", "boot: agent_packages", "boot: requirements"),
    ),
    (
        "boot: the staging Python (its start, boto3's import, the bundle's GET, unpack, "
        "prepare, the pins check, a kept instance's idle watcher)",
        ("boot: bundle",),
    ),
    (
        "agent: the service's start to its first event, the runner's start, the cell's own "
        "imports up to `runctl.log`",
        ("boot: service start", "agent:"),
    ),
    (
        "first metric -> shown: the agent's sync thread (boto3's import, its S3 client, the "
        "chunk's PUT) and the notebook's next look (every 0.25 s until a metric)",
        ("notebook: first metric shown",),
    ),
]


def _where_it_goes(scenarios: dict) -> list[str]:
    """Each median start's time to its first metric, in the parts above."""
    names = list(scenarios)
    out = [
        "",
        "Where the time of each median start goes (seconds, from its steps below; the parts "
        "add up to the figure, the gaps between steps fall in the part before them):",
        "",
        "| part | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    sums = {name: _parts(scenario) for name, scenario in scenarios.items()}
    for n, (what, _) in enumerate(PARTS):
        out.append(f"| {what} | " + " | ".join(_s(sums[name][n]) for name in names) + " |")
    total = " | ".join(_s(s.get("to_first_metric_s")) for s in scenarios.values())
    out.append(f"| to the first metric | {total} |")
    return out


def _parts(scenario: dict) -> list[float]:
    """Seconds per part: each step's span runs to the next step's start (gaps included)."""
    steps = [s for s in scenario.get("steps", []) if s["kind"] != "aws"]
    steps = [s for s in steps if s["what"] != "notebook: the cell returns"]
    end = float(scenario.get("to_first_metric_s") or 0.0)
    got = [0.0] * len(PARTS)
    got[0] = steps[0]["at"] if steps else 0.0  # the cell's start to its first step
    for step, after in zip(steps, steps[1:] + [None]):
        what = (
            step["what"]
            if step["what"].startswith(step["kind"])
            else (f"{step['kind']}: {step['what']}")
        )
        upto = after["at"] if after is not None else end
        span = max(0.0, min(upto, end) - step["at"])
        for n, (_, prefixes) in enumerate(PARTS):
            if what.startswith(prefixes):
                got[n] += span
                break
    return got
