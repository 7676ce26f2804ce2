"""The model registry an instance reads: `runctl.load_model(...)` in a run on EC2.

The registry is the notebook home's files. A promote or rollback there publishes the
model to S3 (runs/model_publish.py): `<prefix>models/<owner>/<project>/<name>/`
`versions/NNNNNN.json`, `aliases.jsonl`, `artifacts/NNNNNN/<file>`. Before an attempt
the agent copies that folder of the run's owner and project (`sync["models"]`, the only
models its role may read: aws/policy.py) into this instance's registry, `$ROOT/models/`,
each version's `artifact` pointed at its local copy. `runtime.load_model` then reads it
as at home and checks each artifact's sha256 before returning it (registry.py).
Standard library; boto3 through agent/clients.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..paths import path_under
from .clients import make_s3_client


def fetch(cfg: dict, home: Path, s3: Any = None) -> int:
    """Copy the published models into `home/models/`; how many versions."""
    prefix = cfg.get("models")
    if not prefix:
        return 0
    s3 = s3 or make_s3_client(cfg.get("region"))
    bucket = cfg["bucket"]
    root = Path(home) / "models"
    count = 0
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            dest = path_under(root, rel)  # a key from S3 names a file: it stays in models/
            dest.parent.mkdir(parents=True, exist_ok=True)
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            dest.write_bytes(body)
            if len(Path(rel).parts) == 3 and Path(rel).parts[1] == "versions":
                count += 1
    for version in root.glob("*/versions/*.json"):
        entry = json.loads(version.read_text())
        local = version.parent.parent / "artifacts" / version.stem / str(entry.get("file", ""))
        entry["artifact"] = str(local)
        version.write_text(json.dumps(entry, indent=1))
    return count
