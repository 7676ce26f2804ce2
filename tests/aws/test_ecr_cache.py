"""`c.AWSBackend.ecr_repository`: a Dockerfile's image cached in ECR by its digest.

Real parts: the agent's own code (agent/container.py, agent/ecr.py) with a real rootful
podman (tests/container_runtime.py), moto on 127.0.0.1 for the ECR API (with the strict
layer), and a real registry for the images: Debian's `docker-registry` (the
distribution registry, .ci/run installs it) on a free 127.0.0.1 port, plain HTTP
(podman is told it is insecure by a test-only registries.conf, never by runctl's argv).

On AWS the ECR API and its registry are one service; here they are two, and the
fixture `ecr_registry` joins them, in moto's process:
- GetAuthorizationToken answers moto's token with the local registry as its
  proxyEndpoint (moto's is a fixed `https://ACCOUNT.dkr.ecr.REGION.amazonaws.com`);
- DescribeImages first copies the tags the registry holds for the repository into moto
  (each tag's manifest, as ECR records a pushed image), so a pushed image is found.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import strict_aws

from runctl_jupyter.agent import container, ecr
from runctl_jupyter.aws import ecr_repo, policy
from runctl_jupyter.aws import tags as tags_mod
from runctl_jupyter.aws.setup import setup

REPO = "runctl/image-cache"
REGION = "us-east-1"
MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json,"
    "application/vnd.docker.distribution.manifest.v2+json"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_registry(folder: Path, readonly: bool = False) -> tuple[subprocess.Popen, str]:
    """`docker-registry serve CONFIG` on a free 127.0.0.1 port; (process, host:port)."""
    binary = shutil.which("docker-registry")
    assert binary, "docker-registry is not installed (.ci/run: apt-get install docker-registry)"
    port = _free_port()
    folder.mkdir(parents=True, exist_ok=True)
    maintenance = "  maintenance:\n    readonly:\n      enabled: true\n" if readonly else ""
    (folder / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\n{maintenance}"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    proc = subprocess.Popen(
        [binary, "serve", str(folder / "config.yml")],
        stdout=open(folder / "registry.log", "wb"),
        stderr=subprocess.STDOUT,
        # the registry reads REGISTRY_* variables as its settings: not podman's REGISTRY_AUTH_FILE
        env={k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")},
    )
    host = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://{host}/v2/", timeout=2).read()
            return proc, host
        except OSError:
            time.sleep(0.1)
    proc.terminate()
    raise AssertionError(f"the registry did not start: {(folder / 'registry.log').read_text()}")


def _sync_tags(host: str, account: str, region: str, repository: str) -> None:
    """The registry's tags of `repository` recorded in moto (ECR's PutImage, done by the
    registry on AWS), with each tag's manifest."""
    from moto.ecr.models import ecr_backends

    backend = ecr_backends[account][region]
    if repository not in backend.repositories:
        return
    try:
        listed = json.load(urllib.request.urlopen(f"http://{host}/v2/{repository}/tags/list"))
    except OSError:
        return
    known = {t for i in backend.repositories[repository].images for t in (i.image_tags or [])}
    for tag in listed.get("tags") or []:
        if tag in known:
            continue
        req = urllib.request.Request(
            f"http://{host}/v2/{repository}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}
        )
        with urllib.request.urlopen(req) as answer:
            manifest = answer.read().decode()
            media = answer.headers.get("Content-Type")
        backend.put_image(repository, manifest, tag, media)


@pytest.fixture
def ecr_registry(aws, podman, tmp_path, monkeypatch):
    """A started registry joined to moto's ECR API (see the module's doc); podman's
    auth file and registries.conf are the test's. Yields a dict: host, start(readonly)."""
    from moto.ecr.responses import ECRResponse

    state: dict = {"procs": []}

    def start(readonly: bool = False) -> str:
        proc, host = _start_registry(tmp_path / f"registry-{len(state['procs'])}", readonly)
        state["procs"].append(proc)
        state["host"] = host
        conf = tmp_path / f"registries-{len(state['procs'])}.conf"
        conf.write_text(f'[[registry]]\nlocation = "{host}"\ninsecure = true\n')
        monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(conf))
        return host

    original_token = ECRResponse.get_authorization_token
    original_describe = ECRResponse.describe_images

    def get_authorization_token(self):  # type: ignore[no-untyped-def]
        result = original_token(self)
        for data in result.result["authorizationData"]:
            data["proxyEndpoint"] = f"http://{state['host']}"
        return result

    def describe_images(self):  # type: ignore[no-untyped-def]
        repository = self._get_param("repositoryName")
        if state.get("host") and isinstance(repository, str):
            _sync_tags(state["host"], self.current_account, self.region, repository)
        return original_describe(self)

    monkeypatch.setattr(ECRResponse, "get_authorization_token", get_authorization_token)
    monkeypatch.setattr(ECRResponse, "describe_images", describe_images)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(tmp_path / "auth.json"))
    state["start"] = start
    yield state
    for proc in state["procs"]:
        proc.terminate()
        proc.wait(timeout=30)


