"""The store: run folders written the way the agent writes them, indexed into SQLite."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from runctl_jupyter.errors import AmbiguousRun, RunctlError, RunNotFound
from runctl_jupyter.events import EVENTS_FILE, EventWriter
from runctl_jupyter.store import Store

REPO = Path(__file__).resolve().parents[1]


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def proc_start(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


def make_run(
    store: Store, run_id: str, *, created: float | None = None, add: bool = True, **fields
) -> Path:
    spec = {
        "format": 1,
        "run_id": run_id,
        "name": run_id,
        "experiment": "exp",
        "project": "default",
        "owner": "ann",
        "tags": ["t1"],
        "kind": "cell",
        "params": {"lr": 0.1, "layers": [64, 32]},
        "backend": "local",
        "created": time.time() if created is None else created,
        "rerun_of": None,
        "sweep_id": None,
    }
    spec.update(fields)
    run_dir = store.runs_dir / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "spec.json").write_text(json.dumps(spec))
    if add:
        store.add_run(spec)
    return run_dir


def write_agent_json(run_dir: Path, pid: int, *, host: str | None = None, start: int | None = None, attempt: int = 1) -> None:  # fmt: skip
    info = {
        "pid": pid,
        "host": host or socket.gethostname(),
        "boot_id": boot_id(),
        "proc_start": proc_start(pid) if start is None else start,
        "started": time.time(),
        "attempt": attempt,
    }
    (run_dir / "agent.json").write_text(json.dumps(info))


def start_attempt(run_dir: Path, attempt: int = 1, t: float | None = None) -> EventWriter:
    w = EventWriter(run_dir, attempt)
    w.write("status", t=t, status="starting", format=1)
    w.write("status", t=t, status="running")
    w.flush()
    return w


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "home")
    yield s
    s.close()


# ---- adding and resolving -------------------------------------------------------


def test_added_run_is_queued_with_its_spec_fields(store: Store) -> None:
    make_run(store, "a1b2c3", name="mlp", experiment="digits", tags=["x", "y"], sweep_id="sw1")
    row = store.get("a1b2c3")
    assert row["status"] == "queued"
    assert (row["name"], row["experiment"], row["tags"], row["sweep_id"]) == ("mlp", "digits", ["x", "y"], "sw1")  # fmt: skip
    assert row["params"] == {"lr": 0.1, "layers": [64, 32]}
    assert row["run_dir"] == str(store.runs_dir / "a1b2c3")
    assert row["duration"] is None and row["cost"] == 0 and row["final_metrics"] == {}
    assert (store.home / "runctl.db").exists()


def test_a_spec_without_created_uses_the_folder_time(store: Store) -> None:
    run_dir = make_run(store, "nocreated", add=False, created=0.0)
    spec = json.loads((run_dir / "spec.json").read_text())
    del spec["created"]
    (run_dir / "spec.json").write_text(json.dumps(spec))
    store.add_run(spec)
    store.refresh()
    row = store.get("nocreated")
    assert row["created"] == (run_dir / "spec.json").stat().st_mtime
    assert row["status"] == "queued"  # not lost at once


def test_add_run_without_run_id_is_an_error(store: Store) -> None:
    with pytest.raises(RunctlError, match="no run_id"):
        store.add_run({"name": "x"})


def test_resolve_by_id_prefix_and_name(store: Store) -> None:
    make_run(store, "abc123", name="mlp", created=100.0)
    make_run(store, "abd999", name="mlp", created=200.0)
    make_run(store, "ffff00", name="cnn", created=300.0)
    assert store.resolve("abc123") == "abc123"
    assert store.resolve("abc") == "abc123"
    assert store.resolve("ff") == "ffff00"
    assert store.resolve("mlp") == "abd999"  # the newest run of that name


def test_ambiguous_prefix_lists_the_candidates(store: Store) -> None:
    make_run(store, "abc123", name="first")
    make_run(store, "abd999", name="second")
    with pytest.raises(AmbiguousRun) as err:
        store.resolve("ab")
    message = str(err.value)
    assert "abc123" in message and "abd999" in message and "first" in message
    assert "\n" not in message


def test_unknown_run_names_it(store: Store) -> None:
    make_run(store, "abc123")
    with pytest.raises(RunNotFound, match=r"^no run 'xyz': see `runctl runs` for run ids$"):
        store.resolve("xyz")
    with pytest.raises(RunNotFound, match="zzz"):
        store.get("zzz")
    with pytest.raises(RunNotFound):
        store.get("../etc")


def test_a_folder_missing_from_the_database_is_found(store: Store) -> None:
    run_dir = make_run(store, "orphan1", add=False)
    w = start_attempt(run_dir)
    w.close()
    assert store.resolve("orphan1") == "orphan1"
    assert store.get("orphan1")["status"] == "running"


# ---- indexing -------------------------------------------------------------------


def test_refresh_indexes_only_new_complete_lines(store: Store) -> None:
    run_dir = make_run(store, "r1")
    w = start_attempt(run_dir)
    for step in range(3):
        w.write("metric", step=step, values={"loss": 1.0 / (step + 1)})
    w.flush()
    first = store.refresh("r1")
    assert [e["seq"] for e in first] == [1, 2, 3, 4, 5]
    # the writer is mid-line: the partial line waits for the next read
    line = json.dumps({"seq": 6, "t": time.time(), "type": "metric", "attempt": 1, "step": 3, "values": {"loss": 0.2}})  # fmt: skip
    with open(run_dir / EVENTS_FILE, "a") as f:
        f.write(line[:20])
    assert store.refresh("r1") == []
    assert len(store.metrics("r1")["loss"]) == 3
    with open(run_dir / EVENTS_FILE, "a") as f:
        f.write(line[20:] + "\n")
    assert [e["seq"] for e in store.refresh("r1")] == [6]
    assert store.metrics("r1")["loss"][-1] == (3, 0.2)
    assert store.refresh("r1") == []  # nothing new: nothing returned
    row = store.get("r1")
    assert row["status"] == "running" and row["last_step"] == 3
    assert row["final_metrics"] == {"loss": 0.2}


def test_duplicate_seqs_are_ignored(store: Store) -> None:
    run_dir = make_run(store, "dup")
    w = start_attempt(run_dir)
    event = w.write("metric", step=0, values={"loss": 1.0})
    w.close()
    store.refresh("dup")
    with open(run_dir / EVENTS_FILE, "a") as f:
        f.write(json.dumps({**event, "values": {"loss": 9.0}}) + "\n")
    assert store.refresh("dup") == []
    assert store.metrics("dup") == {"loss": [(0, 1.0)]}


def test_exit_sets_the_final_state(store: Store) -> None:
    run_dir = make_run(store, "fin")
    t0 = time.time() - 10
    w = start_attempt(run_dir, t=t0)
    w.write("metric", t=t0 + 1, step=0, values={"loss": 0.5, "acc": 0.7}, total=2)
    w.write("metric", t=t0 + 2, step=1, values={"loss": 0.25, "acc": 0.9, "note": "text"}, total=2)
    w.write("checkpoint", t=t0 + 2, step=1, path="checkpoints/step-00000001.pkl", bytes=812)
    w.write("cost", t=t0 + 3, dollars=0.12, rate=0.5)
    error = {"type": "ValueError", "message": "boom", "traceback": "Traceback..."}
    w.write("exit", t=t0 + 4, status="failed", reason="exception", exit_code=1, error=error, duration=4.0)  # fmt: skip
    w.close()
    store.refresh()
    row = store.get("fin")
    assert (row["status"], row["reason"], row["exit_code"], row["error"]) == ("failed", "exception", 1, error)  # fmt: skip
    assert row["started"] == t0 and row["ended"] == t0 + 4 and row["duration"] == 4.0
    assert row["final_metrics"] == {"loss": 0.25, "acc": 0.9}
    assert (row["last_step"], row["total"], row["cost"], row["rate"]) == (1, 2, 0.12, 0.5)
    assert store.checkpoints("fin") == [
        {
            "step": 1,
            "path": str(run_dir / "checkpoints/step-00000001.pkl"),
            "bytes": 812,
            "t": t0 + 2,
            "attempt": 1,
        }  # fmt: skip
    ]
    assert store.summaries(["fin"])["fin"]["loss"] == {"last": 0.25, "min": 0.25, "max": 0.5, "last_step": 1, "count": 2}  # fmt: skip


def test_pruned_checkpoints_leave_the_index_in_one_batch_or_later(store: Store) -> None:
    run_dir = make_run(store, "keep2")
    t0 = time.time() - 10
    w = start_attempt(run_dir, t=t0)
    ckpt = "checkpoints/step-{:08d}.pkl".format
    w.write("checkpoint", t=t0 + 1, step=1, path=ckpt(1), bytes=10)
    w.write("checkpoint", t=t0 + 2, step=2, path=ckpt(2), bytes=10)
    w.write("checkpoint", t=t0 + 3, step=3, path=ckpt(3), bytes=10, pruned=[ckpt(1)])
    w.flush()
    store.refresh()  # written and pruned within one batch of events
    assert [c["step"] for c in store.checkpoints("keep2")] == [2, 3]
    w.write("checkpoint", t=t0 + 4, step=4, path=ckpt(4), bytes=10, pruned=[ckpt(2)])
    w.write("exit", t=t0 + 5, status="succeeded", reason=None, exit_code=0, error=None, duration=5.0)  # fmt: skip
    w.close()
    store.refresh()  # pruned in a later batch than the one that indexed it
    assert [c["path"] for c in store.checkpoints("keep2")] == [str(run_dir / ckpt(3)), str(run_dir / ckpt(4))]  # fmt: skip
    store.reindex()  # a rebuild from the folder agrees
    assert [c["step"] for c in store.checkpoints("keep2")] == [3, 4]


def test_a_resumed_attempt_replaces_relogged_steps(store: Store) -> None:
    run_dir = make_run(store, "res")
    t0 = time.time() - 100
    w = start_attempt(run_dir, t=t0)
    for step in range(10):
        w.write("metric", t=t0 + step, step=step, values={"loss": float(step)})
    w.write("exit", t=t0 + 10, status="stopped", reason="user", exit_code=-15, error=None, duration=10.0)  # fmt: skip
    w.close()
    store.refresh("res")
    assert store.get("res")["ended"] == t0 + 10
    w2 = start_attempt(run_dir, attempt=2, t=t0 + 50)  # resumes from the step-5 checkpoint
    for step in range(5, 15):
        w2.write("metric", t=t0 + 50 + step, step=step, values={"loss": 100.0 + step})
    w2.flush()
    new = store.refresh("res")
    assert new[0]["seq"] == 14 and all(e["attempt"] == 2 for e in new)
    row = store.get("res")
    assert (row["status"], row["attempt"], row["ended"], row["exit_code"]) == ("running", 2, None, None)  # fmt: skip
    loss = store.metrics("res")["loss"]
    assert [step for step, _ in loss] == list(range(15))  # no duplicates, no gaps
    assert loss[4] == (4, 4.0) and loss[5] == (5, 105.0) and loss[14] == (14, 114.0)
    w2.write("exit", t=t0 + 70, status="succeeded", reason=None, exit_code=0, error=None, duration=20.0)  # fmt: skip
    w2.close()
    store.refresh()
    row = store.get("res")
    assert (row["status"], row["attempt"], row["duration"]) == ("succeeded", 2, 30.0)
    assert store.summaries(["res"])["res"]["loss"]["count"] == 15


def test_nan_metrics_round_trip(store: Store) -> None:
    run_dir = make_run(store, "nan")
    w = start_attempt(run_dir)
    w.write("metric", step=0, values={"loss": float("nan")})
    w.close()
    store.refresh()
    [(step, value)] = store.metrics("nan")["loss"]
    assert step == 0 and value != value


def test_events_replay_from_a_seq(store: Store) -> None:
    run_dir = make_run(store, "ev")
    w = start_attempt(run_dir)
    w.write("log", stream="stdout", text="hello\n")
    w.close()
    assert [e["type"] for e in store.events("ev")] == ["status", "status", "log"]
    assert [e["seq"] for e in store.events("ev", after_seq=2)] == [3]


def test_metrics_by_key_and_summaries_of_several_runs(store: Store) -> None:
    for run_id, scale in (("m1", 1.0), ("m2", 10.0)):
        w = start_attempt(make_run(store, run_id))
        for step in range(4):
            w.write("metric", step=step, values={"loss": scale * (4 - step), "acc": step / 4})
        w.close()
    make_run(store, "m3")
    store.refresh()
    assert store.metrics("m1", ["acc"]) == {"acc": [(0, 0.0), (1, 0.25), (2, 0.5), (3, 0.75)]}
    assert set(store.metrics("m2")) == {"loss", "acc"}
    summaries = store.summaries(["m1", "m2", "m3"])
    assert summaries["m2"]["loss"] == {"last": 10.0, "min": 10.0, "max": 40.0, "last_step": 3, "count": 4}  # fmt: skip
    assert summaries["m1"]["acc"]["last"] == 0.75 and summaries["m3"] == {}
    assert store.summaries([]) == {}


def test_a_replaced_stream_is_read_again_from_the_start(store: Store) -> None:
    run_dir = make_run(store, "redo")
    w = start_attempt(run_dir)
    for step in range(5):
        w.write("metric", step=step, values={"loss": 1.0})
    w.close()
    store.refresh()
    (run_dir / EVENTS_FILE).unlink()
    w = start_attempt(run_dir)
    w.write("metric", step=0, values={"loss": 2.0})
    w.close()
    store.refresh()
    assert store.metrics("redo") == {"loss": [(0, 2.0)]}


# ---- lost detection -------------------------------------------------------------


def test_lost_when_heartbeats_stop_and_back_when_events_resume(tmp_path: Path) -> None:
    store = Store(tmp_path, lost_timeout=60)
    run_dir = make_run(store, "hb", created=time.time() - 300)
    w = start_attempt(run_dir, t=time.time() - 120)
    store.refresh()
    row = store.get("hb")
    assert (row["status"], row["reason"]) == ("lost", "heartbeat")
    assert store.list_runs(status="lost")[0]["id"] == "hb"
    w.write("heartbeat", pid=1)
    w.flush()
    store.refresh()
    assert (store.get("hb")["status"], store.get("hb")["reason"]) == ("running", None)


def test_a_queued_run_whose_agent_never_came_is_lost(tmp_path: Path) -> None:
    store = Store(tmp_path, lost_timeout=60)
    make_run(store, "old", created=time.time() - 61)
    make_run(store, "new")
    store.refresh()
    assert store.get("old")["status"] == "lost"
    assert store.get("new")["status"] == "queued"


def test_lost_when_the_local_agent_process_is_gone(store: Store) -> None:
    run_dir = make_run(store, "dead")
    agent = subprocess.Popen(["sleep", "60"])
    try:
        write_agent_json(run_dir, agent.pid)
        w = start_attempt(run_dir)
        store.refresh()
        assert store.get("dead")["status"] == "running"
        agent.kill()
        time.sleep(0.05)  # a zombie now (not reaped): it has ended all the same
        store.refresh()
        assert (store.get("dead")["status"], store.get("dead")["reason"]) == ("lost", "agent")
    finally:
        agent.kill()
        agent.wait()
    store.refresh()
    assert store.get("dead")["status"] == "lost"
    w.close()


def test_a_reused_pid_counts_as_gone(store: Store) -> None:
    run_dir = make_run(store, "reuse")
    write_agent_json(run_dir, os.getpid(), start=proc_start(os.getpid()) - 1)
    start_attempt(run_dir).close()
    store.refresh()
    assert (store.get("reuse")["status"], store.get("reuse")["reason"]) == ("lost", "agent")


def test_an_agent_on_another_machine_is_left_to_the_heartbeat(store: Store) -> None:
    run_dir = make_run(store, "remote")
    write_agent_json(run_dir, os.getpid(), host="some-ec2-instance", start=1)
    start_attempt(run_dir).close()
    store.refresh()
    assert store.get("remote")["status"] == "running"


def test_a_new_attempts_agent_brings_a_lost_run_back(store: Store) -> None:
    run_dir = make_run(store, "back")
    old = subprocess.Popen(["sleep", "60"])
    new = subprocess.Popen(["sleep", "60"])
    try:
        write_agent_json(run_dir, old.pid)
        start_attempt(run_dir).close()
        store.refresh()
        old.kill()
        old.wait()
        store.refresh()
        assert store.get("back")["status"] == "lost"
        write_agent_json(run_dir, new.pid, attempt=2)
        start_attempt(run_dir, attempt=2).close()
        store.refresh()
        row = store.get("back")
        assert (row["status"], row["reason"], row["attempt"]) == ("running", None, 2)
    finally:
        for p in (old, new):
            p.kill()
            p.wait()


def test_a_resume_is_not_lost_for_the_previous_attempts_dead_agent(store: Store) -> None:
    run_dir = make_run(store, "resume")
    write_agent_json(run_dir, os.getpid(), start=1)  # attempt 1's agent, long gone
    w = start_attempt(run_dir)
    w.write("exit", status="failed", reason="exception", exit_code=1, error=None, duration=1.0)
    w.close()
    store.refresh()
    store.set_status("resume", "starting")
    store.refresh()
    assert store.get("resume")["status"] == "starting"


def test_a_provisioning_run_gets_longer_than_the_lost_timeout(tmp_path: Path) -> None:
    store = Store(tmp_path, lost_timeout=0.05)
    make_run(store, "boot")
    make_run(store, "idle")
    store.set_status("boot", "provisioning")
    time.sleep(0.1)
    store.refresh()
    assert store.get("boot")["status"] == "provisioning"
    assert store.get("idle")["status"] == "lost"


def test_a_run_whose_bootstrap_outlasts_the_lost_timeout_is_not_lost(tmp_path: Path) -> None:
    """A cold start's bootstrap (venv, pip) runs at `starting` for minutes before the
    agent's first event: the follow that begins when it ends must not find it lost."""
    store = Store(tmp_path, lost_timeout=0.05)
    make_run(store, "boot")
    make_run(store, "idle")
    store.set_status("boot", "starting")
    store.set_status("idle", "running")
    time.sleep(0.1)
    store.refresh()
    assert store.get("boot")["status"] == "starting"
    assert store.get("idle")["status"] == "lost"


