"""The SSM `AWS-RunShellScript` text that starts a run's agent on the instance.

The script holds only S3 coordinates, the run id, the attempt number and fixed
paths, each quoted with `shlex.quote`; never a hyperparameter, code or a secret
(those travel in the bundle; credentials come from the instance profile).

On the instance it:
1. finds a Python >= 3.10 (installing python3.11 with dnf/apt when the image has none);
2. creates (once per instance) `$ROOT/venv` and makes sure it has boto3 and
   cloudpickle — the agent's S3 sync and the shipped objects need them;
3. in one Python process: fetches the bundle from S3 and unpacks it into
   `$ROOT/runs/<id>/` (run folder, `work/`), `$ROOT/pkg/<id>-<attempt>/runctl_jupyter`
   (the agent), then `agent.service._prepare` (spec paths, restore from S3, --data);
4. installs the bundle's pinned requirements, unless the venv has every pin already
   (a kept instance, or an AMI made from one: `importlib.metadata`, no pip start);
   `bootstrap.json` keeps the pip time and the wall-clock end of each phase (`marks`,
   passed on in the agent's first event);
5. starts `python -m runctl_jupyter.agent.service service` — the agent, then a final
   sync and the instance's termination unless kept — as a service that outlives
   the command: a transient systemd unit when systemd runs, else nohup + setsid
   with a pid file;
6. for a kept instance, makes sure its idle watcher runs (`runctl_jupyter.agent.idle`).

`$ROOT` is `$HOME/runctl` (`/root/runctl` under SSM, where HOME may be unset).
"""

from __future__ import annotations

import inspect
import json
import re
import shlex

from .. import paths
from ..errors import RunctlError

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# One Python process stages an attempt (fixed text; values come as argv): it checks
# the agent's imports (exit 10: install them, then run again), fetches the bundle
# from S3, unpacks it into the run folder, the agent package and the working
# folder, then `agent.service._prepare` (spec paths, restore from S3, --data staging).
_STAGE_PY = """
import json, os, shutil, sys, tarfile, time
try:
    import boto3, cloudpickle
    from botocore.config import Config
except ImportError:
    sys.exit(10)
bucket, key, region, root, run_id, attempt = sys.argv[1:7]
bundle = os.path.join(root, "bundles", run_id + "-" + attempt + ".tar.gz")
stage = bundle[: -len(".tar.gz")]
run_dir = os.path.join(root, "runs", run_id)
kw = {"region_name": region, "config": Config(retries={"mode": "adaptive", "max_attempts": 8})}
ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
if ep:
    kw["endpoint_url"] = ep
s3 = boto3.session.Session().client("s3", **kw)
for i in range(6):
    try:
        with open(bundle, "wb") as f:  # one GET (download_file: a HEAD first, and s3transfer)
            f.write(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        break
    except Exception as exc:
        if i == 5:
            sys.exit("runctl: cannot fetch s3://%s/%s: %s" % (bucket, key, exc))
        time.sleep(2 ** i)
shutil.rmtree(stage, ignore_errors=True)
os.makedirs(stage)
try:  # extract_bundle and path_under: runctl_jupyter/paths.py, sent ahead of this text
    extract_bundle(bundle, stage)
except UnsafePath as exc:
    sys.exit("runctl: refusing the bundle s3://%s/%s: %s" % (bucket, key, exc))
sys.path.insert(0, os.path.join(stage, "pkg"))
from runctl_jupyter.agent import boot as agent_boot
from runctl_jupyter.agent.service import _imds_instance_id, _prepare, _terminate_self
with open(os.path.join(stage, "run", "spec.json")) as f:
    cfg = json.load(f).get("sync") or {}
me = _imds_instance_id() or (cfg.get("instance_id") if attempt != "next" else None)
from runctl_jupyter.agent.clients import adopt
adopt("s3", region, s3)  # the agent's steps below reuse it: no second S3 model to load
if attempt == "fire":  # an AWS schedule's instance: the template run becomes a new run
    from runctl_jupyter.agent import fired
    cfg = fired.adopt(stage, run_id, me, s3)["sync"]
    attempt = "1"
if attempt == "next":  # a boot script: only a replacement instance starts an attempt
    why_not = agent_boot.replacement_wanted(cfg, run_id, me)
    if why_not:
        print("runctl: " + why_not)
        sys.exit(11)
os.makedirs(run_dir, exist_ok=True)
events = os.path.join(stage, "run", "events.jsonl")
if os.path.exists(events):  # the instance's own stream is never overwritten: prepare merges
    shutil.move(events, os.path.join(run_dir, ".bundle-events.jsonl"))
shutil.copytree(os.path.join(stage, "run"), run_dir, dirs_exist_ok=True)
work = os.path.join(run_dir, "work")
os.makedirs(work, exist_ok=True)
if os.path.isdir(os.path.join(stage, "work")):
    shutil.copytree(os.path.join(stage, "work"), work, dirs_exist_ok=True)
from pathlib import Path
if attempt == "next":
    agent_boot.adopt(Path(run_dir), me)
rc = _prepare(run_dir, attach_as=me if attempt == "next" else None)
if attempt == "next":
    nxt = agent_boot.next_attempt(Path(run_dir))
    if rc and nxt is not None and rc != 4:  # events restored: the run says why it stopped
        why = open(os.path.join(run_dir, ".prepare-error")).read()
        agent_boot.fail_attempt(Path(run_dir), nxt, "the replacement instance " + me + ": " + why)
    if rc or nxt is None:  # over, or cannot go on here: no refill loop, nothing left billing
        print("runctl: not resuming here: deleting the spot fleet, terminating " + me)
        _terminate_self(dict(cfg, instance_id=me))
        sys.exit(rc or 11)
    attempt = str(nxt)
elif rc:
    sys.exit(rc)
agent_boot.record_attempt(cfg, run_id, int(attempt), me)
pkg = os.path.join(root, "pkg", run_id + "-" + attempt)
shutil.rmtree(pkg, ignore_errors=True)
shutil.copytree(os.path.join(stage, "pkg"), pkg)
with open(os.path.join(run_dir, ".attempt"), "w") as f:
    f.write(attempt)
"""
# the bundle is unpacked before the package is there: paths.py travels as text ahead
_STAGE_PY = inspect.getsource(paths) + _STAGE_PY

