"""Fault injection helpers: a real IMDSv2 server on 127.0.0.1 and shared run code."""

from __future__ import annotations

import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACTION = "/latest/meta-data/spot/instance-action"
REBALANCE = "/latest/meta-data/events/recommendations/rebalance"

# A deterministic "training": SGD on y = 3x with a seeded RNG whose state is in the
# checkpoint, so a resumed run computes exactly what an uninterrupted one does.
TRAIN = """
import random, time
saved = runctl.load_checkpoint()
if saved:
    start, w, rng = saved["step"] + 1, saved["w"], random.Random()
    rng.setstate(saved["rng"])
    print(f"resumed from step {saved['step']}", flush=True)
else:
    start, w, rng = 0, 0.0, random.Random(seed)

@runctl.register_checkpoint
def state():
    return {"step": step, "w": w, "rng": rng.getstate()}

for step in range(start, steps):
    x = rng.random()
    w += 0.1 * (3.0 * x - w * x) * x
    runctl.log(step=step, total=steps, w=w, loss=(3.0 - w) ** 2)
    time.sleep(delay)
    if runctl.should_stop:
        break
"""


class ImdsServer:
    """Speaks the IMDSv2 protocol: PUT /latest/api/token with the TTL header gives a
    token; GETs need it (401 without); a notice path answers 404 until one is set."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.notices: dict[str, str] = {}
        self.token_puts = 0
        self.authorized_gets = 0
        self.refused = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, code: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
                if self.path != "/latest/api/token" or not ttl or not ttl.isdigit():
                    server.refused += 1
                    return self._answer(400)
                token = secrets.token_urlsafe(16)
                server.tokens.add(token)
                server.token_puts += 1
                self._answer(200, token)

            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("X-aws-ec2-metadata-token") not in server.tokens:
                    server.refused += 1
                    return self._answer(401)
                server.authorized_gets += 1
                body = server.notices.get(self.path)
                self._answer(200, body) if body is not None else self._answer(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def spot_notice(self, action: str = "terminate", time: str = "2026-11-29T02:00:00Z") -> None:
        self.notices[ACTION] = json.dumps({"action": action, "time": time})

    def rebalance_notice(self, time: str = "2026-11-29T02:00:00Z") -> None:
        self.notices[REBALANCE] = json.dumps({"noticeTime": time})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def expected_metrics(seed: int, steps: int) -> dict[str, list[tuple[int, float]]]:
    """What TRAIN logs when nothing goes wrong (the same arithmetic, in this process)."""
    import random

    rng, w = random.Random(seed), 0.0
    out: dict[str, list[tuple[int, float]]] = {"w": [], "loss": []}
    for step in range(steps):
        x = rng.random()
        w += 0.1 * (3.0 * x - w * x) * x
        out["w"].append((step, w))
        out["loss"].append((step, (3.0 - w) ** 2))
    return out


def wait_for(predicate, timeout: float = 30.0, what: str = "condition"):  # noqa: ANN001, ANN201
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.03)
    raise AssertionError(f"{what}: not met within {timeout} s")


def wait_ended(session, run_id: str, timeout: float = 40.0) -> dict:  # noqa: ANN001
    def ended() -> dict | None:
        session.store.refresh(run_id)
        row = session.store.get(run_id)
        return row if row["status"] in ("succeeded", "failed", "stopped", "lost") else None

    return wait_for(ended, timeout, f"run {run_id} ends")


def wait_step(session, run_id: str, step: int, timeout: float = 20.0) -> None:  # noqa: ANN001
    def reached() -> bool:
        session.store.refresh(run_id)
        last = session.store.get(run_id).get("last_step")
        return last is not None and last >= step

    wait_for(reached, timeout, f"run {run_id} reaches step {step}")
