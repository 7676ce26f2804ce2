"""Spot interruptions, seen by the agent: IMDSv2 polling and the next attempt.

On EC2 the agent polls the instance metadata service (IMDSv2: a token PUT, then
`spot/instance-action` and `events/recommendations/rebalance` with the token;
404 means no notice) every few seconds in a thread. Locally nothing is polled
unless the spec names an endpoint (`spec["imds_endpoint"]` or
`spec["options"]["imds_endpoint"]`: tests and local rehearsals play notices
from a small HTTP server).

On a notice (docs/reliability.md has the whole sequence):

    interrupt {kind, action_time}   the notice
    status interrupted {reason}     the training process gets SIGTERM: should_stop
                                    turns True, on_stop callbacks and the registered
                                    checkpoint are saved
    status resuming {next_attempt}  the process has stopped; events are flushed
                                    (and synced on EC2)
    status starting (attempt N+1)   locally: this agent execs a fresh agent for
                                    attempt N+1 of the same run, which resumes from
                                    the latest checkpoint; on EC2: the replacement
                                    instance's agent

At most `--max-interruptions` (default 3) resumes; the next interruption ends
the run `stopped` with reason `interrupted` (`runctl resume RUN` continues it).
A stop the user asked for wins over resuming. Handled notices are kept in
`interruptions.json`, so a notice still served by the same endpoint is not
acted on twice.

Stdlib only.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

EC2_IMDS = "http://169.254.169.254"
TOKEN_TTL = 21600
POLL_SECONDS = 2.0
DEFAULT_MAX_INTERRUPTIONS = 3
INTERRUPT_GRACE = 60.0  # the code gets this long to checkpoint (within the 2-minute notice)
HANDLED_FILE = "interruptions.json"
STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}
ACTION_PATH = "/latest/meta-data/spot/instance-action"
REBALANCE_PATH = "/latest/meta-data/events/recommendations/rebalance"
INSTANCE_ID_PATH = "/latest/meta-data/instance-id"


def endpoint_for(spec: dict) -> str | None:
    """Where to poll: the spec's endpoint, else the real IMDS on EC2, else nowhere."""
    options = spec.get("options") or {}
    endpoint = spec.get("imds_endpoint") or options.get("imds_endpoint")
    if endpoint:
        return str(endpoint).rstrip("/")
    if spec.get("backend") == "aws":  # RUNCTL_IMDS_URL: as agent/s3.py reads its instance id
        return os.environ.get("RUNCTL_IMDS_URL", EC2_IMDS).rstrip("/")
    return None


def read_handled(run_dir: Path) -> list[dict]:
    try:
        data = json.loads((run_dir / HANDLED_FILE).read_text())
    except (OSError, ValueError):
        return []
    return data if isinstance(data, list) else []


def _write_handled(run_dir: Path, handled: list[dict]) -> None:
    tmp = run_dir / f".{HANDLED_FILE}.tmp"
    tmp.write_text(json.dumps(handled))
    os.replace(tmp, run_dir / HANDLED_FILE)


