"""Periodic checkpoints of registered state, pruning, and a checkpoint write that fails."""

from __future__ import annotations

import json
import pickle

from fault_helpers import TRAIN, wait_ended

FAST = {"seed": 3, "delay": 0.0}


def test_checkpoint_every_n_steps_keeps_the_newest_k(session):
    run = session.train(
        code=TRAIN,
        params={**FAST, "steps": 23},
        options={"checkpoint_every": {"every": 5, "unit": "steps"}, "keep_checkpoints": 2},
        detach=True,
    )
    row = wait_ended(session, run.id)
    assert row["status"] == "succeeded"
    events = session.store.events(run.id)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [4, 9, 14, 19]
    folder = session.store.run_dir(run.id) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000014.pkl", "step-00000019.pkl"]
    # The pruning is in the events, so the store, `show` and the record list what is left.
    assert [e.get("pruned") for e in events if e["type"] == "checkpoint"] == [
        None,
        None,
        ["checkpoints/step-00000004.pkl"],
        ["checkpoints/step-00000009.pkl"],
    ]
    assert [c["step"] for c in session.store.checkpoints(run.id)] == [14, 19]
    assert "2, latest step 19" in str(session.show(run.id))
    record = json.loads((session.store.run_dir(run.id) / "record.ipynb").read_text())
    assert [c["step"] for c in record["metadata"]["runctl"]["run"]["checkpoints"]] == [14, 19]
    state = pickle.loads((folder / "step-00000019.pkl").read_bytes())
    assert state["step"] == 19  # the registered state, as it was right after step 19's log


def test_checkpoint_every_minutes_saves_on_the_clock(session):
    run = session.train(
        code=TRAIN,
        params={"seed": 3, "steps": 30, "delay": 0.05},
        options={"checkpoint_every": {"every": 0.005, "unit": "minutes"}},  # 0.3 s
        detach=True,
    )
    assert wait_ended(session, run.id)["status"] == "succeeded"
    times = [e["t"] for e in session.store.events(run.id) if e["type"] == "checkpoint"]
    assert len(times) >= 3
    assert all(b - a >= 0.29 for a, b in zip(times, times[1:]))


DISK_FULL = """
import resource
runctl.save_checkpoint({"step": 0, "w": [0.5] * 10}, step=0)
resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
runctl.save_checkpoint({"step": 1, "w": [0.25] * 200_000}, step=1)  # ~1.8 MB: does not fit
print("never printed")
"""


def test_disk_full_on_checkpoint_write_fails_clearly_and_keeps_the_earlier_one(session):
    run = session.train(code=DISK_FULL, detach=True)
    row = wait_ended(session, run.id)
    assert (row["status"], row["reason"]) == ("failed", "exception")
    error = row["error"]
    assert error["type"] == "CheckpointError"
    message = error["message"]
    assert "\n" not in message
    assert "could not write checkpoint step-00000001" in message
    assert "step-00000000.pkl is intact" in message and f"runctl resume {run.id}" in message
    folder = session.store.run_dir(run.id) / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == ["step-00000000.pkl"]  # no torn .tmp left
    assert pickle.loads((folder / "step-00000000.pkl").read_bytes()) == {"step": 0, "w": [0.5] * 10}
    assert [c["step"] for c in session.store.checkpoints(run.id)] == [0]
