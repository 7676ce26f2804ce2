"""`runctl.load_model(...)` in a run on an AWS instance (the played instance of the SSM
fixture): a model registered by an earlier run and promoted here is published to S3,
fetched by the agent before the attempt through the run's own role (which may read only
its owner's and project's models), and its sha256 checked before the code gets it."""

from __future__ import annotations

from pathlib import Path

import iam_eval
import pytest
from traitlets.config import Config

from runctl_jupyter.aws import policy
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunFailed
from runctl_jupyter.session import Session

LOAD = (
    "m = runctl.load_model('digits', alias='production')\nprint('loaded on the instance', m['w'])\n"
)


def _session(tmp_path: Path) -> Session:
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.backend = "aws"
    cfg.Runctl.project = "digits-proj"
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    return Session(config=Runctl(config=cfg))


def test_a_run_on_the_instance_loads_a_model_an_earlier_run_registered(
    aws, instance, tmp_path: Path
):
    setup(aws)
    session = _session(tmp_path)
    earlier = session.train(
        code="runctl.register_model({'w': [1, 2, 3]}, 'digits')\n", backend="local"
    )
    assert session.store.get(earlier.id)["status"] == "succeeded"
    said = str(session.models("promote", "digits", 1, alias="production"))
    assert "published digits (1 version(s))" in said, said
    run = session.train(code=LOAD, backend="aws", options={"instance_type": "t3.micro"})
    assert session.store.get(run.id)["status"] == "succeeded"
    assert "loaded on the instance [1, 2, 3]" in str(session.logs(run.id))

    # the published artifact changed in S3: the instance refuses it, and says why
    bucket = policy.bucket_name("123456789012", "us-east-1")
    keys = [
        o["Key"]
        for o in aws.s3.list_objects_v2(Bucket=bucket, Prefix="runctl/models/")["Contents"]
        if "/artifacts/" in o["Key"]
    ]
    assert len(keys) == 1 and "/digits-proj/digits/artifacts/000001/" in keys[0]
    aws.s3.put_object(Bucket=bucket, Key=keys[0], Body=b"not the registered model")
    with pytest.raises(RunFailed, match="changed since it was registered"):
        session.train(code=LOAD, backend="aws", options={"instance_type": "t3.micro"})


def test_a_model_an_aws_run_registers_becomes_a_version_here(aws, instance, tmp_path: Path):
    setup(aws)
    session = _session(tmp_path)
    run = session.train(
        code="runctl.register_model({'w': [4, 5]}, 'digits')\n",
        backend="aws",
        options={"instance_type": "t3.micro"},
    )
    assert session.store.get(run.id)["status"] == "succeeded"
    shown = str(session.models("show", "digits"))
    assert run.id in shown, shown
    from runctl_jupyter.registry import Registry

    entry = Registry(session.store.home).get("digits")
    assert entry["run_id"] == run.id and Path(entry["artifact"]).is_relative_to(
        session.store.run_dir(run.id)
    )
    assert Registry(session.store.home).load("digits") == {"w": [4, 5]}


def test_a_run_role_reads_only_its_owner_and_project_models():
    doc = policy.run_policy("runctl-123456789012-us-east-1")
    tags = {"aws:principaltag/runctl:owner": "ann", "aws:principaltag/runctl:project": "p1"}
    obj = "arn:aws:s3:::runctl-123456789012-us-east-1/runctl/models/{}/{}/digits/versions/1.json"

    def may(owner: str, project: str) -> bool:
        ctx = iam_eval.Context("s3:GetObject", obj.format(owner, project), dict(tags))
        return iam_eval.decide([doc], ctx) == "Allow"

    assert may("ann", "p1")
    assert not may("bob", "p1") and not may("ann", "p2")
    write = iam_eval.Context("s3:PutObject", obj.format("ann", "p1"), dict(tags))
    assert iam_eval.decide([doc], write) != "Allow"  # it reads models, never writes them
