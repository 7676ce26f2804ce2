"""A multi-node spot run interrupted on one node resumes as a whole: the notebook side
that follows it launches attempt N+1 (M new nodes, new groups, same run id) once.

The moto server plays EC2/S3/SSM and the `instance` fixture runs each node's exact SSM
bootstrap under `env -i` (the real agent services, a real torchrun with gloo on CPU).
Two things are played for the test machine: each node's venv is this interpreter (it
has torch; the bare one has not), and the rendezvous endpoint of an attempt is a free
port on 127.0.0.1 (the nodes' moto private addresses are not on this machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

import pytest
from traitlets.config import Config

from runctl_jupyter import distributed
from runctl_jupyter.aws import tags
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.events import read_events
from runctl_jupyter.session import Session

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None, reason="needs PyTorch: pip install -e '.[dist]'"
)

# Rank 0 holds the checkpoint (node 0 syncs it); every rank starts where rank 0 says.
CELL = """
import time
import torch
import torch.distributed as dist

dist.init_process_group("gloo")
state = runctl.load_checkpoint() if runctl.rank == 0 else None
start = torch.tensor([state["step"] + 1 if state else 0])
dist.broadcast(start, 0)
for step in range(int(start.item()), steps):
    total = torch.ones(1)
    dist.all_reduce(total)
    runctl.log(step=step, loss=1.0 / (step + 1), nodes=total.item())
    runctl.save_checkpoint({"step": step})
    if runctl.should_stop:
        break
    time.sleep(0.1)
dist.destroy_process_group()
"""
OPTIONS = {
    "instance_type": "c5.large",
    "nodes": 2,
    "nproc_per_node": 1,
    "imds_interval": 0.2,
    "pip": ["none"],
}


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.refresh_interval = 0.2
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    cfg.AWSBackend.poll_interval = 0.3
    cfg.AWSBackend.max_poll_interval = 0.5
    cfg.AWSBackend.bootstrap_timeout = 60
    cfg.AWSBackend.ssm_timeout = 20
    return Session(config=Runctl(config=cfg))


@pytest.fixture
def nodes(instance, tmp_path: Path):
    """The instance fixture, with this interpreter as each node's venv and each
    attempt's rendezvous on a free local port."""
    fake_venv = tmp_path / "node-venv"
    (fake_venv / "bin").mkdir(parents=True)
    (fake_venv / "bin" / "python").symlink_to(os.path.realpath(sys.executable))
    ports: dict[str, int] = {}

    def home(instance_id: str) -> Path:
        with instance._cache_lock:
            if instance_id not in instance.homes:
                disk = instance.sandbox / f"disk-{instance_id}"
                (disk / "runctl").mkdir(parents=True)
                (disk / "runctl" / "venv").symlink_to(fake_venv)  # a link: never cached
                instance.homes[instance_id] = disk
            return instance.homes[instance_id]

    execute = instance._execute

    def local_rendezvous(script: str, home_dir: Path, instance_id: str, kind: str):  # noqa: ANN202
        attempt = re.search(r"^ATTEMPT=(\S+)$", script, re.M)
        if attempt and "RUNCTL_RDZV_ENDPOINT=" in script:
            port = ports.setdefault(attempt.group(1), distributed.free_port())
            script = re.sub(
                r"^export RUNCTL_RDZV_ENDPOINT=.*$",
                f"export RUNCTL_RDZV_ENDPOINT=127.0.0.1:{port}",
                script,
                flags=re.M,
            )
        return execute(script, home_dir, instance_id, kind)

    def run_dir_of(instance_id: str, run_id: str) -> Path:
        return home(instance_id) / "runctl" / "runs" / run_id

    instance.home = home
    instance.run_dir_of = run_dir_of
    instance._execute = local_rendezvous
    return instance


def _wait(predicate, timeout: float, what: str, player=None):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    detail = ""
    if player is not None:
        detail = "\n".join(
            f"--- {r['kind']} {r['instance_id']} rc={r['returncode']}\n{r['stderr'][-1500:]}"
            for r in player.runs
        )
        for home in player.homes.values():
            for log in (home / "runctl" / "runs").glob("*/agent.log"):
                detail += f"\n--- {log}\n{log.read_text()[-2000:]}"
    raise AssertionError(f"{what}: not within {timeout} s\n{detail}")


def _run_instances(aws, run_id: str) -> dict[str, str]:
    res = aws.ec2.describe_instances(Filters=[{"Name": f"tag:{tags.RUN_ID}", "Values": [run_id]}])[
        "Reservations"
    ]
    return {i["InstanceId"]: i["State"]["Name"] for r in res for i in r["Instances"]}


