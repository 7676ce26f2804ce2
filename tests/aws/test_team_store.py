"""The team store (docs/teams.md), for real: two IAM users with their own access keys
(their S3 requests judged by their own policies, `team_keys.member_statements`, in the
strict layer), one moto server, one bucket, two RUNCTL_HOMEs. Each member's local runs
are published by their agent with their own credentials; each sees the other's runs
and metrics after a pull; a second pull lists and fetches only what is new.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from traitlets.config import Config

from runctl_jupyter import team_keys
from runctl_jupyter.aws.setup import setup
from runctl_jupyter.config import Runctl
from runctl_jupyter.errors import RunctlError
from runctl_jupyter.session import Session

TEAM = "vision"  # the team fixture gives each test its own
_teams = itertools.count(1)
CODE = "for i in range(3):\n    runctl.log(step=i, loss=1.0 / (i + 1), acc=i / 2)\n"


def _until(check: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    end = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.2)


@pytest.fixture
def team(aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The bucket, and two IAM users (alice, bob) with the member policy and their own
    keys, as named profiles of a credentials file (the agent uses the same chain). Each
    test has its own team name: moto's reset keeps the bucket's name, and a local agent of
    an earlier test still giving up its last publish must not land in this test's team."""
    monkeypatch.setattr(sys.modules[__name__], "TEAM", f"vision-{next(_teams)}")
    bucket = setup(aws).bucket
    profiles = []
    for name in ("alice", "bob"):
        aws.iam.create_user(UserName=name)
        policy = {"Version": "2012-10-17", "Statement": team_keys.member_statements(bucket, TEAM, name)}  # fmt: skip
        aws.iam.put_user_policy(
            UserName=name, PolicyName="runctl-team", PolicyDocument=json.dumps(policy)
        )
        key = aws.iam.create_access_key(UserName=name)["AccessKey"]
        profiles.append(
            f"[{name}]\naws_access_key_id = {key['AccessKeyId']}\n"
            f"aws_secret_access_key = {key['SecretAccessKey']}\n"
        )
    creds = tmp_path / "credentials"
    creds.write_text("\n".join(profiles))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    return bucket


def _member(tmp_path: Path, name: str, beat: float | None = None) -> Session:
    cfg = Config()
    if beat is not None:
        cfg.Runctl.team_beat_seconds = beat
    cfg.Runctl.home = str(tmp_path / f"home-{name}")
    cfg.Runctl.owner = name
    cfg.Runctl.team = TEAM
    cfg.AWSBackend.profile = name
    return Session(config=Runctl(config=cfg))


def _as(name: str) -> Any:
    return boto3.Session(profile_name=name).client("s3")


def _published(bucket: str, name: str, run_id: str) -> Callable[[], bool]:
    """The run's last index entry (the exit's, written after its summary) is in the store."""

    def check() -> bool:
        s3 = _as(name)
        listed = s3.list_objects_v2(Bucket=bucket, Prefix=team_keys.index_prefix(TEAM, name))
        keys = sorted(o["Key"] for o in listed.get("Contents", []) if o["Key"].endswith(f"-{run_id}.json"))  # fmt: skip
        if not keys:
            return False
        body = s3.get_object(Bucket=bucket, Key=keys[-1])["Body"].read()
        return json.loads(body)["status"] == "succeeded"

    return check


def _count_calls(session: Session) -> Counter:
    calls: Counter = Counter()
    s3 = session.backend("aws").clients.s3

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    s3.meta.events.register("before-call.s3.*", count)
    return calls


