"""A real `%%runctl train` in a real kernel: the panel's Stop button, clicked (a
comm message, as the browser sends it) while the cell blocks, stops the run."""

from __future__ import annotations

import os
import time

from jupyter_client.manager import start_new_kernel

from runctl_jupyter.store import Store

TRAIN = """%%runctl train --name stop-me --experiment e2e
import time
for step in range(600):
    runctl.log(step=step, total=600, loss=1.0 / (step + 1))
    time.sleep(0.1)
"""


def click_message(kc, comm_id: str) -> dict:
    data = {"method": "custom", "content": {"event": "click"}}
    return kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})


def test_stop_button_stops_a_blocking_train(home, tmp_path):
    env = dict(os.environ, RUNCTL_HOME=str(home))
    km, kc = start_new_kernel(kernel_name="python3", env=env, cwd=str(tmp_path))
    try:
        kc.execute("%load_ext runctl_jupyter", reply=True, timeout=60)
        msg_id = kc.execute(TRAIN)
        stop_comm = seen_at = clicked_at = done = None
        outputs = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                msg = kc.get_iopub_msg(timeout=0.5)
            except Exception:
                msg = None
            if msg is not None and msg["parent_header"].get("msg_id") == msg_id:
                kind, content = msg["msg_type"], msg["content"]
                if kind == "comm_open":
                    state = content["data"].get("state", {})
                    if (
                        state.get("_model_name") == "ButtonModel"
                        and state.get("description") == "Stop"
                    ):
                        stop_comm, seen_at = content["comm_id"], time.monotonic()
                if kind in ("display_data", "update_display_data", "stream", "error"):
                    outputs.append(content)
                if kind == "status" and content["execution_state"] == "idle":
                    done = time.monotonic()
                    break
            if seen_at and clicked_at is None and time.monotonic() - seen_at > 3:  # under way
                kc.shell_channel.send(click_message(kc, stop_comm))
                clicked_at = time.monotonic()
        assert stop_comm, "the panel showed no Stop button"
        assert clicked_at is not None and done is not None
        assert done - clicked_at < 30, "Stop did not end the blocking cell"
        store = Store(home)
        store.refresh()
        (row,) = store.list_runs(experiment="e2e")
        assert row["status"] == "stopped" and row["reason"] == "user"
        assert (row["last_step"] or 0) < 590
        summaries = [
            o["data"]["text/html"]
            for o in outputs
            if 'class="runctl-summary' in o.get("data", {}).get("text/html", "")
        ]
        assert summaries and "stopped" in summaries[-1], "no static summary left in the output"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
