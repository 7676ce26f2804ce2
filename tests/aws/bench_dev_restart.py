"""Not a test: pytest does not collect this file by itself (its name). `python -m
benchmarks --only dev_restart` runs it so that benchmarks/dev_restart.py measures in
this folder's fixture (moto and the played instance)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from benchmarks.dev_restart import measure


def test_measure_dev_restart(aws, instance, tmp_path, monkeypatch):
    samples = measure(aws, tmp_path, monkeypatch)
    assert samples["dev_restart"] and samples["fresh_train_instance"]
    Path(os.environ["RUNCTL_BENCH_OUT"]).write_text(json.dumps(samples))