# Are the requirements' pins (name==version) all installed in this venv? Cheap: no pip
# start, no index read. Anything else (no pin, extras, a marker) answers no: pip decides.
_PINS_PRESENT_PY = """
import sys
from importlib.metadata import version
def present(line):
    name, pinned, wanted = line.partition("==")
    try:
        return bool(pinned) and version(name.strip()) == wanted.strip()
    except Exception:
        return False
lines = [s.strip() for s in open(sys.argv[1]) if s.strip() and not s.lstrip().startswith("#")]
sys.exit(0 if all(present(s) for s in lines) else 1)
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
{node_env}ROOT="${{HOME:-/root}}/runctl"
RUN_DIR="$ROOT/runs/$RUN_ID"
mkdir -p "$ROOT/runs" "$ROOT/pkg" "$ROOT/bundles"
cd "$ROOT"
# One bootstrap at a time per instance: the boot script (UserData) and the SSM command
# both run at a spot fleet instance's first boot and share the venv (the lock goes with the script).
if command -v flock >/dev/null 2>&1; then exec 9>"$ROOT/.bootstrap.lock"; flock 9; fi
say() {{ echo "runctl: $*"; }}
# each phase's wall-clock end (bootstrap.json "marks"; the agent passes them on in its first event)
MARKS=""
mark() {{ local t="${{EPOCHREALTIME:-$(date +%s.%N)}}"; MARKS="$MARKS${{MARKS:+, }}\"$1\": ${{t/,/.}}"; }}
mark start

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
mark python

VENV="$ROOT/venv"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV from $PY"
  "$PY" -m venv "$VENV"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
STAGE="$ROOT/bundles/$RUN_ID-$ATTEMPT"
stage() {{
  set +e
  "$VENV/bin/python" -c {stage_py} "$BUCKET" "$BUNDLE_KEY" "$REGION" "$ROOT" "$RUN_ID" "$ATTEMPT"
  RC=$?
  set -e
}}
mark venv
stage
if [ "$RC" = 10 ]; then
  say "installing boto3 and cloudpickle for the agent"
  "$VENV/bin/python" -m pip install -q boto3 cloudpickle
  mark agent_packages
  stage
fi
mark bundle
if [ "$RC" = 11 ]; then
  exit 0  # a boot script with nothing to start here (it said why)
elif [ "$RC" != 0 ]; then
  exit "$RC"
fi
ATTEMPT="$(cat "$RUN_DIR/.attempt")"
PKG="$ROOT/pkg/$RUN_ID-$ATTEMPT"

T0=$(date +%s)
REQS=none
if [ -s "$STAGE/requirements.txt" ]; then
  if "$VENV/bin/python" -c {pins_present_py} "$STAGE/requirements.txt"; then
    REQS=present
    say "the $(wc -l < "$STAGE/requirements.txt") pinned package(s) are installed already"
  else
    REQS=installed
    say "installing $(wc -l < "$STAGE/requirements.txt") pinned package(s)"
    "$VENV/bin/python" -m pip install -q -r "$STAGE/requirements.txt"
  fi
fi
T1=$(date +%s)
mark requirements
printf '{{"pip_seconds": %s, "requirements": "%s", "python": "%s", "marks": {{%s}}}}\n' \
  "$((T1 - T0))" "$REQS" "$VENV/bin/python" "$MARKS" > "$RUN_DIR/bootstrap.json"

export PYTHONPATH="$PKG"
NODE_ENV=()  # a multi-node run: this node's rank and the rendezvous, for the agent service
if [ -n "${{RUNCTL_NODE_RANK:-}}" ]; then
  NODE_ENV=(--setenv=RUNCTL_NODE_RANK="$RUNCTL_NODE_RANK" --setenv=RUNCTL_RDZV_ENDPOINT="$RUNCTL_RDZV_ENDPOINT")
fi
if command -v systemd-run >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemd-run --unit "runctl-$RUN_ID-$ATTEMPT" --collect --property=KillMode=mixed \
    --setenv=PYTHONPATH="$PKG" --setenv=HOME="${{HOME:-/root}}" ${{NODE_ENV[@]+"${{NODE_ENV[@]}}"}} \
    --working-directory="$RUN_DIR" \
    "$VENV/bin/python" -m runctl_jupyter.agent.service service "$RUN_DIR" --attempt "$ATTEMPT"
  echo "systemd:runctl-$RUN_ID-$ATTEMPT" > "$RUN_DIR/service"
else
  cd "$RUN_DIR"
  nohup setsid "$VENV/bin/python" -m runctl_jupyter.agent.service service "$RUN_DIR" --attempt "$ATTEMPT" \
    </dev/null >>"$RUN_DIR/agent.log" 2>&1 9>&- &
  echo "$!" > "$RUN_DIR/service.pid"
  echo "pid:$!" > "$RUN_DIR/service"
fi
# a kept instance stops itself after --idle-minutes (default 30) with no run: enforced here,
# not by the notebook (runctl_jupyter/idle.py; nothing happens for an instance that ends with its run)
"$VENV/bin/python" -m runctl_jupyter.agent.idle ensure "$ROOT" --spec "$RUN_DIR/spec.json" 9>&- || say "idle watcher not started"
say "agent started for run $RUN_ID attempt $ATTEMPT"
"""