class ImdsPoller:
    """Polls IMDSv2 in a daemon thread; `take()` hands over a new notice, if any."""

    def __init__(self, endpoint: str, interval: float = POLL_SECONDS, seen: set | None = None):
        self.endpoint = endpoint
        self.interval = interval
        self.seen = set(seen or ())
        self.error: str | None = None  # the last reason the endpoint could not be read
        self.instance: str | None = None  # this instance's id ("" when IMDS has none)
        self._token: str | None = None
        self._token_until = 0.0
        self._notices: queue.Queue[dict] = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="runctl-imds", daemon=True)

    def start(self) -> ImdsPoller:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def take(self) -> dict | None:
        try:
            return self._notices.get_nowait()
        except queue.Empty:
            return None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for notice in self.check():
                    if notice["key"] not in self.seen:
                        self.seen.add(notice["key"])
                        self._notices.put(notice)
                self.error = None
            except (OSError, ValueError) as exc:
                self.error = str(exc)
                self._token = None
            self._stop.wait(self.interval)

    def check(self) -> list[dict]:
        """The notices IMDS serves right now (one request each, with a cached token).

        A notice's key holds this instance's id (asked once; none off EC2): a
        replacement instance that is served the same text acts on it again."""
        found = []
        if self.instance is None:
            self.instance = self._get(INSTANCE_ID_PATH) or ""
        where = f"{self.instance}:" if self.instance else ""
        action = self._get(ACTION_PATH)
        if action is not None:
            data = _json_object(action)
            found.append(
                {
                    "kind": "spot",
                    "action": data.get("action"),
                    "action_time": data.get("time"),
                    "key": "spot:" + where + action,
                }
            )
        rebalance = self._get(REBALANCE_PATH)
        if rebalance is not None:
            data = _json_object(rebalance)
            found.append(
                {
                    "kind": "rebalance",
                    "action": None,
                    "action_time": data.get("noticeTime"),
                    "key": "rebalance:" + where + rebalance,
                }
            )
        return found

    def _token_header(self) -> dict:
        if self._token is None or time.monotonic() >= self._token_until:
            request = urllib.request.Request(
                self.endpoint + "/latest/api/token",
                method="PUT",
                headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL)},
            )
            with urllib.request.urlopen(request, timeout=1.0) as answer:
                self._token = answer.read().decode().strip()
            self._token_until = time.monotonic() + TOKEN_TTL - 60
        return {"X-aws-ec2-metadata-token": self._token}

    def _get(self, path: str, retry: bool = True) -> str | None:
        request = urllib.request.Request(self.endpoint + path, headers=self._token_header())
        try:
            with urllib.request.urlopen(request, timeout=1.0) as answer:
                return answer.read().decode()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None  # no notice
            if exc.code == 401 and retry:  # the token expired: a new one, once
                self._token = None
                return self._get(path, retry=False)
            raise


