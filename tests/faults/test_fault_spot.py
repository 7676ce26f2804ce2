"""A spot notice mid-run on the local backend: checkpoint, then attempt N+1, same run id."""

from __future__ import annotations

import time

from fault_helpers import TRAIN

PARAMS = {"seed": 7, "steps": 40, "delay": 0.04}


def _options(imds, **more) -> dict:
    return {
        "imds_endpoint": imds.url,
        "imds_interval": 0.1,
        "checkpoint_every": {"every": 10, "unit": "steps"},
        **more,
    }


def _wait_ended(session, run_id: str, timeout: float = 40.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.store.refresh(run_id)
        row = session.store.get(run_id)
        if row["status"] in ("succeeded", "failed", "stopped", "lost"):
            return row
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end: {session.store.get(run_id)['status']}")


def _wait_step(session, run_id: str, step: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        session.store.refresh(run_id)
        if (session.store.get(run_id).get("last_step") or -1) >= step:
            return
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} never reached step {step}")


def test_spot_notice_resumes_as_next_attempt_with_the_same_final_metrics(session, imds):
    reference = session.train(code=TRAIN, params=PARAMS, detach=True)
    run = session.train(code=TRAIN, params=PARAMS, options=_options(imds), detach=True)
    _wait_step(session, run.id, 14)
    noticed = time.time()
    imds.spot_notice()  # and it stays served, as on a real instance
    row = _wait_ended(session, run.id)
    _wait_ended(session, reference.id)

    assert row["status"] == "succeeded" and row["attempt"] == 2  # one notice, acted on once
    events = session.store.events(run.id)
    kinds = [(e["type"], e.get("status"), e["attempt"]) for e in events]
    sequence = [
        ("interrupt", None, 1),
        ("status", "interrupted", 1),
        ("status", "resuming", 1),
        ("status", "starting", 2),
        ("status", "running", 2),
    ]
    positions = [kinds.index(k) for k in sequence]
    assert positions == sorted(positions), kinds
    interrupt = next(e for e in events if e["type"] == "interrupt")
    assert interrupt["kind"] == "spot" and interrupt["action"] == "terminate"
    resuming = next(e for e in events if e.get("status") == "resuming")
    assert resuming["t"] - noticed < 10  # stopped and checkpointed well inside the 2 minutes

    # The stop saved the registered state; attempt 2 started right after it.
    last_ckpt = max(e["step"] for e in events if e["type"] == "checkpoint" and e["attempt"] == 1)
    attempt2_steps = [e["step"] for e in events if e["type"] == "metric" and e["attempt"] == 2]
    attempt1_steps = [e["step"] for e in events if e["type"] == "metric" and e["attempt"] == 1]
    assert attempt1_steps == list(range(last_ckpt + 1))  # the stop checkpoint is the last step
    assert attempt2_steps[0] == last_ckpt + 1
    assert (
        f"resumed from step {last_ckpt}"
        in (session.store.run_dir(run.id) / "stdout.log").read_text()
    )

    # No gap, no duplicate, and exactly the uninterrupted run's numbers.
    metrics = session.store.metrics(run.id)
    expected = session.store.metrics(reference.id)
    assert [s for s, _ in metrics["w"]] == list(range(PARAMS["steps"]))
    assert metrics == expected
    assert row["final_metrics"] == session.store.get(reference.id)["final_metrics"]

    # It spoke IMDSv2: a token first, then only GETs carrying it.
    assert imds.token_puts >= 2 and imds.authorized_gets > 4 and imds.refused == 0


def test_rebalance_notice_past_max_interruptions_stops_with_the_checkpoint_saved(session, imds):
    run = session.train(
        code=TRAIN,
        params={**PARAMS, "steps": 400},
        options=_options(imds, max_interruptions=0),
        detach=True,
    )
    _wait_step(session, run.id, 3)
    imds.rebalance_notice()
    row = _wait_ended(session, run.id)
    assert (row["status"], row["reason"], row["attempt"]) == ("stopped", "interrupted", 1)
    events = session.store.events(run.id)
    assert [e["kind"] for e in events if e["type"] == "interrupt"] == ["rebalance"]
    warning = next(e for e in events if e.get("code") == "max-interruptions")
    assert f"runctl resume {run.id}" in warning["message"]
    checkpoints = session.store.checkpoints(run.id)
    assert checkpoints and checkpoints[-1]["step"] == row["last_step"]


def test_no_endpoint_means_no_polling_on_the_local_backend(session, imds):
    imds.spot_notice()  # served from the start, but a local run does not look by default
    run = session.train(code=TRAIN, params={**PARAMS, "steps": 8, "delay": 0.02}, detach=True)
    row = _wait_ended(session, run.id)
    assert (row["status"], row["attempt"]) == ("succeeded", 1)
    assert imds.token_puts == 0 and imds.authorized_gets == 0


def test_max_interruptions_bounds_automatic_resumes_and_a_manual_resume_starts_over(session, imds):
    params = {**PARAMS, "steps": 400, "delay": 0.02}
    run = session.train(
        code=TRAIN, params=params, options=_options(imds, max_interruptions=1), detach=True
    )
    _wait_step(session, run.id, 3)
    imds.spot_notice(time="2026-11-29T02:00:00Z")
    _wait_attempt_running(session, run.id, 2)
    step = session.store.get(run.id)["last_step"]
    _wait_step(session, run.id, step + 3)
    imds.spot_notice(time="2026-11-29T02:10:00Z")  # a second, different notice
    row = _wait_ended(session, run.id)
    assert (row["status"], row["reason"], row["attempt"]) == ("stopped", "interrupted", 2)

    session.resume(run.id, detach=True)  # by hand: the bound counts again from here
    _wait_attempt_running(session, run.id, 3)
    step = session.store.get(run.id)["last_step"]
    _wait_step(session, run.id, step + 3)
    imds.spot_notice(time="2026-11-29T02:20:00Z")
    _wait_attempt_running(session, run.id, 4)
    session.stop(run.id)
    row = _wait_ended(session, run.id)
    assert (row["status"], row["reason"], row["attempt"]) == ("stopped", "user", 4)
    interrupts = [e["attempt"] for e in session.store.events(run.id) if e["type"] == "interrupt"]
    assert interrupts == [1, 2, 3]
    steps = [s for s, _ in session.store.metrics(run.id)["w"]]
    assert steps == list(range(len(steps)))  # four attempts, not a step missing


def _wait_attempt_running(session, run_id: str, attempt: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        session.store.refresh(run_id)
        row = session.store.get(run_id)
        if row["attempt"] == attempt and row["status"] == "running" and row["last_step"]:
            return
        time.sleep(0.02)
    raise AssertionError(f"run {run_id} is not running attempt {attempt}")


ON_STOP = """
import time
saved = runctl.load_checkpoint()
start = saved["step"] + 1 if saved else 0
if saved:
    print(f"resumed at {start}", flush=True)
runctl.on_stop(lambda: runctl.save_checkpoint({"step": step}, step=step))
for step in range(start, 300):
    runctl.log(step=step, loss=1.0 / (step + 1))
    time.sleep(0.02)
    if runctl.should_stop:
        break
    if step == start + 5 and saved:
        break  # attempt 2: enough
"""


def test_on_stop_callback_saves_on_a_notice_and_the_next_attempt_loads_it(session, imds):
    run = session.train(code=ON_STOP, options=_options(imds), detach=True)
    _wait_step(session, run.id, 5)
    imds.spot_notice()
    row = _wait_ended(session, run.id)
    assert (row["status"], row["attempt"]) == ("succeeded", 2)
    (ckpt,) = [e for e in session.store.events(run.id) if e["type"] == "checkpoint"]
    assert ckpt["attempt"] == 1
    log = (session.store.run_dir(run.id) / "stdout.log").read_text()
    assert f"resumed at {ckpt['step'] + 1}" in log and "=== attempt 2 ===" in log


def test_imds_poller_speaks_imdsv2_and_renews_an_expired_token(imds):
    from runctl_jupyter.agent.spot import EC2_IMDS, ImdsPoller, endpoint_for

    poller = ImdsPoller(imds.url)
    assert poller.check() == []  # 404 on both paths: no notice
    imds.spot_notice(action="stop", time="2026-11-29T02:30:00Z")
    imds.rebalance_notice(time="2026-11-29T02:29:00Z")
    found = {n["kind"]: n for n in poller.check()}
    assert (found["spot"]["action"], found["spot"]["action_time"]) == (
        "stop",
        "2026-11-29T02:30:00Z",
    )
    assert found["rebalance"]["action_time"] == "2026-11-29T02:29:00Z"
    assert imds.token_puts == 1  # one token for every request
    imds.tokens.clear()  # the token expires: 401, then a new token, once
    assert len(poller.check()) == 2 and imds.token_puts == 2

    assert endpoint_for({"backend": "local"}) is None
    assert endpoint_for({"backend": "aws"}) == EC2_IMDS
    assert (
        endpoint_for({"backend": "local", "options": {"imds_endpoint": imds.url + "/"}}) == imds.url
    )


EXEC_WITH_PENDING_STOP = """
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
os.kill(os.getpid(), signal.SIGTERM)  # a Stop that arrives while the next agent starts
os.execv(sys.executable, [sys.executable, "-m", "runctl_jupyter.agent", sys.argv[1], "--attempt", "1"])
"""


def test_a_stop_sent_while_the_next_attempt_execs_is_kept_not_fatal(tmp_path):
    import subprocess
    import sys

    from agent_helpers import agent_env, events_of, exit_event, make_run_dir

    run_dir = make_run_dir(
        tmp_path,
        "import time\nfor i in range(200):\n    runctl.log(step=i, x=i)\n    time.sleep(0.05)\n",
    )
    proc = subprocess.run(
        [sys.executable, "-c", EXEC_WITH_PENDING_STOP, str(run_dir)],
        env=agent_env(),
        timeout=30,
        capture_output=True,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the agent's "not succeeded"
    final = exit_event(events_of(run_dir))
    assert (final["status"], final["reason"]) == ("stopped", "user")


FAILS_ON_STOP = """
import time
for step in range(500):
    runctl.log(step=step, x=float(step))
    time.sleep(0.02)
    if runctl.should_stop:
        raise RuntimeError("could not save the model on the way out")
"""


def test_code_that_fails_while_stopping_for_a_notice_is_failed_not_resumed(session, imds):
    run = session.train(code=FAILS_ON_STOP, options=_options(imds), detach=True)
    _wait_step(session, run.id, 3)
    imds.spot_notice()
    row = _wait_ended(session, run.id)
    assert (row["status"], row["reason"], row["attempt"]) == ("failed", "exception", 1)
    assert row["error"]["message"] == "could not save the model on the way out"