def _run_dir(tmp_path: Path, dockerfile: Path, name: str) -> tuple[Path, dict]:
    """A run folder as the bundle leaves it on the instance: image/ and the spec."""
    run_dir = tmp_path / name
    shutil.copytree(dockerfile.parent, run_dir / container.IMAGE_FOLDER)
    spec = {
        "run_id": name,
        "options": {"image_build": {"dockerfile": "Dockerfile"}, "container_runtime": "podman"},
        "sync": {"kind": "s3", "region": REGION, "ecr_repository": REPO},
    }
    return run_dir, spec


def _forget(*images: str) -> None:
    """The images gone from podman's storage: a fresh instance."""
    subprocess.run(["podman", "rmi", "--force", *images], capture_output=True)


def test_the_first_run_builds_and_pushes_the_next_instance_pulls(
    aws, ecr_registry, dockerfile, tmp_path
):
    setup(aws, ecr_repository=REPO)  # creates the repository
    host = ecr_registry["start"]()
    run_dir, spec = _run_dir(tmp_path, dockerfile, "r1")
    said: list[str] = []
    tag = container.prepare_image(spec, run_dir, say=said.append)
    digest = container.context_digest(run_dir / "image")[:32]
    assert tag == f"{container.BUILD_REPO}:{digest}"
    log = (run_dir / container.BUILD_LOG).read_text()
    assert f"ECR {REPO}:{digest} not found: building" in log
    assert "$ podman build" in log and f"pushed {host}/{REPO}:{digest} to ECR" in log
    assert f"$ podman login --username AWS --password-stdin {host}" in log
    assert "123456789012-auth-token" not in log  # moto's password: stdin only
    assert said == []  # nothing to warn about
    listed = json.load(urllib.request.urlopen(f"http://{host}/v2/{REPO}/tags/list"))
    assert listed["tags"] == [digest]  # really in the registry
    found = aws.client("ecr").describe_images(repositoryName=REPO, imageIds=[{"imageTag": digest}])
    assert found["imageDetails"][0]["imageTags"] == [digest]

    _forget(tag, f"{host}/{REPO}:{digest}")  # a fresh instance: no image here
    run_dir2, spec2 = _run_dir(tmp_path, dockerfile, "r2")
    assert container.prepare_image(spec2, run_dir2, say=said.append) == tag
    log2 = (run_dir2 / container.BUILD_LOG).read_text()
    assert "$ podman build" not in log2 and "STEP" not in log2  # no build happened
    assert f"$ podman pull {host}/{REPO}:{digest}" in log2
    assert f"pulled {host}/{REPO}:{digest} from ECR: not built" in log2
    assert subprocess.run(["podman", "image", "exists", tag]).returncode == 0
    out = subprocess.run(
        ["podman", "run", "--rm", "--network", "none", tag, "python3", "-c",
         "print(open('/opt/built').read())"],
        capture_output=True, text=True,
    )
    assert out.stdout.strip() == "built", out.stderr  # the pulled image is the built one
    assert said == []
    _forget(tag, f"{host}/{REPO}:{digest}")


def test_a_missing_repository_is_one_warning_and_the_image_is_built(
    aws, ecr_registry, dockerfile, tmp_path
):
    ecr_registry["start"]()
    run_dir, spec = _run_dir(tmp_path, dockerfile, "r3")
    (run_dir / "image" / "extra.txt").write_text("another digest\n")
    said: list[str] = []
    tag = container.prepare_image(spec, run_dir, say=said.append)
    assert subprocess.run(["podman", "image", "exists", tag]).returncode == 0
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith(f"runctl: warning: ECR repository {REPO} does not exist")
    assert "building the image here" in said[0]
    assert "$ podman build" in (run_dir / container.BUILD_LOG).read_text()
    _forget(tag)


def test_a_failed_push_is_a_warning_and_the_run_goes_on(aws, ecr_registry, dockerfile, tmp_path):
    ecr_repo.ensure(aws, REPO)
    host = ecr_registry["start"](readonly=True)  # logins work, pushes are refused
    run_dir, spec = _run_dir(tmp_path, dockerfile, "r4")
    (run_dir / "image" / "extra.txt").write_text("a third digest\n")
    said: list[str] = []
    tag = container.prepare_image(spec, run_dir, say=said.append)
    assert subprocess.run(["podman", "image", "exists", tag]).returncode == 0
    assert len(said) == 1 and "\n" not in said[0]
    assert said[0].startswith("runctl: warning: the image was not cached in ECR: podman push failed")
    log = (run_dir / container.BUILD_LOG).read_text()
    assert "$ podman build" in log and "pushed" not in log
    _forget(tag, f"{host}/{REPO}:{tag.rsplit(':', 1)[1]}")


def test_setup_creates_the_repository_once_scanned_and_encrypted(aws):
    result = setup(aws, ecr_repository=REPO)
    assert any(REPO in line for line in result.created)
    repo = aws.client("ecr").describe_repositories(repositoryNames=[REPO])["repositories"][0]
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repo["encryptionConfiguration"]["encryptionType"] == "AES256"
    tags = aws.client("ecr").list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert {t["Key"]: t["Value"] for t in tags} == tags_mod.setup_tags()  # setup's tags
    again = setup(aws, ecr_repository=REPO)
    assert any(REPO in line for line in again.existing)  # an existing one is used as it is