AGENT_SCRIPT = r"""
import json, os, socket, sys, time
from pathlib import Path
from runctl_jupyter.events import EventWriter
run_dir, go, beats = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
pid = os.getpid()
stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
(run_dir / "agent.json").write_text(json.dumps({
    "pid": pid, "host": socket.gethostname(),
    "boot_id": Path("/proc/sys/kernel/random/boot_id").read_text().strip(),
    "proc_start": int(stat[19]), "started": time.time(), "attempt": 1}))
w = EventWriter(run_dir, 1)
w.write("status", status="starting", format=1)
w.write("status", status="running")
w.flush()
for _ in range(beats):
    w.write("heartbeat", pid=pid)
    w.flush()
    time.sleep(0.001)
while not go.exists():
    time.sleep(0.005)
w.write("exit", status="succeeded", reason=None, exit_code=0, error=None, duration=0.1)
w.close()
"""


def run_agent(run_dir: Path, go: Path, beats: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", AGENT_SCRIPT, str(run_dir), str(go), str(beats)], env=env)  # fmt: skip


def test_not_lost_when_the_exit_lands_just_before_the_agent_goes(store: Store, tmp_path: Path) -> None:  # fmt: skip
    run_dir = make_run(store, "exiting")
    go = tmp_path / "go"
    agent = run_agent(run_dir, go, beats=0)
    deadline = time.time() + 20
    while store.get("exiting")["status"] != "running" and time.time() < deadline:
        store.refresh()
        time.sleep(0.01)
    assert store.get("exiting")["status"] == "running"
    go.touch()
    agent.wait(timeout=20)
    # The store last saw "running"; the agent is gone; its exit is in the file.
    store.refresh()
    assert (store.get("exiting")["status"], store.get("exiting")["reason"]) == ("succeeded", None)


def test_a_watcher_never_sees_lost_for_a_run_that_exits(store: Store, tmp_path: Path) -> None:
    seen = set()
    for i in range(2):
        run_dir = make_run(store, f"race{i}")
        go = tmp_path / f"go{i}"
        go.touch()
        agent = run_agent(run_dir, go, beats=200)
        while agent.poll() is None:
            store.refresh()
            seen.add(store.get(f"race{i}")["status"])
        store.refresh()
        assert store.get(f"race{i}")["status"] == "succeeded"
    assert "lost" not in seen and "running" in seen


# ---- the launcher's status ------------------------------------------------------


def test_a_failed_launch_is_recorded_and_survives_a_rebuild(store: Store) -> None:
    make_run(store, "nolaunch")
    store.set_status("nolaunch", "failed", reason="launch")
    row = store.get("nolaunch")
    assert (row["status"], row["reason"], row["duration"]) == ("failed", "launch", None)
    assert row["ended"] is not None
    store.reindex()
    assert (store.get("nolaunch")["status"], store.get("nolaunch")["reason"]) == ("failed", "launch")  # fmt: skip
    with pytest.raises(RunctlError, match="unknown run status"):
        store.set_status("nolaunch", "exploded")


def test_a_resume_announced_by_the_launcher_is_followed_by_refresh_all(store: Store) -> None:
    run_dir = make_run(store, "again")
    w = start_attempt(run_dir)
    w.write("exit", status="stopped", reason="user", exit_code=-15, error=None, duration=1.0)
    w.close()
    store.refresh()
    assert store.get("again")["status"] == "stopped"
    store.set_status("again", "starting")
    assert store.get("again")["status"] == "starting"
    w2 = start_attempt(run_dir, attempt=2)
    w2.close()
    store.refresh()
    row = store.get("again")
    assert (row["status"], row["attempt"], row["ended"]) == ("running", 2, None)
    store.reindex()
    assert (store.get("again")["status"], store.get("again")["attempt"]) == ("running", 2)


# ---- listing --------------------------------------------------------------------


def test_list_runs_filters_and_orders_newest_first(store: Store) -> None:
    make_run(store, "r1", experiment="a", created=1.0, project="p1")
    make_run(store, "r2", experiment="b", created=3.0, sweep_id="s1")
    make_run(store, "r3", experiment="a", created=2.0, sweep_id="s1")
    start_attempt(make_run(store, "r4", experiment="a", created=4.0, project="p1")).close()
    store.refresh()
    assert [r["id"] for r in store.list_runs()] == ["r4", "r2", "r3", "r1"]
    assert [r["id"] for r in store.list_runs(experiment="a")] == ["r4", "r3", "r1"]
    assert [r["id"] for r in store.list_runs(sweep_id="s1")] == ["r2", "r3"]
    assert [r["id"] for r in store.list_runs(project="p1", experiment="a")] == ["r4", "r1"]
    assert [r["id"] for r in store.list_runs(status="running")] == ["r4"]
    assert [r["id"] for r in store.list_runs(limit=2)] == ["r4", "r2"]
    w = start_attempt(make_run(store, "r5", created=5.0))
    w.write("exit", status="succeeded", reason=None, exit_code=0, error=None, duration=1.0)
    w.close()
    make_run(store, "r6")  # just created: queued
    store.refresh()
    active = store.list_runs(status="active")  # any state of a run not ended, newest first
    assert [(r["id"], r["status"]) for r in active] == [("r6", "queued"), ("r4", "running")]
    assert store.list_runs(experiment="none") == []


def test_a_thread_can_refresh_while_the_main_thread_reads(store: Store) -> None:
    run_dir = make_run(store, "thr")
    w = start_attempt(run_dir)
    errors = []

    def poll() -> None:
        try:
            for _ in range(50):
                store.refresh()
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=poll)
    thread.start()
    for step in range(50):
        w.write("metric", step=step, values={"loss": 1.0})
        w.flush()
        store.list_runs()
    thread.join()
    w.close()
    store.refresh()
    assert errors == [] and len(store.metrics("thr")["loss"]) == 50


