"""`train --debug` next to the code: debugpy in the run's process (docs/debugging.md).

The runner calls `wait_for_debugger` before the user's code, in the rank asked for
(`--debug-rank`, 0 by default). debugpy listens on 127.0.0.1 only (never another
interface: on EC2 the notebook reaches it through an SSM port-forwarding session,
with no inbound rule), the run says where in a `debugger` event, and waits for the
client at most `--debug-timeout` seconds. Past that the run goes on without it;
debugpy keeps listening, so a client attaching later still stops at its breakpoints.

debugpy is imported here only when a run asked for it (stdlib otherwise, as every
module shipped to an instance).
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError

HOST = "127.0.0.1"  # never 0.0.0.0: the debugger can run any code in the process


class DebuggerUnavailable(RunctlError):
    """debugpy is missing or cannot listen: the run fails with this one line."""


def _debugpy() -> Any:
    # pydevd warns in every run's log that frozen stdlib modules may miss breakpoints;
    # breakpoints in the run's own code (code.py, the script) are not frozen
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        import debugpy  # only a --debug run needs it (the bootstrap installs it then)
    except ImportError:
        raise DebuggerUnavailable(
            "--debug needs debugpy where the run runs: pip install debugpy "
            "(or runctl-jupyter[debug]), then run it again"
        ) from None
    return debugpy


def _listen(debugpy: Any, port: int) -> int:
    try:
        return int(debugpy.listen((HOST, port))[1])
    except RuntimeError as exc:
        if "in use" in str(exc):
            raise DebuggerUnavailable(
                f"--debug-port {port} is in use on {socket.gethostname()}: choose another "
                "with --debug-port P, or --debug-port 0 for a free one"
            ) from None
        raise DebuggerUnavailable(f"debugpy cannot listen on {HOST}:{port}: {exc}") from None


def wait_for_debugger(runtime: Any, spec: dict, run_dir: Path) -> bool | None:
    """In a `--debug` run's chosen rank: listen, say where, wait for the client (bounded).
    True if a client attached, False after the timeout, None when this process does
    not wait (no --debug, or another rank)."""
    options = spec.get("options") or {}
    if not options.get("debugger") or runtime.rank != int(options.get("debug_rank") or 0):
        return None
    debugpy = _debugpy()
    port = _listen(debugpy, int(options.get("debug_port") or 0))
    timeout = float(options.get("debug_timeout") or 300)
    where = {"host": HOST, "port": port, "rank": runtime.rank, "pid": os.getpid()}
    where["run_dir"] = str(run_dir)  # where code.py is here: the attach's pathMappings
    _tell(runtime, "waiting", timeout=timeout, **where)
    print(
        f"[runctl] rank {runtime.rank} waits {timeout:g} s for a debugger on {HOST}:{port}",
        file=sys.stderr,
        flush=True,
    )
    _wait(debugpy, timeout)
    attached = bool(debugpy.is_client_connected())
    _tell(runtime, "attached" if attached else "timeout", **where)
    if not attached:
        print(
            f"[runctl] no debugger attached in {timeout:g} s: the run goes on "
            f"(debugpy still listens on {HOST}:{port})",
            file=sys.stderr,
            flush=True,
        )
    return attached


def _wait(debugpy: Any, timeout: float) -> None:
    """debugpy.wait_for_client() has no timeout; its documented `cancel()`, called
    from another thread, ends the wait. It returns once the client has sent
    `configurationDone`, so breakpoints set while attaching are in place."""

    def cancel() -> None:
        for _ in range(100):
            try:
                return debugpy.wait_for_client.cancel()
            except RuntimeError:  # the wait has not begun yet: again in a moment
                time.sleep(0.05)

    timer = threading.Timer(timeout, cancel)
    timer.daemon = True
    timer.start()
    try:
        debugpy.wait_for_client()
    finally:
        timer.cancel()


def _tell(runtime: Any, state: str, **fields: Any) -> None:
    """A `debugger` line in this process's runtime file: the agent sends it on as an
    event (docs/events.md), and the notebook shows the attach settings."""
    runtime._write({"t": time.time(), "type": "debugger", "state": state, **fields})
    runtime.flush()
