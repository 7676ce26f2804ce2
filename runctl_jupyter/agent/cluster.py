"""A multi-node run on its nodes: spot notices shared through S3, and the run's end
(boto3; imported by agent/spot.py and agent/service.py, only for multi-node runs).

A spot notice (or rebalance recommendation) on any node interrupts the whole run:

    node k > 0   does not stop its own ranks: it puts the notice in S3
                 (`runs/<id>/notices/node-<k>-attempt-<n>.json`) for node 0
    node 0       polls those next to its own IMDS; either notice goes through the
                 usual graceful stop (agent/spot.py): status `interrupted`, the ranks
                 stopped and the checkpoint saved, `resuming`; the other nodes'
                 ranks end with the job

so the run's stream says `interrupted` -> `resuming` whichever node was reclaimed,
and its next attempt launches the whole cluster again (backends/aws_cluster.py).

When node 0's agent ends (the run succeeded, failed or was stopped), it terminates
every node of the run and cancels their spot requests: one rank leaving ends the
job for all, and no node keeps billing. Another node's agent ends only its own
instance (node 0 may still be syncing). The placement group and the security
group cannot be deleted from inside them: the notebook side deletes them when it
sees the run end (backends/aws_cluster.py), and `runctl cleanup` removes any a
closed kernel left behind.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from typing import Any

from ..distributed import node_rank
from .clients import make_ec2_client, make_s3_client

NOTICES = "notices/"
PEER_POLL_SECONDS = 2.0


def nodes_to_end(cluster: dict, rank: int) -> list[dict]:
    """Node 0 ends every node; another node only itself."""
    nodes = list(cluster.get("nodes") or [])
    if rank == 0:
        return nodes
    return nodes[rank : rank + 1]


def end_of_run(cfg: dict, ec2: Any = None) -> list[str]:
    """Terminate what this node's end should end; returns the instance ids."""
    nodes = nodes_to_end(cfg.get("cluster") or {}, node_rank())
    ids = [n["instance_id"] for n in nodes if n.get("instance_id")]
    if not ids:
        return []
    ec2 = ec2 or make_ec2_client(cfg.get("region"))
    requests = [n["spot_request_id"] for n in nodes if n.get("spot_request_id")]
    if requests:
        try:
            ec2.cancel_spot_instance_requests(SpotInstanceRequestIds=requests)
        except Exception as exc:  # noqa: BLE001 - terminating matters more
            sys.stderr.write(f"runctl: cancel spot requests: {exc}\n")
    for attempt in range(5):
        try:
            ec2.terminate_instances(InstanceIds=ids)
            return ids
        except Exception as exc:  # noqa: BLE001
            sys.stderr.write(f"runctl: terminate {', '.join(ids)}: {exc}\n")
            time.sleep(2**attempt)
    return []


# -- spot notices of any node -------------------------------------------------------------
def _notices_prefix(cfg: dict, run_id: str) -> str:
    prefix = cfg.get("prefix", "runctl/")
    prefix += "" if not prefix or prefix.endswith("/") else "/"
    return f"{prefix}runs/{run_id}/{NOTICES}"


class SharedNotices:
    """The spot poller of a node of a multi-node run (wraps the IMDS poller).

    On node 0, `take()` hands over its own notices and those other nodes put in S3;
    on another node, it puts its own notices in S3 for node 0 and hands over none."""

    def __init__(self, own: Any, cfg: dict, run_id: str, attempt: int, client: Any = None):
        self.own = own
        self.cfg = cfg
        self.attempt = attempt
        self.rank = node_rank()
        self.prefix = _notices_prefix(cfg, run_id)
        self.s3 = client or make_s3_client(cfg.get("region"))
        self.seen: set[str] = set()
        self._notices: queue.Queue[dict] = queue.Queue()
        self._stop = threading.Event()
        if self.rank == 0:
            threading.Thread(target=self._loop, name="runctl-peer-notices", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        if self.own is not None:
            self.own.close()

    def take(self) -> dict | None:
        notice = self.own.take() if self.own is not None else None
        if notice is not None and self.rank > 0:
            self.publish(notice)
            return None
        if notice is not None:
            return notice
        try:
            return self._notices.get_nowait()
        except queue.Empty:
            return None

    def publish(self, notice: dict) -> None:
        body = {**notice, "node": self.rank, "attempt": self.attempt}
        key = f"{self.prefix}node-{self.rank}-attempt-{self.attempt}.json"
        for attempt in range(4):  # the notice gives 2 minutes: a few quick retries
            try:
                self.s3.put_object(Bucket=self.cfg["bucket"], Key=key, Body=json.dumps(body))
                return
            except Exception as exc:  # noqa: BLE001
                sys.stderr.write(f"runctl: could not share the spot notice: {exc}\n")
                time.sleep(0.5 * 2**attempt)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._check()
            except Exception as exc:  # noqa: BLE001 - S3 hiccup: try again next time
                sys.stderr.write(f"runctl: reading other nodes' notices: {exc}\n")
            self._stop.wait(PEER_POLL_SECONDS)

    def _check(self) -> None:
        answer = self.s3.list_objects_v2(Bucket=self.cfg["bucket"], Prefix=self.prefix)
        for obj in answer.get("Contents", []):
            key = obj["Key"]
            if key in self.seen or not key.endswith(f"-attempt-{self.attempt}.json"):
                continue
            self.seen.add(key)
            data = json.loads(self.s3.get_object(Bucket=self.cfg["bucket"], Key=key)["Body"].read())
            self._notices.put(
                {
                    "kind": data.get("kind", "spot"),
                    "action": data.get("action"),
                    "action_time": data.get("action_time"),
                    "key": f"node{data.get('node')}:{data.get('key')}",
                    "node": data.get("node"),
                }
            )


def shared_notices(spec: dict, attempt: int, own: Any) -> Any:
    """The poller agent/spot.py uses: `own` (IMDS) for a one-node run, else SharedNotices."""
    cfg = spec.get("sync") or {}
    if not cfg.get("cluster") or cfg.get("kind") != "s3" or own is None:
        return own
    return SharedNotices(own, cfg, spec["run_id"], attempt)