# ---- two processes --------------------------------------------------------------


def _reader(home: str, run_id: str, prefix: str, out) -> None:  # noqa: ANN001 - a Queue
    store = Store(home)
    indexed = 0
    for i in range(20):
        make_run(store, f"{prefix}{i:02d}")
        indexed += len(store.refresh(run_id))
    while store.get(run_id)["status"] == "running":
        indexed += len(store.refresh(run_id))
    indexed += len(store.refresh(run_id))
    out.put(indexed)


def _writer(run_dir: str, n: int) -> None:
    w = EventWriter(run_dir, 1)
    for step in range(n):
        w.write("metric", step=step, values={"loss": 1.0 / (step + 1), "acc": 0.5})
        if step % 20 == 0:
            w.flush()
            time.sleep(0.002)
    w.write("exit", status="succeeded", reason=None, exit_code=0, error=None, duration=1.0)
    w.close()


def test_two_processes_index_and_add_runs_at_once(tmp_path: Path) -> None:
    store = Store(tmp_path)
    run_dir = make_run(store, "shared")
    start_attempt(run_dir).close()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(str(tmp_path), "shared", p, out)) for p in ("x", "y")]  # fmt: skip
    writer = ctx.Process(target=_writer, args=(str(run_dir), 3000))
    for p in (*readers, writer):
        p.start()
    counts = [out.get(timeout=60), out.get(timeout=60)]
    for p in (*readers, writer):
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sum(counts) == 3003  # every event indexed exactly once, by one of them
    loss = store.metrics("shared")["loss"]
    assert [s for s, _ in loss] == list(range(3000))
    assert store.get("shared")["status"] == "succeeded"
    assert len(store.list_runs(limit=None)) == 41
    conn = sqlite3.connect(tmp_path / "runctl.db")
    assert conn.execute("SELECT COUNT(*) FROM metrics WHERE run_id = 'shared'").fetchone() == (6000,)  # fmt: skip
    conn.close()


