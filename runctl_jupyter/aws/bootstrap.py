"""The SSM `AWS-RunShellScript` text that starts a run's agent on the instance.

The script holds only S3 coordinates, the run id, the attempt number and fixed
paths, each quoted with `shlex.quote`; never a hyperparameter, code or a secret
(those travel in the bundle; credentials come from the instance profile).

On the instance it:
1. finds a Python >= 3.10 (installing python3.11 with dnf/apt when the image has none);
2. creates (once per instance) `$ROOT/venv` and makes sure it has boto3 and
   cloudpickle — the agent's S3 sync and the shipped objects need them;
3. fetches the bundle from S3 and unpacks it: `$ROOT/runs/<id>/` (run folder),
   `$ROOT/pkg/<id>-<attempt>/runctl_jupyter` (the agent), `--sync` folders;
4. installs the bundle's pinned requirements (timed into `bootstrap.json`);
5. starts `python -m runctl_jupyter.agent_s3 service` — the agent, then a final
   sync and the instance's termination unless kept — as a service that outlives
   the command: a transient systemd unit when systemd runs, else nohup + setsid
   with a pid file.

`$ROOT` is `$HOME/runctl` (`/root/runctl` under SSM, where HOME may be unset).
"""

from __future__ import annotations

import json
import re
import shlex

from ..errors import RunctlError

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# The bundle is fetched by this fixed Python text (bucket, key, region, dest as argv).
_FETCH_PY = """
import sys, time, os, boto3
from botocore.config import Config
bucket, key, region, dest = sys.argv[1:5]
kw = {"region_name": region, "config": Config(retries={"mode": "adaptive", "max_attempts": 8})}
ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
if ep:
    kw["endpoint_url"] = ep
s3 = boto3.session.Session().client("s3", **kw)
for i in range(6):
    try:
        s3.download_file(bucket, key, dest)
        break
    except Exception as exc:
        if i == 5:
            sys.exit("runctl: cannot fetch s3://%s/%s: %s" % (bucket, key, exc))
        time.sleep(2 ** i)
"""

