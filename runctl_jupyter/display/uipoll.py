"""Handle widget messages (button clicks) while a cell blocks.

A kernel runs one shell message at a time: while a blocking `%%runctl train`
cell waits for its run, a click on Stop is a `comm_msg` queued behind the cell,
handled only when the cell ends. `process_ui_events(shell)`, called from the wait
loop, takes the messages queued for the main shell, handles comm messages at once
and hands every other message (the next cells of a "Run All", completions, ...)
back to the kernel, in their original order, to run after the current cell. It
is the approach of the jupyter-ui-poll package. ipykernel 7: the main thread
reads its shell messages from an inproc socket fed by the shell channel thread;
ipykernel 6: from the shell socket itself, and put-aside messages join the
kernel's ordered message queue.

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
        return _legacy_poller(kernel)
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
        if not _warned:
            _warned = True
            import warnings

            warnings.warn(
                "runctl: this kernel's shell messages cannot be read during a cell; panel "
                "buttons work only after the cell ends (pip install 'ipykernel>=6.29')",
                stacklevel=2,
            )
        return 0
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return 0  # no kernel loop around this call: nothing could run the deferred messages
    return poller.poll(max_messages)


class _LegacyPoller(_KernelPoller):
    """ipykernel 6: the main thread reads the shell socket itself (`shell_stream`);
    a message put aside goes to the kernel's ordered queue, behind the running cell."""

    def _dispatch_now(self, msg: list) -> None:
        kernel = self.kernel
        session = kernel.session
        idents, frames = session.feed_identities(msg, copy=False)
        try:
            message = session.deserialize(frames, content=True, copy=False)
        except Exception:
            return
        handler = kernel.shell_handlers.get(message["header"]["msg_type"])
        if handler is None:
            return
        parent, ident = kernel.get_parent("shell"), kernel._parent_ident.get("shell")
        kernel.set_parent(idents, message, channel="shell")
        try:
            result = handler(kernel.shell_stream, idents, message)
            if asyncio.iscoroutine(result):
                asyncio.ensure_future(result)
        except Exception:  # a widget callback's error must not end the wait
            kernel.log.exception("runctl: error in a widget message handler")
        finally:
            kernel.set_parent(ident, parent, channel="shell")

    def _defer(self, msg: list) -> None:
        self.deferred += 1
        self.kernel.schedule_dispatch(self.kernel.dispatch_shell, msg)


def _legacy_poller(kernel: Any) -> _KernelPoller | None:
    stream = getattr(kernel, "shell_stream", None)
    if (
        stream is None
        or not hasattr(kernel, "schedule_dispatch")
        or not hasattr(kernel, "_parent_ident")
    ):
        return None
    poller = _pollers[id(kernel)] = _LegacyPoller(kernel, stream.socket)
    return poller
