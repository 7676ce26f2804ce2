"""`train(backend="aws")` through the session API, on the played instance."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.session import Session


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    return Session(config=Runctl(config=cfg))


def test_train_on_aws_through_the_session(aws, instance, tmp_path: Path):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code="for i in range(3):\n    runctl.log(step=i, acc=i / 2)\nprint('done on the instance')\n",
        params={"lr": 0.1},
        backend="aws",
        options={"instance_type": "t3.micro"},
    )
    row = session.store.get(run.id)
    assert row["status"] == "succeeded"
    # metrics reached the store through S3 chunks and the local mirror
    assert session.store.metrics(run.id)["acc"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    assert "done on the instance" in str(session.logs(run.id))
