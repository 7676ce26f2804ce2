"""A run's AWS facts (instance, bucket, prefix, fleet, cluster, attempt): spec["target"],
or aws.json, which start() writes next to the spec, since a session may hold a spec
written before the run's newest attempt started.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def read_target(run_dir: Path, spec: dict) -> dict:
    """spec["target"], or the facts start() wrote next to it (a session may hold an old spec)."""
    target = dict(spec.get("target") or {})
    if not target.get("bucket"):
        try:
            target.update(json.loads((Path(run_dir) / "aws.json").read_text()))
        except (FileNotFoundError, ValueError):
            pass
    return target


def write_target(run_dir: Path, facts: dict) -> None:
    tmp = run_dir / "aws.json.tmp"
    tmp.write_text(json.dumps(facts, indent=1, default=str))
    os.replace(tmp, run_dir / "aws.json")
