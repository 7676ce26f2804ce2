"""The SSM `AWS-RunShellScript` text that starts a run's agent on the instance.

The script holds only S3 coordinates, the run id, the attempt number, fixed paths and
the bundle's plain `name==version` pins, each quoted with `shlex.quote`; never a
hyperparameter, code or a secret (those travel in the bundle; credentials come from
the instance profile).

On the instance it:
1. finds a Python >= 3.10 (installing python3.11 with dnf/apt when the image has none);
2. creates (once per instance) `$ROOT/venv` — without pip when the Python bundles a pip
   wheel (ensurepip's), which then runs pip — and makes sure it has boto3 and
   cloudpickle (the agent's S3 sync and the shipped objects need them), installed in
   the same pip run as the pins the script carries (issue 19: one pip start, no
   compile of unused modules);
3. in one Python process: fetches the bundle from S3 and unpacks it into
   `$ROOT/runs/<id>/` (run folder, `work/`), `$ROOT/pkg/<id>-<attempt>/runctl_jupyter`
   (the agent), then `agent.service._prepare` (spec paths, restore from S3, --data),
   checks whether the venv has every pin already (a kept instance, or an AMI made from
   one: `importlib.metadata`, no pip start) and, for a kept instance, makes sure its
   idle watcher runs (`runctl_jupyter.agent.idle`);
4. installs the bundle's pinned requirements unless they are there;
   `bootstrap.json` keeps the pip time and the wall-clock end of each phase (`marks`,
   passed on in the agent's first event);
5. starts `python -m runctl_jupyter.agent.service service` — the agent, then a final
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
from .stage_py import _PINS_PRESENT_PY as _PINS_PRESENT_PY  # the check alone (tests)
from .stage_py import _PIP_WHEEL_PY, _STAGE_PY

SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

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
  WHEEL="$("$PY" -c {pip_wheel_py} 2>/dev/null || true)"
  if [ -n "$WHEEL" ]; then
    say "creating $VENV from $PY (pip runs from its wheel)"
    "$PY" -m venv --without-pip "$VENV"
    echo "$WHEEL" > "$VENV/.pip-wheel"
  else
    say "creating $VENV from $PY"
    "$PY" -m venv "$VENV"
  fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
# pip from the wheel the venv was made without (else its own); --no-compile: a module is
# compiled when first imported, not every module of every package at install time
pip_install() {{
  local wheel=""
  [ -s "$VENV/.pip-wheel" ] && wheel="$(cat "$VENV/.pip-wheel")"
  if [ -n "$wheel" ] && [ -e "$wheel" ]; then
    "$VENV/bin/python" "$wheel/pip" install -q --no-compile "$@"
  else
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip -q
    "$VENV/bin/python" -m pip install -q --no-compile "$@"
  fi
}}
# the bundle's pins when they are plain name==version lines (aws/bootstrap.py): a bare
# image installs them with the agent's packages, in one pip run
PINS=({pins})
STAGE="$ROOT/bundles/$RUN_ID-$ATTEMPT"
stage() {{
  set +e
  "$VENV/bin/python" -c {stage_py} "$BUCKET" "$BUNDLE_KEY" "$REGION" "$ROOT" "$RUN_ID" "$ATTEMPT"
  RC=$?
  set -e
}}
mark venv
stage
RC0=$RC
if [ "$RC" = 10 ]; then
  say "installing boto3 and cloudpickle for the agent${{PINS[0]:+, and the ${{#PINS[@]}} pinned package(s)}}"
  pip_install boto3 cloudpickle ${{PINS[@]+"${{PINS[@]}}"}}
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
  if [ "$(cat "$STAGE/.pins" 2>/dev/null)" = present ]; then
    if [ "$RC0" = 10 ] && [ -n "${{PINS[0]:-}}" ]; then
      REQS=installed  # with the agent's packages, just above
    else
      REQS=present
      say "the $(wc -l < "$STAGE/requirements.txt") pinned package(s) are installed already"
    fi
  else
    REQS=installed
    say "installing $(wc -l < "$STAGE/requirements.txt") pinned package(s)"
    pip_install -r "$STAGE/requirements.txt"
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


PIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}==[A-Za-z0-9][A-Za-z0-9.+!_-]{0,63}$")
INLINE_PINS_CHARS = 4096  # an SSM command's text is small; more pins: pip after staging


def _inline_pins(pins: list[str] | tuple[str, ...]) -> str:
    """The pins quoted for the script's PINS array: all or none (any line that is not a
    plain name==version, or too many, and pip reads the bundle's requirements.txt)."""
    lines = [p.strip() for p in pins if p.strip() and not p.lstrip().startswith("#")]
    if not lines or not all(PIN.match(p) for p in lines):
        return ""
    text = " ".join(shlex.quote(p) for p in lines)
    return text if len(text) <= INLINE_PINS_CHARS else ""


def script(
    bucket: str,
    key: str,
    region: str,
    run_id: str,
    attempt: int,
    node: tuple[int, str] | None = None,
    pins: list[str] | tuple[str, ...] = (),
) -> str:
    """The bootstrap script for one attempt (values quoted; no parameter or secret in it).
    `node`: (node rank, rendezvous host:port) on each node of a multi-node run; the agent
    service gets them as RUNCTL_NODE_RANK and RUNCTL_RDZV_ENDPOINT. `pins`: the bundle's
    requirements (name==version lines), installed with the agent's packages on a bare image."""
    return _script(
        bucket,
        key,
        region,
        shlex.quote(_check_id(run_id, "run id")),
        shlex.quote(str(int(attempt))),
        node_env=_node_env(node),
        pins=_inline_pins(pins),
    )


def boot_script(bucket: str, key: str, region: str, run_id: str) -> str:
    """The UserData of a spot fleet's instances (its launch template): the same bootstrap, with
    the attempt left to the instance (`agent.boot`: only a replacement starts one). Multi-node
    runs are launched whole, never from a fleet; no bundle in hand here: a replacement
    installs the pins after staging."""
    return _script(
        bucket, key, region, shlex.quote(_check_id(run_id, "run id")), "next", user_data=True
    )


# an AWS schedule's fire: a new run id (10 hex digits, as store/folders.new_run_id)
_FIRE_RUN_ID = "\"$(od -An -N5 -tx1 /dev/urandom | tr -d ' \\n')\""


def fire_script(bucket: str, key: str, region: str) -> str:
    """The UserData of an AWS schedule's launch template: a new run from the schedule's
    bundle (agent/fired.py), its attempt 1 started at boot; the instance ends with it."""
    return _script(bucket, key, region, _FIRE_RUN_ID, "fire", user_data=True)


def _script(
    bucket: str,
    key: str,
    region: str,
    run_id: str,
    attempt: str,
    node_env: str = "",
    pins: str = "",
    user_data: bool = False,
) -> str:
    """The template filled (`run_id` and `attempt` already shell words)."""
    text = _TEMPLATE.format(
        node_env=node_env,
        bucket=shlex.quote(bucket),
        key=shlex.quote(key),
        region=shlex.quote(region),
        run_id=run_id,
        attempt=attempt,
        stage_py=shlex.quote(_STAGE_PY),
        pip_wheel_py=shlex.quote(_PIP_WHEEL_PY),
        pins=pins,
    )
    if not user_data:
        return text
    # cloud-init runs UserData as root, where HOME may be unset: the same /root/runctl as SSM
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
