"""A blocking wait shows the run from its first event, even when the store had
already folded some (the panel is built slowly in a fresh kernel, `%runctl runs`
ran in between, or it is an attach)."""

from __future__ import annotations

import time

CODE = """import time
for step in range(30):
    runctl.log(step=step, loss=1.0 / (step + 1))
time.sleep(1.5)
"""


class PanelLike:
    """The session's side of PanelView: records what it is given."""

    replays_history = True

    def __init__(self):
        self.steps: list[int] = []

    def update(self, row, events):
        self.steps += [e["step"] for e in events if e.get("type") == "metric"]

    def idle(self, seconds):
        time.sleep(seconds)

    def finish(self, row, metrics):
        pass


def test_the_live_view_gets_the_metrics_an_earlier_refresh_folded(session, monkeypatch):
    run = session.train(code=CODE, name="early", detach=True)
    deadline = time.monotonic() + 30
    while session.store.get(run.id)["last_step"] != 29:  # folded before anyone watches
        assert time.monotonic() < deadline, session.store.get(run.id)
        session.store.refresh(run.id)
        time.sleep(0.05)
    view = PanelLike()
    monkeypatch.setattr(session, "_live_view", lambda r: view)
    session.wait(session.run(run.id))
    assert sorted(set(view.steps)) == list(range(30))