def _node_events(player, run_id: str, instance_id: str) -> list[dict]:
    path = player.home(instance_id) / "runctl" / "runs" / run_id / "events.jsonl"
    return read_events(path)[0] if path.exists() else []


def _notice_on_node_1(aws, player, run_id: str, target: dict, step: int = 3) -> None:
    """Serve a spot notice to node 1 once node 0 logged `step` (both nodes train)."""
    node0, node1 = (n["instance_id"] for n in target["cluster"]["nodes"])
    _wait(
        lambda: any(
            e["type"] == "metric" and e["step"] >= step for e in _node_events(player, run_id, node0)
        ),
        90,
        "both nodes train",
        player,
    )
    player.imds_for(node1).spot_notice()


def _groups_left(aws, run_id: str) -> tuple[list, list]:
    pgs = [
        g
        for g in aws.ec2.describe_placement_groups()["PlacementGroups"]
        if run_id in g["GroupName"]
    ]
    sgs = aws.ec2.describe_security_groups(
        Filters=[{"Name": f"tag:{tags.RUN_ID}", "Values": [run_id]}]
    )["SecurityGroups"]
    return pgs, sgs


def test_an_interrupted_two_node_run_resumes_whole_once_with_two_followers(
    aws, nodes, tmp_path: Path
):
    setup(aws)
    first = _session(tmp_path)
    run = first.train(code=CELL, params={"steps": 25}, backend="aws", options=OPTIONS, detach=True)
    run_dir = first.store.run_dir(run.id)
    target = json.loads((run_dir / "aws.json").read_text())
    attempt1 = {n["instance_id"] for n in target["cluster"]["nodes"]}

    # two followers of the same run (two kernels): both see `resuming`, one launches
    second = _session(tmp_path)
    outcomes: dict[int, object] = {}

    def follow(i: int, session: Session) -> None:
        try:
            outcomes[i] = session.attach(run.id).row["status"]
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes[i] = exc

    threads = [
        threading.Thread(target=follow, args=(i, s), daemon=True)
        for i, s in enumerate((first, second))
    ]
    for t in threads:
        t.start()
    _notice_on_node_1(aws, nodes, run.id, target)
    for t in threads:
        t.join(timeout=150)
    assert outcomes == {0: "succeeded", 1: "succeeded"}, (outcomes, _node_logs(nodes))

    # attempt 2 ran on two new nodes (one relaunch, not two), same run id; none left
    instances = _run_instances(aws, run.id)
    assert len(instances) == 4 and attempt1 < set(instances), instances
    _wait(
        lambda: set(_run_instances(aws, run.id).values()) == {"terminated"},
        30,
        "every node of both attempts terminated",
    )
    _wait(lambda: _groups_left(aws, run.id) == ([], []), 30, "both attempts' groups deleted")

    events = read_events(run_dir / "events.jsonl")[0]
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})  # one copy each
    statuses = [(e.get("status"), e.get("attempt")) for e in events if e["type"] == "status"]
    assert ("resuming", 1) in statuses and statuses[-1][1] == 2, statuses
    exit_event = next(e for e in events if e["type"] == "exit")
    assert exit_event["status"] == "succeeded"
    steps = [e["step"] for e in events if e["type"] == "metric" and e.get("attempt") == 2]
    assert steps and steps[0] > 0 and steps[-1] == 24  # attempt 2 went on from the checkpoint
    assert all(e["values"]["nodes"] == 2 for e in events if e["type"] == "metric")
    assert first.store.get(run.id)["attempt"] == 2
    # attempt 2's node 0 counts on from attempt 1's resume (--max-interruptions in a row)
    node0 = json.loads((run_dir / "aws.json").read_text())["cluster"]["nodes"][0]["instance_id"]
    assert node0 not in attempt1
    handled = json.loads((nodes.run_dir_of(node0, run.id) / "interruptions.json").read_text())
    assert [(h["attempt"], h["resumed"]) for h in handled] == [(1, True)], handled

    # a later `resume` of the finished run does not relaunch the cluster again
    with pytest.raises(RunctlError):
        second.resume(run.id)  # succeeded: refused, nothing launched
    assert len(_run_instances(aws, run.id)) == 4