_TEMPLATE = r"""#!/bin/bash
# runctl-jupyter bootstrap: fetch the run's bundle and start its agent as a service.
set -euo pipefail
umask 077
BUCKET={bucket}
BUNDLE_KEY={key}
REGION={region}
RUN_ID={run_id}
ATTEMPT={attempt}
ROOT="${{HOME:-/root}}/runctl"
RUN_DIR="$ROOT/runs/$RUN_ID"
PKG="$ROOT/pkg/$RUN_ID-$ATTEMPT"
mkdir -p "$ROOT/runs" "$ROOT/pkg" "$ROOT/bundles"
cd "$ROOT"
say() {{ echo "runctl: $*"; }}

find_python() {{
  for p in python3.13 python3.12 python3.11 python3.10 python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
      command -v "$p"; return 0
    fi
  done
  return 1
}}
PY="$(find_python || true)"
if [ -z "$PY" ]; then
  say "no Python >= 3.10: installing python3.11"
  if command -v dnf >/dev/null 2>&1; then dnf install -y -q python3.11 python3.11-pip;
  elif command -v apt-get >/dev/null 2>&1; then apt-get update -q && apt-get install -y -q python3.11 python3.11-venv; fi
  PY="$(find_python)"
fi

VENV="$ROOT/venv"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV from $PY"
  "$PY" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if ! "$VENV/bin/python" -c 'import boto3, cloudpickle' >/dev/null 2>&1; then
  say "installing boto3 and cloudpickle for the agent"
  "$VENV/bin/python" -m pip install -q boto3 cloudpickle
fi

BUNDLE="$ROOT/bundles/$RUN_ID-$ATTEMPT.tar.gz"
"$VENV/bin/python" -c {fetch_py} "$BUCKET" "$BUNDLE_KEY" "$REGION" "$BUNDLE"
STAGE="$ROOT/bundles/$RUN_ID-$ATTEMPT"
rm -rf "$STAGE" && mkdir -p "$STAGE" "$RUN_DIR"
tar -xzf "$BUNDLE" -C "$STAGE"
# the instance's own events.jsonl (a run resumed here) is never overwritten: prepare merges
if [ -f "$STAGE/run/events.jsonl" ]; then mv "$STAGE/run/events.jsonl" "$RUN_DIR/.bundle-events.jsonl"; fi
cp -a "$STAGE/run/." "$RUN_DIR/"
rm -rf "$PKG" && mkdir -p "$PKG" && cp -a "$STAGE/pkg/." "$PKG/"
mkdir -p "$RUN_DIR/work"
if [ -d "$STAGE/work" ]; then cp -a "$STAGE/work/." "$RUN_DIR/work/"; fi

T0=$(date +%s)
if [ -s "$STAGE/requirements.txt" ]; then
  say "installing $(wc -l < "$STAGE/requirements.txt") pinned package(s)"
  "$VENV/bin/python" -m pip install -q -r "$STAGE/requirements.txt"
fi
T1=$(date +%s)
printf '{{"pip_seconds": %s, "python": "%s"}}\n' "$((T1 - T0))" "$VENV/bin/python" > "$RUN_DIR/bootstrap.json"

export PYTHONPATH="$PKG"
"$VENV/bin/python" -m runctl_jupyter.agent_s3 prepare "$RUN_DIR"
if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemd-run --unit "runctl-$RUN_ID-$ATTEMPT" --collect --property=KillMode=mixed \
    --setenv=PYTHONPATH="$PKG" --setenv=HOME="${{HOME:-/root}}" \
    --working-directory="$RUN_DIR" \
    "$VENV/bin/python" -m runctl_jupyter.agent_s3 service "$RUN_DIR" --attempt "$ATTEMPT"
  echo "systemd:runctl-$RUN_ID-$ATTEMPT" > "$RUN_DIR/service"
else
  cd "$RUN_DIR"
  nohup setsid "$VENV/bin/python" -m runctl_jupyter.agent_s3 service "$RUN_DIR" --attempt "$ATTEMPT" \
    </dev/null >>"$RUN_DIR/agent.log" 2>&1 &
  echo "$!" > "$RUN_DIR/service.pid"
  echo "pid:$!" > "$RUN_DIR/service"
fi
say "agent started for run $RUN_ID attempt $ATTEMPT"
"""

# Stop: ask the agent to stop (control.json, as `stop` does locally) and wake it.
_STOP_TEMPLATE = r"""#!/bin/bash
set -euo pipefail
RUN_ID={run_id}
RUN_DIR="${{HOME:-/root}}/runctl/runs/$RUN_ID"
[ -d "$RUN_DIR" ] || {{ echo "runctl: no run $RUN_ID on this instance"; exit 3; }}
printf '%s' {control} > "$RUN_DIR/control.json.tmp"
mv "$RUN_DIR/control.json.tmp" "$RUN_DIR/control.json"
if [ -f "$RUN_DIR/agent.json" ]; then
  PID="$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$RUN_DIR/agent.json")"
  [ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null || true
fi
echo "runctl: stop requested for $RUN_ID"
"""


def _check_id(value: str, what: str) -> str:
    if not SAFE_ID.match(value):
        raise RunctlError(
            f"{what} {value!r} has characters runctl does not allow; use letters, digits, . _ -"
        )
    return value


def script(bucket: str, key: str, region: str, run_id: str, attempt: int) -> str:
    """The bootstrap script for one attempt (values quoted; no parameter or secret in it)."""
    return _TEMPLATE.format(
        bucket=shlex.quote(bucket),
        key=shlex.quote(key),
        region=shlex.quote(region),
        run_id=shlex.quote(_check_id(run_id, "run id")),
        attempt=shlex.quote(str(int(attempt))),
        fetch_py=shlex.quote(_FETCH_PY),
    )


def stop_script(run_id: str, force: bool = False, reason: str = "user") -> str:
    control = json.dumps(
        {"stop": True, "force": bool(force), "reason": _check_id(reason, "reason")}
    )
    return _STOP_TEMPLATE.format(
        run_id=shlex.quote(_check_id(run_id, "run id")), control=shlex.quote(control)
    )