def test_the_strict_layer_refuses_bad_ecr_requests(aws):
    from botocore.exceptions import ClientError

    client = aws.client("ecr")
    for bad in ("Upper", "trailing-", "x" * 257):  # (under 2: botocore refuses it itself)
        with pytest.raises(ClientError) as err:
            client.create_repository(repositoryName=bad)
        assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    with strict_aws.off():  # moto alone accepts a name over 256 (it checks the pattern only)
        client.create_repository(repositoryName="x" * 257)
    ecr_repo.ensure(aws, REPO)
    with pytest.raises(ClientError) as err:
        client.describe_images(repositoryName=REPO, imageIds=[{"imageTag": "t"}] * 101)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert strict_aws.REFUSED[-1][0] == "ecr_image_ids"


def test_the_roles_reach_that_repository_only(tmp_path):
    from iam_eval import Context, decide

    arn = f"arn:aws:ecr:{REGION}:123456789012:repository/{REPO}"
    other = f"arn:aws:ecr:{REGION}:123456789012:repository/someone-else"
    for document in (policy.run_policy("b", REPO), policy.instance_policy("b", REPO)):
        assert decide([document], Context("ecr:GetAuthorizationToken", "*")) == "Allow"
        for action in ("ecr:DescribeImages", "ecr:BatchGetImage", "ecr:PutImage",
                       "ecr:InitiateLayerUpload", "ecr:GetDownloadUrlForLayer"):
            assert decide([document], Context(action, arn)) == "Allow"
            assert decide([document], Context(action, other)) == "ImplicitDeny"
        assert decide([document], Context("ecr:DeleteRepository", arn)) == "ImplicitDeny"
    without = policy.run_policy("b")
    assert decide([without], Context("ecr:GetAuthorizationToken", "*")) == "ImplicitDeny"
    from runctl_jupyter.aws.user_policy import user_policy

    user = user_policy("123456789012", REGION, "b", REPO)
    assert decide([user], Context("ecr:CreateRepository", arn)) == "Allow"
    assert decide([user], Context("ecr:CreateRepository", other)) == "ImplicitDeny"


def test_the_settings_come_from_the_spec_s_sync(tmp_path):
    assert ecr.settings({"sync": {"ecr_repository": REPO, "region": "eu-west-1"}}) == (REPO, "eu-west-1")
    assert ecr.settings({"sync": {"region": "eu-west-1"}}) is None
    assert ecr.settings({}) is None


def test_an_aws_run_with_the_setting_pushes_its_build_from_the_instance(
    aws, instance, ecr_registry, dockerfile, tmp_path
):
    """The whole path: the config's setting reaches the bundle's spec, the played instance's
    agent builds and pushes with the run's own role."""
    from traitlets.config import Config

    from runctl_jupyter.config import Runctl
    from runctl_jupyter.session import Session

    setup(aws, ecr_repository=REPO)
    host = ecr_registry["start"]()
    instance.extra_env = {
        **{k: os.environ[k] for k in ("CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")},
        "CONTAINERS_REGISTRIES_CONF": os.environ["CONTAINERS_REGISTRIES_CONF"],
        "REGISTRY_AUTH_FILE": os.environ["REGISTRY_AUTH_FILE"],
        "PATH": f"{instance.bare_bin}:/usr/bin:/bin:/usr/sbin:/sbin",
    }
    (dockerfile.parent / "e2e.txt").write_text("a digest of its own\n")
    cfg = Config()
    cfg.Runctl.home = str(tmp_path / "home")
    cfg.Runctl.container_runtime = "podman"
    cfg.AWSBackend.ecr_repository = REPO
    cfg.AWSBackend.aws_poll = 0.1
    cfg.AWSBackend.fast_poll = 0.2
    session = Session(config=Runctl(config=cfg))
    run = session.train(
        code="print('in the image:', open('/opt/built').read())",
        backend="aws",
        options={"instance_type": "t3.micro", "image": str(dockerfile)},
    )
    assert session.store.get(run.id)["status"] == "succeeded", session.logs(run.id)
    assert "in the image: built" in str(session.logs(run.id))
    assert "warning" not in str(session.logs(run.id))
    played = list(instance.sandbox.glob(f"disk-*/runctl/runs/{run.id}/{container.BUILD_LOG}"))
    assert played, "the instance's build log"
    log = played[0].read_text()
    digest = container.context_digest(dockerfile.parent)[:32]
    assert f"pushed {host}/{REPO}:{digest} to ECR" in log
    # the instance's ECR calls were signed by its run's role and allowed by its policy
    # (the strict layer's iam_policy_allows_ecr evaluates them)
    assert set(strict_aws.INSTANCE_KEYS.values()) and not [
        r for r in strict_aws.REFUSED if r[0] == "iam_policy_allows_ecr"
    ]
    _forget(f"{container.BUILD_REPO}:{digest}", f"{host}/{REPO}:{digest}")