def _use_inherited(store: Store) -> None:
    make_run(store, "fromchild")
    store.refresh()
    os._exit(0 if store.get("fromchild")["status"] == "queued" else 1)


def test_a_store_inherited_through_fork_opens_its_own_connection(store: Store) -> None:
    start_attempt(make_run(store, "parent")).close()
    store.refresh()
    child = multiprocessing.get_context("fork").Process(target=_use_inherited, args=(store,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert store.get("fromchild")["status"] == "queued"
    assert store.get("parent")["status"] == "running"
    assert store.list_runs(limit=None)[0]["id"] in ("fromchild", "parent")


# ---- rebuilding -----------------------------------------------------------------


def _answers(store: Store) -> dict:
    rows = store.list_runs(limit=None)
    ids = [r["id"] for r in rows]
    return {
        "rows": rows,
        "metrics": {i: store.metrics(i) for i in ids},
        "summaries": store.summaries(ids),
        "checkpoints": {i: store.checkpoints(i) for i in ids},
        "resolve": [store.resolve(n) for n in ("mlp", "fi", "res")],
    }


def test_reindex_from_the_folders_gives_the_same_answers(tmp_path: Path) -> None:
    store = Store(tmp_path, lost_timeout=60)
    t0 = time.time() - 1000
    d = make_run(store, "finished", name="mlp", created=t0)
    w = start_attempt(d, t=t0)
    for step in range(20):
        w.write("metric", t=t0 + step, step=step, values={"loss": 1.0 / (step + 1)}, total=20)
        w.write("checkpoint", t=t0 + step, step=step, path=f"checkpoints/step-{step:08d}.pkl", bytes=10)  # fmt: skip
    w.write("exit", t=t0 + 30, status="succeeded", reason=None, exit_code=0, error=None, duration=30.0)  # fmt: skip
    w.close()
    d = make_run(store, "resumed", name="mlp", created=t0 + 1, experiment="other")
    w = start_attempt(d, t=t0 + 1)
    for step in range(10):
        w.write("metric", t=t0 + 2, step=step, values={"loss": float(step), "acc": 0.1})
    w.close()
    store.refresh()  # the first attempt was lost (no heartbeat)
    w = start_attempt(d, attempt=2, t=t0 + 100)
    for step in range(5, 12):
        w.write("metric", t=t0 + 101, step=step, values={"loss": -float(step)})
    w.write("cost", t=t0 + 102, dollars=1.5, rate=3.0)
    w.write("exit", t=t0 + 110, status="stopped", reason="cost-limit", exit_code=-15, error=None, duration=10.0)  # fmt: skip
    w.close()
    make_run(store, "failedlaunch", created=t0 + 2)
    store.set_status("failedlaunch", "failed", reason="launch")
    d = make_run(store, "silent", created=t0 + 3, sweep_id="s1")
    start_attempt(d, t=t0 + 3).close()
    make_run(store, "queued", created=time.time())
    store.refresh()
    before = _answers(store)
    assert {r["id"]: r["status"] for r in before["rows"]} == {
        "finished": "succeeded", "resumed": "stopped", "failedlaunch": "failed",
        "silent": "lost", "queued": "queued",
    }  # fmt: skip
    assert [r["duration"] for r in before["rows"] if r["id"] == "resumed"] == [11.0]
    store.close()
    for name in ("runctl.db", "runctl.db-wal", "runctl.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    rebuilt = Store(tmp_path, lost_timeout=60)
    assert rebuilt.list_runs() == []
    rebuilt.reindex()
    assert _answers(rebuilt) == before
    rebuilt.reindex()  # again, on a populated database
    assert _answers(rebuilt) == before


def test_an_older_schema_is_rebuilt_on_open(tmp_path: Path) -> None:
    store = Store(tmp_path)
    start_attempt(make_run(store, "keep")).close()
    store.refresh()
    store.close()
    conn = sqlite3.connect(tmp_path / "runctl.db")
    conn.execute("PRAGMA user_version = 0")
    conn.execute("CREATE TABLE leftover (x)")
    conn.commit()
    conn.close()
    reopened = Store(tmp_path)
    assert reopened.get("keep")["status"] == "running"
