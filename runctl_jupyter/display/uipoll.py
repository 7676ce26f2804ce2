"""Handle widget messages (button clicks) while a cell blocks.

A kernel runs one shell message at a time: while a blocking `%%runctl train`
cell waits for its run, a click on Stop is a `comm_msg` queued behind the cell,
handled only when the cell ends. `process_ui_events(shell)`, called from the wait
loop, takes the messages queued for the main shell, handles comm messages at once
and hands every other message (the next cells of a "Run All", completions, ...)
back to the kernel, in their original order, to run after the current cell. It
is the approach of the jupyter-ui-poll package, for ipykernel 7's shell channel
thread: there the main thread reads its shell messages from an inproc socket.

Outside a kernel (terminal IPython, plain Python, another thread) it does nothing.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

__all__ = ["process_ui_events"]

COMM_TYPES = frozenset({"comm_open", "comm_msg", "comm_close"})


class _KernelPoller:
    """Per-kernel state: the main shell socket, and messages put aside for later."""

    def __init__(self, kernel: Any, socket: Any):
        self.kernel = kernel
        self.socket = socket
        self.deferred = 0

    def poll(self, max_messages: int) -> int:
        import zmq

        handled = 0
        while handled < max_messages:
            try:
                msg = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                break
            handled += 1
            if self._msg_type(msg) in COMM_TYPES:
                self._dispatch_now(msg)
            else:
                self._defer(msg)
        return handled

    def _msg_type(self, msg: list) -> str | None:
        if len(msg) == 1:  # ipykernel's internal "stop aborting" marker
            return None
        session = self.kernel.session
        try:
            _, frames = session.feed_identities(msg, copy=False)
            return session.deserialize(frames, content=False, copy=False)["header"].get("msg_type")
        except Exception:  # not ours to judge: the kernel's own path reports it
            return None

    def _dispatch_now(self, msg: list) -> None:
        kernel = self.kernel
        parent = kernel.get_parent("shell")
        ident = kernel._get_shell_context_var(kernel._shell_parent_ident)
        coro = kernel.dispatch_shell(msg, subshell_id=None, concurrent=True)
        try:
            future = coro.send(None)
        except StopIteration:
            future = None
        finally:
            # outputs of the blocking cell keep going to the cell
            kernel.set_parent(ident, parent, channel="shell")
        if future is not None:  # it waits on something: let the kernel's loop finish it
            asyncio.ensure_future(_resume(coro, future))

    def _defer(self, msg: list) -> None:
        # A task per message, created in arrival order: each queues on the main
        # shell's lock (held by the running cell) in that order, ahead of any
        # message the kernel reads from the socket later.
        self.deferred += 1
        asyncio.ensure_future(self.kernel.shell_main(None, msg))


async def _resume(coro: Any, future: Any) -> None:
    """Drive a coroutine that was started by hand, the way a Task would."""
    while True:
        try:
            await future
        except Exception:  # the coroutine sees the exception itself via send()
            pass
        try:
            future = coro.send(None)
        except StopIteration:
            return


_pollers: dict[int, _KernelPoller] = {}
_warned = False


def _poller_for(kernel: Any) -> _KernelPoller | None:
    poller = _pollers.get(id(kernel))
    if poller is not None and poller.kernel is kernel:
        return poller
    thread = getattr(kernel, "shell_channel_thread", None)
    manager = getattr(thread, "manager", None)
    if not getattr(kernel, "_supports_kernel_subshells", False) or manager is None:
        return None
    try:
        socket = manager.get_shell_channel_to_subshell_pair(None).to_socket
    except Exception:
        return None
    poller = _pollers[id(kernel)] = _KernelPoller(kernel, socket)
    return poller


def process_ui_events(shell: Any = None, max_messages: int = 20) -> int:
    """Handle pending widget messages now; returns how many shell messages were taken.

    Call it often (every ~20 ms) from a loop that blocks a cell. Safe to call
    anywhere: outside a kernel, or off the main thread, it returns 0.
    """
    global _warned
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:  # pragma: no cover - IPython is a dependency
            return 0
        shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    if kernel is None or threading.current_thread() is not threading.main_thread():
        return 0
    poller = _poller_for(kernel)
    if poller is None:
        legacy = _legacy_poll(kernel, max_messages)
        if legacy is None and not _warned:
            _warned = True
            import warnings

            warnings.warn(
                "runctl: this ipykernel is older than 7; buttons work only after the cell ends "
                "(pip install 'ipykernel>=7' or jupyter-ui-poll)",
                stacklevel=2,
            )
        return legacy or 0
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return 0  # no kernel loop around this call: nothing could run the deferred messages
    return poller.poll(max_messages)


def _legacy_poll(kernel: Any, max_messages: int) -> int | None:
    """ipykernel < 7: use jupyter-ui-poll when it is installed."""
    try:
        from jupyter_ui_poll import ui_events
    except ImportError:
        return None
    with ui_events() as poll:
        poll(max_messages)
    return 0
