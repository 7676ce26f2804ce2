"""The end of a multi-node run, on its nodes (boto3; imported by agent_s3's service).

When node 0's agent ends (the run succeeded, failed or was stopped), it terminates
every node of the run and cancels their spot requests: one rank leaving ends the
job for all, and no node keeps billing. Another node's agent ends only its own
instance (node 0 may still be syncing). The placement group and the security
group cannot be deleted from inside them: the notebook side deletes them when it
sees the run end (backends/aws_cluster.py), and `runctl cleanup` removes any a
closed kernel left behind.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from .distributed import node_rank


def _ec2(region: str | None) -> Any:
    import boto3
    from botocore.config import Config

    kwargs: dict[str, Any] = {
        "region_name": region,
        "config": Config(retries={"mode": "adaptive", "max_attempts": 8}),
    }
    endpoint = os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        kwargs["endpoint_url"] = endpoint
    return boto3.session.Session().client("ec2", **kwargs)


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
    ec2 = ec2 or _ec2(cfg.get("region"))
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
