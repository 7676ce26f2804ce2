"""AWSBackend's multi-node runs (`--nodes M`): one bundle, M bootstraps, one teardown.

    start   aws/cluster.provision (groups + M instances), the bundle once, then each
            node's SSM bootstrap with its own RUNCTL_NODE_RANK and node 0's
            RUNCTL_RDZV_ENDPOINT; a node that fails to start ends every node
    stop    the stop script on every node still running (node 0's agent then
            terminates them all); unreachable or forced: terminated from here
    ended   the run's exit arrived: every node terminated (idempotent), the
            placement group and the security group deleted
    next_attempt
            the run says `resuming` (a spot notice on any node): the attempt the
            notebook side should launch whole now, once this caller holds its S3
            claim (two followers never launch two clusters), else None

spec["target"] keeps node 0 as `instance_id` (what pull, is_alive and the
single-node paths read) and the whole cluster under `cluster`.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..aws import bootstrap, bundle, cluster, ssm
from ..aws.clients import AWSError, Clients, error_code
from ..aws.launch import LaunchRequest
from .aws_target import write_target

RELAUNCHES = "relaunch/"  # runs/<id>/relaunch/<attempt>.json: who launched that attempt
TAIL_BYTES = 65536
LOST_RACE = {"PreconditionFailed", "ConditionalRequestConflict", "412", "409"}


def start(
    backend: Any,
    clients: Clients,
    run_dir: Path,
    spec: dict,
    attempt: int,
    req: LaunchRequest,
    bucket: str,
    pip: Any,
    sync_dirs: list,
) -> dict:
    plan = spec["distributed"]
    facts = cluster.provision(clients, req, plan, attempt, progress=backend._say)
    try:
        return _ship_and_start(
            backend, clients, run_dir, spec, attempt, facts, req, bucket, pip, sync_dirs
        )
    except BaseException:
        cluster.teardown(clients, facts)
        raise


def _ship_and_start(
    backend: Any,
    clients: Clients,
    run_dir: Path,
    spec: dict,
    attempt: int,
    facts: dict,
    req: LaunchRequest,
    bucket: str,
    pip: Any,
    sync_dirs: list,
) -> dict:
    sync_cfg = {
        "kind": "s3",
        "bucket": bucket,
        "prefix": backend.prefix,
        "region": clients.region,
        "instance_id": None,  # each node's end is agent_cluster's (node 0 ends them all)
        "spot_request_id": None,
        "terminate": True,
        "cluster": facts,
    }
    data, requirements = bundle.build(run_dir, spec, sync_cfg, pip=pip, sync_dirs=sync_dirs)
    key = bundle.bundle_key(backend.prefix, spec["run_id"], attempt)
    backend._say("starting", f"uploading the bundle ({len(data) // 1024 + 1} KiB)")
    clients.s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
    endpoint = cluster.rendezvous_endpoint(facts)
    commands = []
    for rank, node in enumerate(facts["nodes"]):
        script = bootstrap.script(
            bucket, key, clients.region, spec["run_id"], attempt, node=(rank, endpoint)
        )
        backend._say("starting", f"bootstrapping node {rank} ({node['instance_id']}) through SSM")
        command_id = ssm.send(
            clients, node["instance_id"], script, comment=f"runctl run {spec['run_id']} node {rank}"
        )
        commands.append(command_id)
        node["command_id"] = command_id
    for rank, node in enumerate(facts["nodes"]):
        ssm.wait(
            clients,
            node["command_id"],
            node["instance_id"],
            timeout=backend.bootstrap_timeout,
            poll=backend.aws_poll,
            what=f"bootstrap of node {rank}",
        )
    node0 = facts["nodes"][0]
    target = {
        "instance_id": node0["instance_id"],
        "reused": False,
        "spot_request_id": node0.get("spot_request_id"),
        "availability_zone": facts["availability_zone"],
        "instance_type": req.instance_type,
        "spot": req.spot,
        "keep": False,
        "volume": None,
        "region": clients.region,
        "bucket": bucket,
        "prefix": backend.prefix,
        "bundle_key": key,
        "command_id": commands[0],
        "requirements": requirements,
        "attempt": attempt,
        "cluster": facts,
    }
    write_target(run_dir, target)
    return target


def stop(
    backend: Any, clients: Clients, spec: dict, target: dict, force: bool, reason: str
) -> None:
    """Stop every node's agent through SSM; forced, or a node unreachable: end them all."""
    facts = target["cluster"]
    if force:
        cluster.teardown(clients, facts)
        return
    states = cluster.node_states(clients, facts)
    script = bootstrap.stop_script(spec["run_id"], force=False, reason=reason)
    delivered = True
    for node in facts["nodes"]:
        iid = node["instance_id"]
        if states.get(iid) != "running":
            continue
        try:
            command_id = ssm.send(clients, iid, script, comment="runctl stop", delivery_timeout=30)
            ssm.wait(clients, command_id, iid, timeout=45, poll=backend.aws_poll, what="stop")
        except AWSError:
            delivered = False
    if not delivered or states.get(facts["nodes"][0]["instance_id"]) != "running":
        cluster.teardown(clients, facts)


