"""S3 answering 500s, then throttling (503 SlowDown), for a while during a run's sync:
a faulty proxy on 127.0.0.1 in front of a moto server, and the real agent. Every
event reaches S3 once, in order; no chunk is lost or duplicated."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from agent_helpers import events_of, make_run_dir, start_agent
from fault_helpers import TRAIN

BUCKET = "runctl-flaky"


class FaultyS3:
    """Forwards to moto; the first `fail_puts` uploads get a real-shaped S3 error:
    `InternalError` (500) for the first half, then `SlowDown` (503). (Counted, not
    timed: botocore's own retries back off between them.)"""

    def __init__(self, upstream_port: int, fail_puts: int = 4) -> None:
        self.fail_puts = fail_puts
        self.answered = {"InternalError": 0, "SlowDown": 0}
        self.passed_puts = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                failed = sum(proxy.answered.values())
                if self.command == "PUT" and failed < proxy.fail_puts:
                    half = proxy.fail_puts // 2
                    code = "InternalError" if proxy.answered["InternalError"] < half else "SlowDown"
                    proxy.answered[code] += 1
                    data = (
                        f"<Error><Code>{code}</Code><Message>injected</Message>"
                        f"<RequestId>x</RequestId></Error>"
                    ).encode()
                    self.send_response(500 if code == "InternalError" else 503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                if self.command == "PUT":
                    proxy.passed_puts += 1
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _any  # noqa: N815

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky_s3(monkeypatch):
    import boto3
    from aws.strict_aws import install
    from moto.server import ThreadedMotoServer

    install()  # the strict AWS layer, as for every test using moto
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    proxy = FaultyS3(port)
    for key, value in {
        "AWS_ENDPOINT_URL": proxy.url,  # the agent talks to S3 through the faulty proxy
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3", region_name="us-east-1", endpoint_url=f"http://127.0.0.1:{port}")
    client.create_bucket(Bucket=BUCKET)
    yield client, proxy
    proxy.close()
    server.stop()


def test_s3_500s_then_throttling_during_a_run_lose_no_event_chunk(tmp_path, imds, flaky_s3):
    s3, proxy = flaky_s3
    run_dir = make_run_dir(
        tmp_path,
        TRAIN,
        params={"seed": 3, "steps": 150, "delay": 0.02},
        run_id="flaky-s3",
        backend="aws",
        sync={"kind": "s3", "bucket": BUCKET, "region": "us-east-1", "interval": 0.3},
        options={"imds_endpoint": imds.url, "imds_interval": 0.5},
    )
    agent = start_agent(run_dir)
    assert agent.wait(timeout=120) == 0
    assert proxy.answered == {"InternalError": 2, "SlowDown": 2}  # the first uploads failed

    prefix = "runctl/runs/flaky-s3/events/"
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"])
    assert [k.rsplit("/", 1)[-1] for k in keys] == [
        f"{n:06d}.jsonl" for n in range(1, len(keys) + 1)
    ]
    uploaded = []
    for key in keys:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        uploaded += [json.loads(line) for line in body.splitlines() if line.strip()]
    local = events_of(run_dir)
    assert [e["seq"] for e in uploaded] == [e["seq"] for e in local]  # every event, once, in order
    assert uploaded[-1]["type"] == "exit" and uploaded[-1]["status"] == "succeeded"
    steps = [e["step"] for e in uploaded if e["type"] == "metric"]
    assert steps == list(range(150))