def test_each_member_sees_the_others_runs_and_metrics_after_a_pull(team: str, tmp_path: Path):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    run_a = alice.train(code=CODE, experiment="detr", project="detr", params={"lr": 0.1})
    run_b = bob.train(code=CODE, experiment="seg", project="seg", params={"lr": 0.2})
    _until(_published(team, "alice", run_a.id), what="alice's run published")
    _until(_published(team, "bob", run_b.id), what="bob's run published")

    bob.team.pull(force=True, wait=60)
    rows = {r["id"]: r for r in bob.runs(owner="all", limit=None).rows}
    assert set(rows) == {run_a.id, run_b.id}
    theirs = rows[run_a.id]
    assert (theirs["owner"], theirs["project"], theirs["status"]) == ("alice", "detr", "succeeded")
    assert theirs["final_metrics"] == {"loss": pytest.approx(1 / 3), "acc": 1.0}
    assert theirs["params"] == {"lr": 0.1}
    assert [r["id"] for r in bob.runs(owner="alice").rows] == [run_a.id]
    assert [r["id"] for r in bob.runs(owner="all", project="seg").rows] == [run_b.id]
    assert [r["id"] for r in bob.runs().rows] == [run_b.id]  # no --owner: this home's runs
    listed = str(bob.runs(owner="all")).splitlines()  # what `runctl runs --owner all` prints
    assert listed[0].split()[:3] == ["id", "name", "owner"]
    assert any(line.startswith(run_a.id) and " alice " in line for line in listed)

    alice.team.pull(force=True, wait=60)
    assert [r["owner"] for r in alice.runs(owner="bob").rows] == ["bob"]

    # metrics of a teammate's run: fetched from its event chunks on demand, then cached
    bob.compare([f"alice/{run_a.id[:6]}", f"bob/{run_b.id[:6]}"])
    assert bob.store.metrics(run_a.id)["acc"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    calls = _count_calls(bob)
    bob.compare([f"alice/{run_a.id[:6]}", run_b.id])
    assert calls["GetObject"] == 0, calls  # nothing new: no chunk fetched again


def test_a_teammates_live_run_is_listed_live_and_only_its_owner_stops_it(team: str, tmp_path: Path):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    code = (
        "import time\nfor i in range(600):\n    runctl.log(step=i, loss=1.0)\n    time.sleep(0.2)\n"
    )
    run = alice.train(code=code, experiment="long", detach=True)

    def status_bob_sees() -> str:
        bob.team.pull(force=True, wait=30)
        rows = bob.runs(owner="alice").rows
        return rows[0]["status"] if rows else ""

    _until(lambda: status_bob_sees() == "running", what="bob seeing alice's run running")
    with pytest.raises(RunctlError, match="alice's"):
        bob.stop(f"alice/{run.id}")  # a teammate's run: read-only here
    alice.stop(run.id)
    _until(lambda: status_bob_sees() == "stopped", what="bob seeing it stopped")


def test_a_teammates_run_whose_agent_is_killed_is_listed_lost_when_its_beats_stop(
    team: str, tmp_path: Path
):
    """A live run's agent puts an index entry every beat (here 2 s) with no status
    change, so Bob sees it running past 3 beats; killed with SIGKILL, it stops beating
    and Bob's listing shows it lost (reason heartbeat) 3 beats after its last entry."""
    alice, bob = _member(tmp_path, "alice", beat=2.0), _member(tmp_path, "bob")
    code = "import time\nfor i in range(300):\n    runctl.log(step=i, loss=1.0)\n    time.sleep(0.2)\n"  # fmt: skip
    run = alice.train(code=code, experiment="long", detach=True)

    def seen_by_bob() -> dict:
        bob.team.pull(force=True, wait=30)
        rows = bob.runs(owner="alice").rows
        return rows[0] if rows else {}

    def entries() -> int:
        listed = _as("alice").list_objects_v2(Bucket=team, Prefix=team_keys.index_prefix(TEAM, "alice"))  # fmt: skip
        return listed["KeyCount"]

    _until(lambda: seen_by_bob().get("status") == "running", what="bob seeing it running")
    first = entries()
    _until(lambda: entries() >= first + 4, what="the agent's beats")  # 4 beats: 8 s
    assert seen_by_bob()["status"] == "running"  # beating: alive past 3 beats
    agent = json.loads((alice.store.run_dir(run.id) / "agent.json").read_text())["pid"]
    os.kill(agent, signal.SIGKILL)
    lost = _until(lambda: seen_by_bob().get("status") == "lost" and seen_by_bob(), what="lost")
    assert (lost["id"], lost["reason"]) == (run.id, "heartbeat")
    ended = entries()
    time.sleep(3)
    assert entries() == ended  # nobody beats for a dead agent


def test_a_second_pull_lists_and_fetches_only_new_keys(team: str, tmp_path: Path):
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    first = [alice.train(code=CODE, experiment="detr") for _ in range(2)]
    for run in first:
        _until(_published(team, "alice", run.id), what="alice's runs published")
    calls = _count_calls(bob)
    report = bob.team.pull(force=True, wait=60)
    assert report.gets == 2 and calls["GetObject"] == 2, calls  # each run's newest entry
    assert calls["ListObjectsV2"] == 2  # the team's owners, then alice's index

    calls.clear()
    report = bob.team.pull(force=True, wait=60)
    assert (report.gets, report.rows) == (0, 0)
    assert calls["GetObject"] == 0 and calls["ListObjectsV2"] == 2, calls

    third = alice.train(code=CODE, experiment="detr")
    _until(_published(team, "alice", third.id), what="the third run published")
    calls.clear()
    report = bob.team.pull(force=True, wait=60)
    assert calls["GetObject"] == 1 and report.rows == 1, calls
    assert len(bob.runs(owner="alice").rows) == 3


def test_a_member_writes_only_under_their_own_owner_prefix(team: str):
    alice = _as("alice")
    own = team_keys.owner_prefix(TEAM, "alice") + "note.json"
    alice.put_object(Bucket=team, Key=own, Body=b"{}")
    bobs = team_keys.owner_prefix(TEAM, "bob") + "note.json"
    with pytest.raises(ClientError) as caught:
        alice.put_object(Bucket=team, Key=bobs, Body=b"{}")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    _as("bob").get_object(Bucket=team, Key=own)  # members read the whole team
    with pytest.raises(ClientError):
        alice.list_objects_v2(Bucket=team, Prefix="runctl/")  # not the team's
    with pytest.raises(ClientError):
        _as("bob").list_objects_v2(Bucket=team, Prefix="teams/other/")


def test_a_bad_team_or_owner_name_is_refused_before_anything_is_written(tmp_path: Path):
    with pytest.raises(Exception, match="cannot name an S3 prefix"):
        Runctl(team="a/b")
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.team = TEAM
    cfg.Runctl.owner = "ann smith"
    session = Session(config=Runctl(config=cfg))
    with pytest.raises(RunctlError, match="IAM identity"):  # in a team the owner is IAM's
        session.train(code=CODE)
    assert list((tmp_path / "home" / "runs").iterdir()) == []


def test_a_runs_own_role_publishes_only_its_run_under_its_owners_team_prefix(aws):
    """An AWS run's agent publishes with the run's own role: its `runctl:team-prefix`
    tag (backends/aws.py) lets it write its own run's keys under its owner's prefix."""
    from test_reach import _as_instance, _instance

    from runctl_jupyter.aws import run_role, tags

    bucket = setup(aws).bucket
    alice = team_keys.owner_prefix(TEAM, "alice")
    run_tags = tags.run_tags("runa", "alice", "p", **{tags.TEAM_PREFIX: alice})
    s3 = _as_instance(aws, _instance(aws, "runa", run_role.create(aws, run_tags, bucket)), "s3")
    s3.put_object(Bucket=bucket, Key=team_keys.run_prefix(TEAM, "alice", "runa") + "summary.json", Body=b"{}")  # fmt: skip
    s3.put_object(Bucket=bucket, Key=team_keys.index_key(TEAM, "alice", 1, "runa"), Body=b"{}")
    for key in (
        team_keys.index_key(TEAM, "alice", 2, "runb"),  # another run's entry
        team_keys.run_prefix(TEAM, "alice", "runb") + "summary.json",
        team_keys.run_prefix(TEAM, "bob", "runa") + "summary.json",  # another owner's
        team_keys.index_key("other", "alice", 3, "runa"),  # another team's
    ):
        with pytest.raises(ClientError) as caught:
            s3.put_object(Bucket=bucket, Key=key, Body=b"{}")
        assert caught.value.response["Error"]["Code"] == "AccessDenied", key


def _aws_members(team: str, tmp_path: Path) -> tuple[Session, Session]:
    """Alice and Bob holding `runctl aws policy` (over 6,144 characters: attached in
    parts) besides their team statements, their AWS backends polling fast."""
    from test_team_iam import _parts

    from runctl_jupyter.aws.clients import Clients
    from runctl_jupyter.aws.user_policy import user_policy

    admin = Clients(region="us-east-1")
    for part, doc in enumerate(_parts(user_policy("123456789012", "us-east-1", team))):
        arn = admin.iam.create_policy(
            PolicyName=f"runctl-user-{part}", PolicyDocument=json.dumps(doc)
        )["Policy"]["Arn"]
        for name in ("alice", "bob"):
            admin.iam.attach_user_policy(UserName=name, PolicyArn=arn)
    alice, bob = _member(tmp_path, "alice"), _member(tmp_path, "bob")
    for session in (alice, bob):
        session.backend("aws").aws_poll = 0.1
        session.backend("aws").fast_poll = 0.2
    return alice, bob


def test_an_aws_run_is_published_by_its_own_role_and_a_teammate_sees_it(
    team: str, instance, tmp_path: Path
):
    """Alice (the runctl user policy and her team statements) trains on the played
    instance; its agent publishes with the run's own role; Bob's pull lists it and his
    compare reads its metrics from the run's S3 chunks (runctl/runs/<id>/events/)."""
    alice, bob = _aws_members(team, tmp_path)
    run = alice.train(
        code=CODE, project="detr", backend="aws", options={"instance_type": "t3.micro"}
    )
    assert alice.store.get(run.id)["status"] == "succeeded"
    _until(_published(team, "alice", run.id), what="the AWS run published by its role")
    bob.team.pull(force=True, wait=60)
    (row,) = bob.runs(owner="alice").rows
    assert (row["id"], row["status"], row["backend"]) == (run.id, "succeeded", "aws")
    bob.compare([f"alice/{run.id[:6]}"])
    assert bob.store.metrics(run.id)["acc"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    chunks = _as("bob").list_objects_v2(Bucket=team, Prefix=team_keys.run_prefix(TEAM, "alice", run.id) + "events/")  # fmt: skip
    assert chunks["KeyCount"] == 0  # an AWS run's chunks are not uploaded twice


def test_a_kept_instances_run_is_published_by_its_owners_notebook(
    team: str, instance, tmp_path: Path
):
    """`--keep`: the instance serves one run after another with the shared
    `runctl-instance` role, which has no team rights (its agent's publish is refused
    and skipped); Alice's notebook publishes the run with her own credentials as it
    pulls its events, so Bob's pull lists its status and metrics."""
    alice, bob = _aws_members(team, tmp_path)
    run = alice.train(
        code=CODE,
        project="detr",
        backend="aws",
        options={"instance_type": "t3.micro", "keep": True},
    )
    assert alice.store.get(run.id)["status"] == "succeeded"
    from runctl_jupyter.aws.clients import Clients

    roles = [r["RoleName"] for r in Clients(region="us-east-1").iam.list_roles()["Roles"]]
    assert not any(r.startswith("runctl-run-") for r in roles), roles  # the shared role
    _until(_published(team, "alice", run.id), what="the kept run published by alice's notebook")
    bob.team.pull(force=True, wait=60)
    (row,) = bob.runs(owner="alice").rows
    assert (row["id"], row["status"], row["backend"]) == (run.id, "succeeded", "aws")
    assert row["final_metrics"] == {"loss": pytest.approx(1 / 3), "acc": 1.0}
    bob.compare([f"alice/{run.id[:6]}"])
    assert bob.store.metrics(run.id)["acc"] == [(0, 0.0), (1, 0.5), (2, 1.0)]
    summary = _as("bob").get_object(Bucket=team, Key=team_keys.run_prefix(TEAM, "alice", run.id) + "summary.json")  # fmt: skip
    assert json.loads(summary["Body"].read())["beat"] is None  # the notebook's: no beat
    logs = [p.read_text() for p in (tmp_path / "instance-sandbox").rglob("agent.log")]
    assert any("not published to the team" in log and "AccessDenied" in log for log in logs), logs


def test_one_member_policy_for_everyone_with_the_username_variable(aws):
    """`member_statements(owner="${aws:username}")`: each IAM user writes under the owner
    prefix of their own user name only."""
    bucket = setup(aws).bucket
    statements = team_keys.member_statements(bucket, TEAM, team_keys.USERNAME_VARIABLE)
    clients = {}
    for name in ("carol", "dave"):
        aws.iam.create_user(UserName=name)
        aws.iam.put_user_policy(
            UserName=name,
            PolicyName="runctl-team",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
        key = aws.iam.create_access_key(UserName=name)["AccessKey"]
        clients[name] = boto3.client(
            "s3",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )
    carol = clients["carol"]
    carol.put_object(Bucket=bucket, Key=team_keys.owner_prefix(TEAM, "carol") + "x", Body=b"{}")
    with pytest.raises(ClientError) as caught:
        carol.put_object(Bucket=bucket, Key=team_keys.owner_prefix(TEAM, "dave") + "x", Body=b"{}")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    listed = clients["dave"].list_objects_v2(Bucket=bucket, Prefix=team_keys.team_prefix(TEAM))
    assert listed["KeyCount"] == 1