def ended(clients: Clients, target: dict) -> None:
    """The attempt ended (exit, or resuming elsewhere): nothing of its cluster may outlive
    it. Node 0's agent already terminated the nodes; this makes sure, and deletes the
    groups. A failure here must not break following the run: it says what to do."""
    try:
        cluster.teardown(clients, target["cluster"])
    except Exception as exc:  # noqa: BLE001
        print(
            f"[runctl] could not end every node of the run ({exc}); "
            "`runctl cleanup --yes` removes what is left",
            file=sys.stderr,
            flush=True,
        )


def is_alive(clients: Clients, target: dict) -> bool | None:
    """False when node 0 is gone (no one is left to report the run's end); another node
    lost ends the job on node 0, whose agent reports it. Else None: heartbeats decide."""
    states = cluster.node_states(clients, target["cluster"])
    if states.get(target["cluster"]["nodes"][0]["instance_id"]) != "running":
        return False
    return None


def resuming_to(run_dir: Path) -> int | None:
    """The attempt a `resuming` status asks for, when it is the run's last word (node 0
    writes nothing after it, so the file's tail is enough)."""
    path = Path(run_dir) / "events.jsonl"
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - TAIL_BYTES))
            lines = f.read().splitlines()[1 if size > TAIL_BYTES else 0 :]
    except FileNotFoundError:
        return None
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    for event in reversed([e for e in events if isinstance(e, dict)]):
        if event.get("type") == "exit":
            return None
        if event.get("type") == "status":
            if event.get("status") != "resuming":
                return None
            nxt = event.get("next_attempt")
            return int(nxt) if isinstance(nxt, int) else None
    return None


def claim(clients: Clients, target: dict, run_id: str, attempt: int) -> bool:
    """Take the right to launch `attempt` (S3 conditional put: the first writer wins, in
    any kernel, shell or machine). False when someone else holds it."""
    prefix = target.get("prefix") or "runctl/"
    prefix += "" if prefix.endswith("/") else "/"
    key = f"{prefix}runs/{run_id}/{RELAUNCHES}{int(attempt):06d}.json"
    body = json.dumps({"host": socket.gethostname(), "t": time.time()}).encode()
    try:
        clients.s3.put_object(
            Bucket=target["bucket"],
            Key=key,
            Body=body,
            IfNoneMatch="*",
            ServerSideEncryption="AES256",
        )
    except Exception as exc:  # noqa: BLE001
        if error_code(exc) in LOST_RACE:
            return False
        raise AWSError(
            f"could not claim attempt {attempt} of run {run_id} ({error_code(exc) or exc}); "
            f"`runctl resume {run_id}` tries again"
        ) from exc
    return True


def next_attempt(
    clients: Clients, run_dir: Path, target: dict, run_id: str, asked: set | None = None
) -> int | None:
    """The attempt this caller must launch whole now, or None (not a multi-node run at
    `resuming`, that attempt launched already, or another follower claimed it).
    `asked`: the (run, attempt) this caller tried already; one S3 claim each, not one a poll."""
    if not target.get("cluster") or not target.get("bucket"):
        return None
    nxt = resuming_to(run_dir)
    if nxt is None or nxt <= int(target.get("attempt") or 1):
        return None
    if asked is not None:
        if (run_id, nxt) in asked:
            return None
        asked.add((run_id, nxt))
    try:
        return nxt if claim(clients, target, run_id, nxt) else None
    except AWSError:
        if asked is not None:  # S3 did not answer: the next poll asks again
            asked.discard((run_id, nxt))
        raise
