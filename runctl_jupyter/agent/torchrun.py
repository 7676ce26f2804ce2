"""A distributed run's ranks under torchrun, next to the code.

We do not write a launcher: PyTorch's `torchrun` (torch.distributed.run) is the
engine. This module builds the torchrun command the agent starts instead of the
plain runner, keeps rank 0's printed metrics, and turns torchrun's failure report
into the run's error. Run as `python -m runctl_jupyter.agent.torchrun RUN_DIR` it
is one rank's process (what torchrun starts): it dies with torchrun, then runs the
runner. The plan (how many processes) is runctl_jupyter/distributed.py.
"""

from __future__ import annotations

import atexit
import ctypes
import faulthandler
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NoReturn

from ..errors import RunctlError

LINE_PREFIX = "[rank${rank}]: "  # torchrun's TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE
RANK_LINE = re.compile(r"^\[rank(\d+)\]: ?")
RANKS_FOLDER = "ranks"
PR_SET_PDEATHSIG = 1


class StartError(RunctlError, OSError):
    """The agent cannot start the ranks (an OSError, so the run fails cleanly)."""


_REPORT = "Root Cause (first observed failure):"
_FAILURE = re.compile(r"rank\s*:\s*(\d+)[^\n]*\n\s*exitcode\s*:\s*(-?\d+)")