# Stop and a dev run's restart: a fixed control.json for the run's agent (as `stop` and
# `dev` write it locally), which polls it; a stop also wakes it with SIGTERM.
_CONTROL_TEMPLATE = r"""#!/bin/bash
set -euo pipefail
RUN_ID={run_id}
RUN_DIR="${{HOME:-/root}}/runctl/runs/$RUN_ID"
[ -d "$RUN_DIR" ] || {{ echo "runctl: no run $RUN_ID on this instance"; exit 3; }}
PID=""
if [ -f "$RUN_DIR/agent.json" ]; then
  PID="$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$RUN_DIR/agent.json")"
fi
{before}printf '%s' {control} > "$RUN_DIR/control.json.tmp"
mv "$RUN_DIR/control.json.tmp" "$RUN_DIR/control.json"
{after}"""
_STOP_AFTER = """[ -n "$PID" ] && kill -TERM "$PID" 2>/dev/null || true
echo "runctl: stop requested for $RUN_ID"
"""
# a restart needs the agent there (it waits after an attempt); `no-agent`: the notebook
# side bootstraps the next attempt instead
_RESTART_BEFORE = """if [ -z "$PID" ] || ! kill -0 "$PID" 2>/dev/null; then echo "no-agent"; exit 0; fi
"""


def _check_id(value: str, what: str) -> str:
    if not SAFE_ID.match(value):
        raise RunctlError(
            f"{what} {value!r} has characters runctl does not allow; use letters, digits, . _ -"
        )
    return value


