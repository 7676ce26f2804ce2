"""process_ui_events in a real kernel: a click is handled while a cell blocks,
and cells queued behind the blocking cell still run after it, in order."""

from __future__ import annotations

import time

import pytest
from jupyter_client.manager import start_new_kernel

from runctl_jupyter.display.uipoll import process_ui_events

SETUP = """
import ipywidgets as W
button = W.Button()
clicks = []
button.on_click(lambda _b: clicks.append(time.time()))
print(button.comm.comm_id)
"""

BLOCK = """
from runctl_jupyter.display.uipoll import process_ui_events
start = time.time()
while not clicks and time.time() - start < 30:
    process_ui_events(get_ipython())
    time.sleep(0.02)
print("clicked", bool(clicks))
"""


@pytest.fixture
def kernel():
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def run(kc, code: str, timeout: float = 60) -> tuple[dict, str]:
    msg_id = kc.execute(code)
    return collect(kc, msg_id, timeout)


def collect(kc, msg_id: str, timeout: float = 60) -> tuple[dict, str]:
    """The execute_reply of msg_id and the stdout it printed."""
    out = []
    deadline = time.monotonic() + timeout
    while True:
        msg = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        if msg["msg_type"] == "error":
            out.append("ERROR " + msg["content"]["ename"])
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            break
    reply = kc.get_shell_msg(timeout=timeout)
    while reply["parent_header"].get("msg_id") != msg_id:
        reply = kc.get_shell_msg(timeout=timeout)
    return reply, "".join(out)


def click(kc, comm_id: str) -> None:
    msg = kc.session.msg(
        "comm_msg",
        {"comm_id": comm_id, "data": {"method": "custom", "content": {"event": "click"}}},
    )
    kc.shell_channel.send(msg)


def test_outside_a_kernel_it_does_nothing():
    from IPython.core.interactiveshell import InteractiveShell

    assert process_ui_events(None) == 0
    assert process_ui_events(InteractiveShell.instance()) == 0


def test_click_is_handled_while_the_cell_blocks_and_queued_cells_run_after(kernel):
    reply, out = run(kernel, "import time\n" + SETUP)
    assert reply["content"]["status"] == "ok"
    comm_id = out.strip()
    blocking = kernel.execute(BLOCK)
    queued = kernel.execute("print('after', len(clicks))")  # like Run All: waits behind the cell
    time.sleep(1.0)
    sent = time.time()
    click(kernel, comm_id)
    reply, out = collect(kernel, blocking)
    assert reply["content"]["status"] == "ok"
    assert out.strip() == "clicked True"
    # the queued cell ran after the blocking one, and saw the click
    reply, out_q = collect(kernel, queued)
    assert reply["content"]["status"] == "ok"
    assert out_q.strip() == "after 1"
    reply, out = run(kernel, f"print(clicks[0] - {sent!r} < 5)")
    assert out.strip() == "True", "the click was handled while the cell blocked, not after"


def test_cells_queued_behind_a_failing_cell_are_aborted_as_usual(kernel):
    reply, out = run(kernel, "import time\n" + SETUP)
    comm_id = out.strip()
    blocking = kernel.execute(BLOCK + "\nraise ValueError('stop here')", stop_on_error=True)
    queued = kernel.execute("print('must not run')")
    time.sleep(1.0)
    click(kernel, comm_id)
    reply, out = collect(kernel, blocking)
    assert reply["content"]["status"] == "error"
    reply = kernel.get_shell_msg(timeout=30)
    while reply["parent_header"].get("msg_id") != queued:
        reply = kernel.get_shell_msg(timeout=30)
    assert reply["content"]["status"] == "aborted"