def test_max_interruptions_bounds_the_whole_run_resumes(aws, nodes, tmp_path: Path):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code=CELL,
        params={"steps": 400},
        backend="aws",
        options={**OPTIONS, "max_interruptions": 0},
        detach=True,
    )
    run_dir = session.store.run_dir(run.id)
    target = json.loads((run_dir / "aws.json").read_text())
    _notice_on_node_1(aws, nodes, run.id, target)
    try:
        row = session.attach(run.id).row
    except RunctlError:
        row = session.store.get(run.id)
    assert row["status"] not in ("resuming", "succeeded") and row["attempt"] == 1, row
    events = read_events(run_dir / "events.jsonl")[0]
    assert any(e.get("code") == "max-interruptions" for e in events if e["type"] == "warning")
    assert not any(e.get("status") == "resuming" for e in events if e["type"] == "status")
    # no second cluster, and nothing of the first left
    assert len(_run_instances(aws, run.id)) == 2
    _wait(
        lambda: set(_run_instances(aws, run.id).values()) == {"terminated"},
        30,
        "both nodes terminated",
    )
    _wait(lambda: _groups_left(aws, run.id) == ([], []), 30, "the groups deleted")


def _node_logs(player) -> str:
    text = ""
    for home in player.homes.values():
        for log in (home / "runctl" / "runs").glob("*/agent.log"):
            text += f"\n--- {log}\n{log.read_text()[-2000:]}"
    return text


def test_the_relaunch_claim_goes_to_one_caller_per_attempt_and_none_after_the_end(
    aws, tmp_path: Path
):
    """Two laptops (two homes, one bucket): the S3 claim alone decides who launches."""
    from runctl_jupyter.backends import aws_cluster

    aws.s3.create_bucket(Bucket="runctl-claims")
    target = {
        "bucket": "runctl-claims",
        "prefix": "runctl/",
        "attempt": 1,
        "cluster": {"nodes": []},
    }
    mirrors = []
    for laptop in ("a", "b"):
        mirror = tmp_path / laptop / "run1"
        mirror.mkdir(parents=True)
        (mirror / "events.jsonl").write_text(
            '{"seq":1,"t":1,"type":"status","status":"running","attempt":1}\n'
            '{"seq":2,"t":2,"type":"status","status":"resuming","attempt":1,"next_attempt":2}\n'
        )
        mirrors.append(mirror)
    wins = [aws_cluster.next_attempt(aws, m, target, "run1") for m in mirrors]
    assert wins == [2, None]
    # the launch of attempt 2 moved the target on: no one claims it again
    assert aws_cluster.next_attempt(aws, mirrors[1], {**target, "attempt": 2}, "run1") is None
    # a one-node run, or a run whose last word is its exit, is never relaunched from here
    assert aws_cluster.next_attempt(aws, mirrors[1], {**target, "cluster": None}, "run1") is None
    with open(mirrors[1] / "events.jsonl", "a") as f:
        f.write('{"seq":3,"t":3,"type":"exit","status":"stopped","attempt":1}\n')
    assert aws_cluster.resuming_to(mirrors[1]) is None
    keys = [o["Key"] for o in aws.s3.list_objects_v2(Bucket="runctl-claims")["Contents"]]
    assert keys == ["runctl/runs/run1/relaunch/000002.json"]


def test_resume_of_a_resuming_run_another_follower_relaunches_says_so(aws, tmp_path: Path):
    from runctl_jupyter.backends import aws_cluster
    from runctl_jupyter.store.folders import create_run

    aws.s3.create_bucket(Bucket="runctl-claims2")
    session = _session(tmp_path)
    spec = create_run(
        session.store.runs_dir,
        kind="cell",
        code="print(1)\n",
        params={},
        experiment="e",
        name="n",
        project="p",
        owner="ann",
        backend="aws",
        workdir=str(tmp_path),
        options={"nodes": 2, "pip": ["none"]},
        environment={"packages": {}},
    )
    session.store.add_run(spec)
    run_dir = session.store.run_dir(spec["run_id"])
    target = {"bucket": "runctl-claims2", "prefix": "runctl/", "attempt": 1, "cluster": {}}
    target["cluster"] = {"nodes": [{"instance_id": "i-0123456789abcdef0"}]}
    (run_dir / "aws.json").write_text(json.dumps(target))
    (run_dir / "events.jsonl").write_text(
        '{"seq":1,"t":1,"type":"status","status":"running","attempt":1}\n'
        '{"seq":2,"t":2,"type":"status","status":"resuming","attempt":1,"next_attempt":2}\n'
    )
    assert aws_cluster.claim(aws, target, spec["run_id"], 2)  # another laptop's
    session.backend("aws")._clients = aws
    with pytest.raises(RunctlError, match="is resuming: its next attempt starts by itself"):
        session.resume(spec["run_id"])
    assert session.store.get(spec["run_id"])["status"] == "resuming"
