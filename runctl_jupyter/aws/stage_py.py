"""The Python texts the bootstrap script (aws/bootstrap.py) runs on the instance with
`python -c TEXT ARGS`: the staging of an attempt, the pins check, the pip wheel finder.
Fixed text; values come as argv."""

from __future__ import annotations

import inspect

from .. import paths

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
    adopted = fired.adopt(stage, run_id, me, s3)
    if adopted is None:  # a data trigger's fire with nothing to train on: it said why
        _terminate_self(dict(cfg, instance_id=me))
        sys.exit(11)
    cfg = adopted["sync"]
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
# no Python start of their own on a warm instance: the pins check (pins_present, sent
# ahead of this text) and, for a kept instance, its idle watcher (agent/idle.py)
reqs = os.path.join(stage, "requirements.txt")
state = "none"
if os.path.exists(reqs) and os.path.getsize(reqs):
    state = "present" if pins_present(reqs) else "missing"
with open(os.path.join(stage, ".pins"), "w") as f:
    f.write(state)
os.environ["PYTHONPATH"] = pkg  # the watcher runs this attempt's copy, as the agent does
try:
    from runctl_jupyter.agent import idle as agent_idle
    agent_idle.ensure(Path(root), Path(run_dir, "spec.json"), None, ["--poll", str(agent_idle.POLL)])
except Exception as exc:
    print("runctl: idle watcher not started: %s" % exc)
"""

# Are the requirements' pins (name==version) all installed in this venv? Cheap: no pip
# start, no index read. Anything else (no pin, extras, a marker) answers no: pip decides.
_PINS_FUNC = """
def pins_present(path):
    from importlib.metadata import version
    def present(line):
        name, pinned, wanted = line.partition("==")
        try:
            return bool(pinned) and version(name.strip()) == wanted.strip()
        except Exception:
            return False
    lines = [s.strip() for s in open(path) if s.strip() and not s.lstrip().startswith("#")]
    return all(present(s) for s in lines)
"""
_PINS_PRESENT_PY = (
    _PINS_FUNC
    + """
import sys
sys.exit(0 if pins_present(sys.argv[1]) else 1)
"""
)
# the bundle is unpacked before the package is there: paths.py travels as text ahead
_STAGE_PY = inspect.getsource(paths) + _PINS_FUNC + _STAGE_PY

# A bare image's venv: pip runs from the wheel its Python bundles (ensurepip's, or
# Debian's python-wheels) instead of being installed into the venv first (seconds of
# unpacking and compiling on a small instance). Prints the wheel; exit 1 without one.
_PIP_WHEEL_PY = """
import glob, os, sys
try:
    import ensurepip
    places = [os.path.join(os.path.dirname(ensurepip.__file__), "_bundled")]
except ImportError:
    places = []
places.append("/usr/share/python-wheels")
found = [w for d in places for w in sorted(glob.glob(os.path.join(d, "pip-*.whl")))]
if not found:
    sys.exit(1)
print(found[-1])
"""
