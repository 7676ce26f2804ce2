"""`train --debug` from the notebook side (docs/debugging.md): the checks before launch,
and the live view's part: the attach settings, and on AWS the port forwarding.

The run's process tells where debugpy listens with a `debugger` event; `DebuggerView`
wraps the live view (panel or text), adds what only this side knows under the event's
`attach` (the local port, the local run folder, where to set breakpoints) and, for an
AWS run, the SSM port-forwarding command, which it starts when the
session-manager-plugin is installed and closes when the run ends or the view detaches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..distributed import process_count
from ..errors import RunctlError
from ..store.folders import read_spec


def check_debugger(options: dict, plan: dict | None, backend: str) -> None:
    """Refuse, before anything is written, a --debug run that cannot wait for a client."""
    if not options.get("debugger"):
        return
    rank, ranks = int(options.get("debug_rank") or 0), process_count(plan)
    if rank >= ranks and not (plan or {}).get("gpus") == "all":
        raise RunctlError(
            f"--debug-rank {rank}: the run has {ranks} process{'es' if ranks > 1 else ''} "
            f"(ranks 0 to {ranks - 1}); choose one of them"
        )
    port = int(options.get("debug_port") or 0)
    if backend == "local" and port:
        from ..aws.port_forward import port_free

        if not port_free(port):
            raise RunctlError(
                f"--debug-port {port} is in use on this machine (another debugger, or a run "
                "waiting for one): choose another with --debug-port P, or --debug-port 0 for a free one"
            )


DEBUG_OPTIONS = ("debugger", "debug_rank", "debug_port", "debug_timeout")


def without_debugger(options: dict | None) -> dict | None:
    """A run's options for a rerun: the same run, not waiting for a debugger (a resume,
    the same run's next attempt, waits again)."""
    if options is None:
        return None
    return {k: v for k, v in options.items() if k not in DEBUG_OPTIONS}


class DebuggerView:
    """A live view (panel or text) that also shows how to attach, and forwards an AWS
    run's debugger port while it waits."""

    def __init__(self, session: Any, run_id: str, view: Any) -> None:
        self.session, self.run_id, self.view = session, run_id, view
        self.replays_history = getattr(view, "replays_history", False)
        self.tunnel: Any = None
        self.first = True
        self.said: set = set()  # the seqs of the debugger events passed on, each once

    def update(self, row: dict, events: list[dict]) -> None:
        if self.first and not self.replays_history:  # `attach` after --detach: say it again
            self.first = False
            events = self._last_said(events) + events
        shown = []
        for event in events:
            if event.get("type") == "debugger":
                if event.get("seq") in self.said:
                    continue
                self.said.add(event.get("seq"))
                event = self._with_attach(event)
            shown.append(event)
        self.view.update(row, shown)

    def _last_said(self, events: list[dict]) -> list[dict]:
        """The run's last `debugger` event, when it came before these (a view that shows
        only new events would never show where to attach)."""
        if any(e.get("type") == "debugger" for e in events):
            return []
        said = [e for e in self.session.store.events(self.run_id) if e.get("type") == "debugger"]
        return said[-1:]

    def idle(self, seconds: float) -> None:
        self.view.idle(seconds)

    def finish(self, row: dict, metrics: dict) -> None:
        self.close()
        self.view.finish(row, metrics)

    def detached(self, row: dict) -> None:
        self.close()
        self.view.detached(row)

    def close(self) -> None:
        tunnel, self.tunnel = self.tunnel, None
        if tunnel is not None:
            tunnel.close()

    def _with_attach(self, event: dict) -> dict:
        run_dir = self.session.store.run_dir(self.run_id)
        spec = read_spec(run_dir)
        attach = {
            "run_id": self.run_id,
            "port": event.get("port"),
            "local_run_dir": str(run_dir),
            "breakpoints_in": spec.get("script_path")
            or str(run_dir / spec.get("entry", "code.py")),
        }
        if spec.get("backend") == "aws" and event.get("state") == "waiting":
            attach.update(self._forward(run_dir, spec, int(event.get("port") or 0), event))
        return {**event, "attach": attach}

    def _forward(self, run_dir: Path, spec: dict, port: int, event: dict) -> dict:
        """The port-forwarding command to the instance of the waiting rank; started here
        when the plugin is installed (the same local port, so launch.json stays the same)."""
        from ..aws import port_forward
        from ..backends.aws_target import read_target

        target = read_target(run_dir, spec)
        instance_id = _instance_of_rank(target, spec, int(event.get("rank") or 0))
        clients = self.session.backend("aws").clients_for(target.get("region"))
        facts = {"forward_command": port_forward.command(instance_id, port, port, clients.region)}
        if self.tunnel is None:
            try:
                self.tunnel = port_forward.start(clients, instance_id, port, port)
            except RunctlError as exc:
                facts["tunnel"] = f"not forwarded: {exc}; then run the command above"
            else:
                facts["tunnel"] = f"forwarding 127.0.0.1:{port} here to {instance_id} (SSM session)"
        return facts


def _instance_of_rank(target: dict, spec: dict, rank: int) -> str:
    """The instance holding `rank`: node rank // processes per node (node 0 holds rank 0)."""
    nodes = (target.get("cluster") or {}).get("nodes") or []
    per_node = int((spec.get("distributed") or {}).get("nproc_per_node") or 1)
    node = rank // max(per_node, 1)
    if node and node < len(nodes):
        return nodes[node]["instance_id"]
    return target["instance_id"]


def with_debugger(session: Any, run: Any, view: Any) -> Any:
    """The view, wrapped when the run waits for a debugger (`train --debug`)."""
    spec = read_spec(session.store.run_dir(run.id))
    return (
        DebuggerView(session, run.id, view) if (spec.get("options") or {}).get("debugger") else view
    )