def launch_command(
    plan: dict,
    python: str,
    run_dir: Path,
    attempt: int,
    run_id: str,
    environ: Mapping[str, str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The torchrun command the agent starts instead of the plain runner, and the
    environment it adds. One node: a c10d rendezvous on a free port of 127.0.0.1
    (port 0: torchrun's store picks it).
    Several nodes: every node's agent gets `RUNCTL_RDZV_ENDPOINT` (node 0's
    address:port) and `RUNCTL_NODE_RANK` in its environment. Node 0 hosts the
    rendezvous, and ranks follow node order (node K holds ranks K*N .. K*N+N-1),
    so rank 0, whose metrics and checkpoints are the run's, is always on node 0:
    torchrun's static rendezvous. (Its c10d rendezvous ranks nodes by host name
    and pid, which would put rank 0 on any node.)"""
    env = os.environ if environ is None else environ
    nodes = int(plan.get("nodes") or 1)
    if nodes > 1:
        endpoint = env.get("RUNCTL_RDZV_ENDPOINT") or plan.get("rdzv_endpoint")
        node_rank = env.get("RUNCTL_NODE_RANK", plan.get("node_rank"))
        if not endpoint or node_rank is None:
            raise StartError(
                f"a {nodes}-node run needs RUNCTL_RDZV_ENDPOINT (node 0's host:port) and "
                "RUNCTL_NODE_RANK on every node: start it with --backend aws"
            )
        host, _, port = str(endpoint).rpartition(":")
        node_rank = int(node_rank)
        rendezvous = ["--node-rank", str(node_rank), "--master-addr", host, "--master-port", port]
    else:
        node_rank = 0
        rendezvous = [
            "--rdzv-backend",
            "c10d",
            "--rdzv-endpoint",
            "127.0.0.1:0",  # torchrun's store binds a free port itself: no race with other runs
            "--rdzv-id",
            f"{run_id}-{attempt}",
            "--rdzv-conf",
            "is_host=true",
        ]
    argv = [
        python,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        str(nodes),
        "--nproc-per-node",
        str(int(plan["nproc_per_node"])),
        *rendezvous,
        "--max-restarts",
        "0",
        "--tee",
        "3",  # every rank's stdout and stderr: to a file of its own, and to us
        "--log-dir",
        str(Path(run_dir) / RANKS_FOLDER / f"attempt-{attempt}-node-{node_rank}"),
        "-m",
        "runctl_jupyter.agent.torchrun",
        str(run_dir),
    ]
    extra = {"TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE": LINE_PREFIX}
    if int(plan["nproc_per_node"]) > 1 and "OMP_NUM_THREADS" not in env:
        extra["OMP_NUM_THREADS"] = "1"  # what torchrun sets then, without its banner in the log
    return argv, extra


class MainRankLines:
    """`--metrics` parsing for a distributed run: only rank 0's printed lines count
    (every rank prints the same `loss=...`), read without their `[rank0]: ` prefix."""

    def __init__(self, parser: Any) -> None:
        self.parser = parser
        self.names = parser.names

    def parse(self, line: str) -> dict | None:
        m = RANK_LINE.match(line)
        if m is None or m.group(1) != "0":
            return None
        return self.parser.parse(line[m.end() :])


def _log_tail(run_dir: Path, size: int = 256 << 10) -> str:
    try:
        with open(Path(run_dir) / "stdout.log", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def stopped_code(returncode: int, run_dir: Path) -> int:
    """torchrun exits 1 when the SIGTERM of a stop (or a spot notice) ends it: that is
    -SIGTERM, as for a plain runner; any other exit stays what it was."""
    if returncode != 1:
        return returncode
    tail = _log_tail(run_dir, 16 << 10)
    if f"got signal: {int(signal.SIGTERM)}" in tail and "SignalException" in tail:
        return -signal.SIGTERM
    return returncode


def root_cause(text: str) -> tuple[int, int] | None:
    """(rank, exit code) of the rank that failed first, from torchrun's last failure
    report. A rank killed by a signal (other than the SIGTERM torchrun sends the
    rest) wins over ranks that raised: when one rank dies, its peers fail too
    ("Connection closed by peer"), sometimes in the same instant torchrun notices."""
    start = text.rfind("ChildFailedError")
    if start < 0:
        return None
    report = text[start:]
    failures = [(int(r), int(c)) for r, c in _FAILURE.findall(report)]
    if not failures:
        return None
    # SIGTERM is torchrun's own "stop" to the ranks that were still running
    killed = [f for f in failures if f[1] < 0 and f[1] != -signal.SIGTERM]
    if killed:
        return killed[0]
    cause = report.find(_REPORT)
    first = _FAILURE.search(report, cause) if cause >= 0 else None
    return (int(first.group(1)), int(first.group(2))) if first else failures[0]


_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing")


def _peer_went_away(error: dict) -> bool:
    """A rank that failed only because another rank died (gloo's "Connection closed by
    peer"): not the cause, whichever rank torchrun happened to see exit first."""
    return any(text in (error.get("message") or "") for text in _PEER_GONE)


def _first_own_failure(files: list[Path], default: tuple[int, dict]) -> tuple[int, dict]:
    """The first rank (by time) whose own error is not its peer going away."""
    for path in files:
        error = json.loads(path.read_text())
        if not _peer_went_away(error):
            return int(path.stem.rsplit("rank", 1)[1]), error
    return default


def write_error(run_dir: Path, attempt: int) -> None:
    """Leave the failed rank's error as the attempt's `error-<attempt>.json`: that
    rank's own exception when it raised one, `rank N was killed by SIGKILL` when a
    signal ended it (torchrun's report, read from the end of stdout.log)."""
    run_dir = Path(run_dir)
    target = run_dir / f"error-{attempt}.json"
    if target.exists():
        return
    cause = root_cause(_log_tail(run_dir))
    files = sorted(run_dir.glob(f"error-{attempt}-rank*.json"), key=lambda p: p.stat().st_mtime)
    error = None
    if cause is not None:
        rank, code = cause
        own = run_dir / f"error-{attempt}-rank{rank}.json"
        if own.exists():
            error = json.loads(own.read_text())
            if _peer_went_away(error):  # torchrun saw the peer's failure first
                rank, error = _first_own_failure(files, default=(rank, error))
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            output = rank_output(run_dir, attempt, rank)
            error = {
                "type": name,
                "message": f"rank {rank} was killed by {name}; the other ranks were stopped",
                "traceback": output,
                "output": output,
            }
        else:
            error = {
                "type": "ExitCode",
                "message": f"rank {rank} exited with status {code}; the other ranks were stopped",
                "traceback": "",
            }
        error["rank"] = rank
    elif files:  # no report (torchrun itself was killed): the first rank that raised
        error = json.loads(files[0].read_text())
        error["rank"] = int(files[0].stem.rsplit("rank", 1)[1])
    if error is not None:
        if not error["message"].startswith("rank "):
            error["message"] = f"rank {error['rank']}: {error['message']}"
        target.write_text(json.dumps(error))


def _tail_lines(path: Path, count: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - (64 << 10)))
            return f.read().decode("utf-8", "replace").splitlines()[-count:]
    except OSError:
        return []


def rank_output(run_dir: Path, attempt: int, rank: int, count: int = 40) -> str:
    """The last lines a rank wrote (its own stdout.log and stderr.log under `ranks/`,
    written by the rank itself, so they survive its death): for a rank killed by a
    signal, its last words and faulthandler's "Fatal Python error" with every
    thread's stack (main() enables it)."""
    try:
        plan = json.loads((Path(run_dir) / "spec.json").read_text()).get("distributed") or {}
        per_node = max(int(plan.get("nproc_per_node") or 1), 1)
    except (OSError, ValueError, TypeError):
        per_node = rank + 1  # no plan: one node
    # global rank -> (node, local rank): a rank of another node has its files on that
    # node, never this node's rank with the same local number
    node, local = divmod(rank, per_node)
    folders = sorted(
        (Path(run_dir) / RANKS_FOLDER).glob(f"attempt-{attempt}-node-{node}/*/attempt_*/{local}"),
        key=lambda p: p.stat().st_mtime,
    )
    if not folders:
        return ""
    parts = []
    for name in ("stdout.log", "stderr.log"):
        lines = _tail_lines(folders[-1] / name, count)
        if lines:
            parts.append(f"-- rank {rank}'s last {name} lines:\n" + "\n".join(lines))
    return "\n".join(parts) + "\n" if parts else ""


# -- one rank's process ------------------------------------------------------------------
def _die_with_torchrun() -> None:
    """torchrun starts each rank in a session of its own: a SIGKILLed torchrun (a
    forced stop) must not leave ranks training unseen."""
    parent = os.getppid()
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:  # not Linux: torchrun still stops its ranks on SIGTERM
        return
    if os.getppid() != parent:  # torchrun died before the prctl took effect
        os._exit(1)


def main(argv: list[str] | None = None) -> NoReturn:
    _die_with_torchrun()
    # A rank killed by SIGABRT/SIGSEGV/SIGBUS/SIGFPE leaves "Fatal Python error" and every
    # thread's stack in its own stderr.log (torchrun's --tee file), which write_error keeps.
    faulthandler.enable(all_threads=True)
    from .runner import main as run

    _exit_before_finalizing(run(sys.argv[1:] if argv is None else argv))


def _exit_before_finalizing(code: int) -> NoReturn:
    """End the rank without Python's finalization (issue 21). A gloo worker thread
    (ProcessGroupGloo::runLoop) may still be destroying the last collective's work,
    alive after `destroy_process_group()` because the DDP model holds the group; that
    destructor takes the GIL, and during Py_FinalizeEx taking the GIL ends the thread
    with pthread_exit, whose unwinding through the noexcept destructor calls
    std::terminate: SIGABRT, "terminate called without an active exception", about one
    2-rank run in ten, under plain torchrun too. So the rank does what finalization
    would that matters (waits for its non-daemon threads, runs the atexit functions,
    flushes its streams) and leaves with os._exit, before the race can happen."""
    main_thread = threading.main_thread()
    for thread in threading.enumerate():
        if thread is not main_thread and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