NODE_ENDPOINT = re.compile(r"^[0-9A-Za-z.:-]{1,253}:[0-9]{1,5}$")


def _node_env(node: tuple[int, str] | None) -> str:
    """`export` lines with a node's rank and node 0's host:port (checked, then quoted)."""
    if node is None:
        return ""
    rank, endpoint = node
    if not NODE_ENDPOINT.match(endpoint):
        raise RunctlError(f"rendezvous endpoint {endpoint!r} is not host:port")
    return (
        f"export RUNCTL_NODE_RANK={shlex.quote(str(int(rank)))}\n"
        f"export RUNCTL_RDZV_ENDPOINT={shlex.quote(endpoint)}\n"
    )


def script(
    bucket: str,
    key: str,
    region: str,
    run_id: str,
    attempt: int,
    node: tuple[int, str] | None = None,
) -> str:
    """The bootstrap script for one attempt (values quoted; no parameter or secret in it).
    `node`: (node rank, rendezvous host:port) on each node of a multi-node run; the agent
    service gets them as RUNCTL_NODE_RANK and RUNCTL_RDZV_ENDPOINT."""
    return _TEMPLATE.format(
        node_env=_node_env(node),
        bucket=shlex.quote(bucket),
        key=shlex.quote(key),
        region=shlex.quote(region),
        run_id=shlex.quote(_check_id(run_id, "run id")),
        attempt=shlex.quote(str(int(attempt))),
        stage_py=shlex.quote(_STAGE_PY),
        pins_present_py=shlex.quote(_PINS_PRESENT_PY),
    )


def boot_script(bucket: str, key: str, region: str, run_id: str) -> str:
    """The UserData of a spot fleet's instances (its launch template): the same bootstrap, with
    the attempt left to the instance (`agent.boot`: only a replacement starts one)."""
    text = _TEMPLATE.format(
        node_env="",  # multi-node runs are launched whole, never from a spot fleet
        bucket=shlex.quote(bucket),
        key=shlex.quote(key),
        region=shlex.quote(region),
        run_id=shlex.quote(_check_id(run_id, "run id")),
        attempt="next",
        stage_py=shlex.quote(_STAGE_PY),
        pins_present_py=shlex.quote(_PINS_PRESENT_PY),
    )
    # cloud-init runs UserData as root, where HOME may be unset: the same /root/runctl as SSM
    return text.replace(
        "set -euo pipefail\n", 'set -euo pipefail\nexport HOME="${HOME:-/root}"\n', 1
    )


# an AWS schedule's fire: a new run id (10 hex digits, as store/folders.new_run_id)
_FIRE_RUN_ID = "\"$(od -An -N5 -tx1 /dev/urandom | tr -d ' \\n')\""


def fire_script(bucket: str, key: str, region: str) -> str:
    """The UserData of an AWS schedule's launch template: a new run from the schedule's
    bundle (agent/fired.py), its attempt 1 started at boot; the instance ends with it."""
    text = _TEMPLATE.format(
        node_env="",
        bucket=shlex.quote(bucket),
        key=shlex.quote(key),
        region=shlex.quote(region),
        run_id=_FIRE_RUN_ID,
        attempt="fire",
        stage_py=shlex.quote(_STAGE_PY),
        pins_present_py=shlex.quote(_PINS_PRESENT_PY),
    )
    return text.replace(
        "set -euo pipefail\n", 'set -euo pipefail\nexport HOME="${HOME:-/root}"\n', 1
    )


def _control_script(run_id: str, control: dict, before: str = "", after: str = "") -> str:
    return _CONTROL_TEMPLATE.format(
        run_id=shlex.quote(_check_id(run_id, "run id")),
        control=shlex.quote(json.dumps(control)),
        before=before,
        after=after,
    )


def stop_script(run_id: str, force: bool = False, reason: str = "user") -> str:
    control = {"stop": True, "force": bool(force), "reason": _check_id(reason, "reason")}
    return _control_script(run_id, control, after=_STOP_AFTER)


def restart_script(run_id: str, manifest_key: str) -> str:
    """A dev run's restart: its agent fetches the changed files the manifest names
    (agent/restart.py) and starts the next attempt; prints `restart-requested`."""
    control = {"restart": True, "manifest": manifest_key}
    return _control_script(
        run_id, control, before=_RESTART_BEFORE, after='echo "restart-requested"\n'
    )