def _json_object(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class Interruptions:
    """The agent's hook: turns a notice into a graceful stop, then the next attempt."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        spec = agent.spec
        options = spec.get("options") or {}
        limit = options.get("max_interruptions")
        self.max_interruptions = DEFAULT_MAX_INTERRUPTIONS if limit is None else int(limit)
        self.grace = max(
            float(agent.grace), float(options.get("interrupt_grace") or INTERRUPT_GRACE)
        )
        self.notice: dict | None = None
        self.resume_wanted = False
        if STOP_SIGNALS & signal.pthread_sigmask(signal.SIG_BLOCK, []):
            # Exec'd by the previous attempt with Stop signals held (so one sent
            # meanwhile is not lost, nor kills us half started): take them now.
            for sig in STOP_SIGNALS:
                signal.signal(sig, agent._on_signal)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        self.poller: ImdsPoller | None = None
        endpoint = endpoint_for(spec)
        if endpoint:
            seen = {h.get("key") for h in read_handled(agent.run_dir)}
            interval = float(options.get("imds_interval") or POLL_SECONDS)
            self.poller = ImdsPoller(endpoint, interval, seen).start()
            if (spec.get("sync") or {}).get("cluster"):  # multi-node: any node's notice
                from .cluster import shared_notices

                self.poller = shared_notices(spec, agent.attempt, self.poller)

    def tick(self) -> None:
        """From the agent loop: act on a new notice (cheap when there is none)."""
        if self.poller is None or self.notice is not None:
            return
        notice = self.poller.take()
        if notice is None:
            return
        agent = self.agent
        self.notice = notice
        child = getattr(agent, "child", None)
        acted = agent.stop_reason is None and child is not None and child.poll() is None
        self._record(
            {
                "attempt": agent.attempt,
                "kind": notice["kind"],
                "key": notice["key"],
                "action_time": notice["action_time"],
                "t": time.time(),
                "acted": acted,
                "resumed": False,
            }
        )
        agent.events.write(
            "interrupt",
            kind=notice["kind"],
            action=notice["action"],
            action_time=notice["action_time"],
        )
        if not acted:
            return  # already stopping or finished: nothing to resume
        agent.events.write("status", status="interrupted", reason=notice["kind"])
        agent.events.flush()
        self.resume_wanted = True
        agent.request_stop("interrupted")
        agent.kill_at = time.monotonic() + self.grace

    def notice_entry(self) -> dict:
        key = self.notice["key"] if self.notice else None
        found = [h for h in read_handled(self.agent.run_dir) if h.get("key") == key]
        return found[-1] if found else {"attempt": self.agent.attempt, "key": key}

    def on_exit(self, returncode: int) -> int | None:
        """From `Agent._exit`: start the next attempt (an exit code), or None to let
        the agent record the attempt's end as usual."""
        agent = self.agent
        if not self.resume_wanted or agent.stop_reason != "interrupted":
            return None
        if returncode not in (0, 143, -signal.SIGTERM, -signal.SIGKILL):
            agent.stop_reason = None  # it failed on its own while stopping: say so
            return None
        user = self._user_stop()
        if user is not None:
            agent.stop_reason = user
            return None
        count = 1 + self._resumed_in_a_row()
        if count > self.max_interruptions:
            agent.events.write(
                "warning",
                message=(
                    f"interrupted {count} times (--max-interruptions {self.max_interruptions}): "
                    f"not resuming; `runctl resume {agent.spec['run_id']}` continues from "
                    "the latest checkpoint"
                ),
                code="max-interruptions",
            )
            return None
        return self._next_attempt()

    def _record(self, entry: dict) -> None:
        handled = [h for h in read_handled(self.agent.run_dir) if h.get("key") != entry["key"]]
        _write_handled(self.agent.run_dir, [*handled, entry])

    def _resumed_in_a_row(self) -> int:
        """Automatic resumes just before this attempt (a manual `resume` starts over)."""
        resumed = {h.get("attempt") for h in read_handled(self.agent.run_dir) if h.get("resumed")}
        count, attempt = 0, self.agent.attempt - 1
        while attempt in resumed:
            count, attempt = count + 1, attempt - 1
        return count

    def _user_stop(self) -> str | None:
        """The reason of a stop asked for while we were stopping, if any."""
        try:
            control = json.loads((self.agent.run_dir / "control.json").read_text())
        except (OSError, ValueError):
            control = {}
        if control.get("stop"):
            return str(control.get("reason") or "user")
        # Locally a bare SIGTERM to the agent is someone stopping it; on EC2 it is the
        # instance shutting down, which the next attempt elsewhere survives.
        return "user" if self.agent.signaled and self.agent.sync is None else None

    def _next_attempt(self) -> int:
        agent = self.agent
        if self.poller is not None:
            self.poller.close()
        nxt = agent.attempt + 1
        assert self.notice is not None, "a spot resume follows a notice"
        self._record({**self.notice_entry(), "resumed": True})
        cost = getattr(agent, "cost", None)
        if cost is not None:
            cost.final()  # the attempt's last cost event, as before an `exit`
        agent.events.write(
            "status", status="resuming", reason=self.notice["kind"], next_attempt=nxt
        )
        agent.events.close()
        if getattr(agent, "stdout_log", None):
            agent.stdout_log.close()
        if agent.sync is not None:
            # On EC2 this instance is going away: everything goes to S3 now, and the
            # replacement instance's agent starts attempt N+1 (docs/reliability.md).
            try:
                agent.sync.final()
            except Exception as exc:  # noqa: BLE001 - nothing else can be done on the way out
                sys.stderr.write(f"runctl: final sync after an interruption failed: {exc}\n")
            return 0
        package_parent = str(Path(__file__).resolve().parents[2])  # the folder holding the package
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        argv = [
            sys.executable,
            "-m",
            "runctl_jupyter.agent",
            str(agent.run_dir),
            "--attempt",
            str(nxt),
        ]
        sys.stdout.flush()
        sys.stderr.flush()
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)  # held until the new agent is up
        os.execve(sys.executable, argv, env)  # same pid: readers never see the agent gone
        return 0  # not reached
