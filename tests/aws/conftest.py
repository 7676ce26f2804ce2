"""AWS without AWS: a moto server on 127.0.0.1, and a fixture that plays the instance.

moto is extended in this process where it falls short of AWS:
- placement groups (not implemented): Create/Describe/DeletePlacementGroup kept here;
- `DescribeInstanceInformation` (moto has no SSM instance registry): every running
  EC2 instance is reported Online, as its SSM agent would be;
- SendCommand with InstanceIds and no Targets fans out to every instance in moto
  (a moto bug); here it goes to the instances named, as in AWS;
- command invocations start `Pending`; the instance fixture runs the script and
  records its real exit code, output and status;
- Session Manager's `StartSession` / `TerminateSession` (not implemented): answered as
  the SSM API reference says (SessionId, TokenValue, StreamUrl), sessions kept in
  SESSIONS (session id -> the request, and whether it was terminated).

And made stricter where it is lenient: strict_aws.py refuses, with AWS's error code,
status and message, the requests AWS refuses and moto accepts (docs/aws.md, "The
strict AWS layer"); it is installed with the extensions, for every test using moto.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_errors_inject import _Raw  # a raw HTTP body botocore reads an error from

REGION = "us-east-1"
FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
    "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",  # AmazonSSMManagedInstanceCore must exist
}
GPU_PARAM = (
    "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id"
)
CPU_PARAM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
ARM_CPU_PARAM = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64"


logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PLACEMENT_GROUPS: dict[str, dict[str, dict]] = {}  # region -> name -> group (moto has none)
SESSIONS: dict[str, dict] = {}  # Session Manager sessions (moto has none): id -> facts


def _ec2_error(code: str, message: str) -> Exception:
    from moto.ec2.exceptions import EC2ClientError

    return EC2ClientError(code, message)


def _strict():
    """The strict AWS layer (strict_aws.py), importable from tests/aws and from tests/."""
    try:
        import strict_aws
    except ImportError:
        from aws import strict_aws
    return strict_aws


def _extend_moto() -> None:
    from moto.core.responses import ActionResult
    from moto.ec2.models import ec2_backends
    from moto.ssm import models as ssm_models
    from moto.ssm.responses import SimpleSystemManagerResponse

    _strict().install(placement_groups=PLACEMENT_GROUPS)  # the strict AWS layer, always on
    if getattr(SimpleSystemManagerResponse, "_runctl_extended", False):
        return

    def describe_instance_information(self: SimpleSystemManagerResponse) -> ActionResult:
        backend = ec2_backends[self.current_account][self.region]
        wanted = None
        for f in self._get_param("Filters") or []:
            if f.get("Key") == "InstanceIds":
                wanted = set(f.get("Values", []))
        infos = []
        for reservation in backend.all_reservations():
            for inst in reservation.instances:
                if inst.state != "running" or (wanted is not None and inst.id not in wanted):
                    continue
                infos.append(
                    {
                        "InstanceId": inst.id,
                        "PingStatus": "Online",
                        "PlatformType": "Linux",
                        "AgentVersion": "3.3.0.0",
                        "ResourceType": "EC2Instance",
                    }
                )
        return ActionResult({"InstanceInformationList": infos})

    SimpleSystemManagerResponse.describe_instance_information = describe_instance_information

    original_targets = ssm_models.Command._get_instance_ids_from_targets

    def targets_only(self: ssm_models.Command) -> list[str]:
        return original_targets(self) if self.targets else []

    ssm_models.Command._get_instance_ids_from_targets = targets_only

    original_invocation = ssm_models.Command.invocation_response

    def pending(self: ssm_models.Command, instance_id: str, plugin_name: str) -> dict:
        inv = original_invocation(self, instance_id, plugin_name)
        inv.update(Status="Pending", StatusDetails="Pending", ResponseCode=-1)
        return inv

    ssm_models.Command.invocation_response = pending
    # moto has no placement groups: kept here per region (PLACEMENT_GROUPS, emptied with
    # every account reset), with their tags, as EC2 answers them.
    from moto.core.responses import EmptyResult
    from moto.ec2.responses import EC2Response

    def describe_placement_groups(self: EC2Response) -> ActionResult:
        groups = PLACEMENT_GROUPS.get(self.region, {})
        return ActionResult({"PlacementGroups": [dict(g) for g in groups.values()]})

    def create_placement_group(self: EC2Response) -> ActionResult:
        name = self._get_param("GroupName")
        groups = PLACEMENT_GROUPS.setdefault(self.region, {})
        if name in groups:
            raise _ec2_error("InvalidPlacementGroup.Duplicate", f"{name} already exists")
        tagged = self._parse_tag_specification().get("placement-group", {})
        groups[name] = {
            "GroupName": name,
            "GroupId": f"pg-{len(groups) + 1:017x}",
            "Strategy": self._get_param("Strategy"),
            "State": "available",
            "Tags": [{"Key": k, "Value": v} for k, v in tagged.items()],
        }
        return ActionResult({"PlacementGroup": dict(groups[name])})

    def delete_placement_group(self: EC2Response) -> ActionResult:
        name = self._get_param("GroupName")
        if PLACEMENT_GROUPS.get(self.region, {}).pop(name, None) is None:
            raise _ec2_error("InvalidPlacementGroup.Unknown", f"{name} is unknown")
        return EmptyResult()

    EC2Response.describe_placement_groups = describe_placement_groups
    EC2Response.create_placement_group = create_placement_group
    EC2Response.delete_placement_group = delete_placement_group

    # Load only the AWS-managed policy runctl attaches: all ~1,300 take seconds per reset.
    from moto.iam import aws_managed_policies
    from moto.iam import models as iam_models

    wanted = {"AmazonSSMManagedInstanceCore"}
    data = {
        k: v
        for k, v in json.loads(aws_managed_policies.aws_managed_policies_data).items()
        if k in wanted
    }

    def few_policies(self: iam_models.IAMBackend) -> list:
        return [
            iam_models.AWSManagedPolicy.from_data(n, self.account_id, self.region_name, d)
            for n, d in data.items()
        ]

    iam_models.IAMBackend._init_aws_policies = few_policies
    _add_sessions(SimpleSystemManagerResponse)
    SimpleSystemManagerResponse._runctl_extended = True


def _add_sessions(response_class: Any) -> None:
    """StartSession and TerminateSession, answered as the SSM API reference shows
    (https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_StartSession.html):
    a session id that begins with the caller's name, a token, and the data channel's
    WebSocket URL. The strict layer has checked the request first (its StartSession rules)."""
    import secrets

    from moto.core.responses import ActionResult

    def start_session(self: Any) -> ActionResult:
        session_id = f"runctl-test-{secrets.token_hex(8)}"
        SESSIONS[session_id] = {
            "Target": self._get_param("Target"),
            "DocumentName": self._get_param("DocumentName"),
            "Parameters": self._get_param("Parameters"),
            "terminated": False,
        }
        return ActionResult(
            {
                "SessionId": session_id,
                "TokenValue": secrets.token_urlsafe(48),
                "StreamUrl": f"wss://ssmmessages.{self.region}.amazonaws.com/v1/data-channel/"
                f"{session_id}?role=publish_subscribe",
            }
        )

    def terminate_session(self: Any) -> ActionResult:
        session_id = self._get_param("SessionId")
        if session_id in SESSIONS:
            SESSIONS[session_id]["terminated"] = True
        return ActionResult({"SessionId": session_id})

    response_class.start_session = start_session
    response_class.terminate_session = terminate_session


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    saved = {k: os.environ.get(k) for k in [*FAKE_ENV, "AWS_ENDPOINT_URL", "AWS_PROFILE"]}
    os.environ.update(FAKE_ENV)
    os.environ.pop("AWS_PROFILE", None)
    from moto.server import ThreadedMotoServer

    _extend_moto()
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    os.environ["AWS_ENDPOINT_URL"] = url
    try:
        yield url
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _put_public_parameter(name: str, value: str) -> None:
    """Public `/aws/service/...` parameters cannot be written through the API."""
    from moto.ssm.models import Parameter, ssm_backends

    params = ssm_backends["123456789012"][REGION]._parameters
    params.latest_amis_loaded = True  # keep moto's own (unregistered) AMI ids out
    params[name].append(
        Parameter(
            account_id="123456789012",
            name=name,
            value=value,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=1764380000.0,
            version=1,
            data_type="aws:ec2:image",
        )
    )


@pytest.fixture
def aws(moto_server: str):
    """A clean moto account with the public AMI parameters registered; yields Clients."""
    return fresh_account(moto_server)


def fresh_account(moto_server: str):
    """Reset moto and register the public AMI parameters; Clients with `test_amis`
    (the fixture `aws`, and benchmarks/cold_start.py, which plays instances too)."""
    req = urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST")
    urllib.request.urlopen(req).read()
    PLACEMENT_GROUPS.clear()
    SESSIONS.clear()
    _strict().reset()
    from runctl_jupyter.aws.clients import Clients

    clients = Clients(region=REGION)
    amis = {}
    for param, name in [
        (GPU_PARAM, "dlami-gpu"),
        (CPU_PARAM, "al2023-x86"),
        (ARM_CPU_PARAM, "al2023-arm"),
    ]:
        image_id = clients.ec2.register_image(
            Name=name,
            Architecture="arm64" if "arm" in name else "x86_64",
            RootDeviceName="/dev/xvda",
            BlockDeviceMappings=[{"DeviceName": "/dev/xvda", "Ebs": {"VolumeSize": 8}}],
        )["ImageId"]
        _put_public_parameter(param, image_id)
        amis[name] = image_id
    clients.test_amis = amis  # type: ignore[attr-defined]
    clients.calls.clear()
    return clients


@pytest.fixture
def data_volume():
    """Makes a `--volume` the way a user opts one in: tagged runctl:managed=true and
    runctl:persistent=true (docs/aws.md, "Who can reach what")."""

    def make(clients: Any, zone: str, size: int = 1) -> str:
        opt_in = [
            {"Key": "runctl:managed", "Value": "true"},
            {"Key": "runctl:persistent", "Value": "true"},
        ]
        spec = [{"ResourceType": "volume", "Tags": opt_in}]
        return clients.ec2.create_volume(AvailabilityZone=zone, Size=size, TagSpecifications=spec)[
            "VolumeId"
        ]

    return make


@pytest.fixture
def aws_clients_env(aws):
    """The `aws` account, for code that makes its own clients from the environment."""
    return aws


class Fail:
    """Inject an AWS error at one API call through botocore's own event hooks.

    Make `service.Operation` fail with `code` (the first `times` calls, or always)."""

    def __init__(
        self,
        clients: Any,
        operation: str,
        code: str = "InternalError",
        times: int | None = None,
        skip: int = 0,
    ):
        self.skip = skip
        self.service, self.operation = operation.split(".")
        self.code = code
        self.times = times
        self.count = 0
        self.client = clients.client(self.service)
        self.event = (
            f"before-send.{self.client.meta.service_model.service_id.hyphenize()}.{self.operation}"
        )
        self.client.meta.events.register(self.event, self._answer)

    def _answer(self, **_: Any) -> Any:
        if self.skip > 0:
            self.skip -= 1
            return None
        if self.times is not None and self.count >= self.times:
            return None
        self.count += 1
        # A real-shaped HTTP error answer in the service's protocol, sent before the
        # request leaves: botocore parses and retries it as it would AWS's own.
        from botocore.awsrequest import AWSResponse

        throttle = self.code in (
            "Throttling",
            "ThrottlingException",
            "RequestLimitExceeded",
            "SlowDown",
        )
        status = 503 if throttle else 400
        protocol = self.client.meta.service_model.protocol
        msg = f"injected {self.code}"
        if protocol == "ec2":
            body = f"<Response><Errors><Error><Code>{self.code}</Code><Message>{msg}</Message></Error></Errors><RequestID>x</RequestID></Response>"
        elif protocol == "query":
            body = f"<ErrorResponse><Error><Type>Sender</Type><Code>{self.code}</Code><Message>{msg}</Message></Error><RequestId>x</RequestId></ErrorResponse>"
        elif protocol == "rest-xml":
            body = f"<Error><Code>{self.code}</Code><Message>{msg}</Message><RequestId>x</RequestId></Error>"
        else:
            body = json.dumps({"__type": self.code, "message": msg})
        return AWSResponse(
            "http://127.0.0.1/", status, {"x-amzn-requestid": "x"}, _Raw(body.encode())
        )

    def remove(self) -> None:
        self.client.meta.events.unregister(self.event, self._answer)


@pytest.fixture
def fail():
    """`fail(clients, "ec2.RunInstances", code=..., times=...)`: inject AWS errors."""
    return Fail


# -- the instance -----------------------------------------------------------------
#
# moto records SSM commands and runs nothing. `instance` plays every instance: it
# takes each command moto recorded and runs its exact script with bash, under
# `env -i` in an empty folder, with only AWS_ENDPOINT_URL, fake credentials, HOME,
# RUNCTL_IMDS_URL (a local IMDSv2 stand-in) and a clean PATH whose Python is a bare venv without runctl_jupyter, boto3 or
# cloudpickle — so the bootstrap really installs what the agent needs from the
# package index. Each instance has its own HOME (its disk: /root on EC2); the
# venv the first bootstrap builds is kept for the test session and linked into
# later instances' disks, to keep the suite fast. Each instance also has its own
# IMDSv2 stand-in (its instance-id, and the spot notices a test serves), and the
# player runs an instance's UserData (a spot request's boot script) at its first
# boot and refills EC2 Fleets (maintain) whose instance was terminated, as AWS does
# (moto launches a fleet's first instance and never refills), in the first of the
# fleet's overrides (by priority) that has capacity (`no_capacity`: AZs or types the
# test took away), so the recovery after an interruption runs with no test code
# driving it.


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("bare-python")
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True)
    return root / "venv" / "bin"


class _Imds:
    """A local stand-in for the instance metadata service, speaking IMDSv2: a token from
    PUT /latest/api/token, then GETs carrying it. It serves no spot notice (404), as EC2
    does while none is pending. Each played instance gets its own (`for_instance`): it
    answers `instance-id` and serves the notices a test sets (`spot_notice`); its requests
    are counted on the session's server too."""

    TOKEN = "played-instance-token"
    ACTION = "/latest/meta-data/spot/instance-action"

    def __init__(self, instance_id: str | None = None, parent: _Imds | None = None) -> None:
        import http.server

        imds = self
        self.requests = 0
        self.instance_id = instance_id
        self.parent = parent
        self.notices: dict[str, str] = {}
        if instance_id:
            self.notices["/latest/meta-data/instance-id"] = instance_id

        def count() -> None:
            imds.requests += 1
            if imds.parent is not None:
                imds.parent.requests += 1

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_PUT(self) -> None:  # noqa: N802 - http.server's naming
                count()
                if self.path == "/latest/api/token" and self.headers.get(
                    "X-aws-ec2-metadata-token-ttl-seconds"
                ):
                    self._send(200, imds.TOKEN)
                else:
                    self._send(400, "")

            def do_GET(self) -> None:  # noqa: N802
                count()
                if self.headers.get("X-aws-ec2-metadata-token") != imds.TOKEN:
                    self._send(401, "")
                elif self.path in imds.notices:
                    self._send(200, imds.notices[self.path])
                else:
                    self._send(404, "")

            def _send(self, code: int, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_instance(self, instance_id: str) -> _Imds:
        return _Imds(instance_id, parent=self)

    def spot_notice(self, when: str = "2026-11-29T04:00:00Z") -> None:
        self.notices[self.ACTION] = json.dumps({"action": "terminate", "time": when})

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="session")
def imds() -> Iterator[_Imds]:
    server = _Imds()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def venv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("instance-venv") / "venv"


# The disks of played instances: a folder stands in for the machine's root
# (RUNCTL_FS_ROOT), an attached EBS volume appears as its NVMe by-id link to a file
# (sandbox/ebs/<vol-id>: empty until formatted, shared by every instance it is attached
# to), and these stand-ins of the disk tools, first on PATH, record their argv in
# <root>/commands.log and do what the real ones do to that file and folder.
FAKE_DISK_TOOLS = {
    "blkid": """
dev="${@: -1}"
t=$(cat "$dev" 2>/dev/null)
[ -n "$t" ] || exit 2
echo "$dev: TYPE=\"$t\""
""",
    "mkfs.ext4": """
printf ext4 > "${@: -1}"
""",
    "mount": """
dev="$1"; mp="$2"
[ -s "$dev" ] || { echo "mount: $mp: wrong fs type, bad superblock on $dev" >&2; exit 32; }
data="$(readlink -f "$dev").fs"
mkdir -p "$data" "$RUNCTL_FS_ROOT/proc"
rmdir "$mp" && ln -s "$data" "$mp"
echo "$dev $mp ext4 rw 0 0" >> "$RUNCTL_FS_ROOT/proc/mounts"
""",
    "umount": """
mp="$1"
rm "$mp" && mkdir "$mp"
grep -v " $mp " "$RUNCTL_FS_ROOT/proc/mounts" > "$RUNCTL_FS_ROOT/proc/mounts.new" || true
mv "$RUNCTL_FS_ROOT/proc/mounts.new" "$RUNCTL_FS_ROOT/proc/mounts"
""",
}


def _write_disk_tools(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in FAKE_DISK_TOOLS.items():
        tool = folder / name
        log = 'echo "$(basename "$0") $*" >> "$RUNCTL_FS_ROOT/commands.log"\n'
        tool.write_text("#!/bin/bash\n" + log + body.lstrip())
        tool.chmod(0o755)
    return folder


class InstancePlayer:
    """Runs the scripts of SSM commands as the target instance would, and plays what AWS
    does on its own: UserData at an instance's first boot, a terminated instance's
    processes gone, spot fleets refilled (`refills`, unless `refill` is False) in the
    first override whose AZ and type are not in `no_capacity`;
    `imds_for(id).spot_notice()` serves a notice to one instance."""

    def __init__(self, moto_url: str, bare_bin: Path, venv_cache: Path, sandbox: Path, imds: _Imds):
        self.moto_url = moto_url
        self.imds = imds
        self.imds_of: dict[str, _Imds] = {}  # each instance's own metadata service
        self.extra_env: dict[str, str] = {}  # more of the instance's environment (a test's podman)
        self.booted: set[str] = set()  # instances whose UserData (boot script) ran
        self.refills: list[tuple[str, str, str]] = []  # (fleet, old instance, new instance)
        self.refill = True  # play AWS refilling spot fleets
        self.no_capacity: set[str] = set()  # AZs and instance types with no spot capacity
        self.unfilled: set[str] = set()  # fleets that found no capacity for a refill
        self.fleet_instance: dict[str, str] = {}  # fleet -> its instance last seen
        self._cache_lock = threading.RLock()
        self.bare_bin = bare_bin
        self.venv_cache = venv_cache
        self.sandbox = sandbox
        self.homes: dict[str, Path] = {}
        self.seen: set[str] = set()
        self.runs: list[dict] = []
        self._stop = threading.Event()
        self.disk_tools = _write_disk_tools(sandbox / "disk-tools")
        self.ebs = sandbox / "ebs"  # each volume's contents, whichever instance has it
        self._thread = threading.Thread(target=self._loop, daemon=True, name="instance-player")
        self._thread.start()

    def home(self, instance_id: str) -> Path:
        """The instance's disk; a new instance gets the session's cached venv, if built."""
        with self._cache_lock:  # boot threads, the command loop and tests ask at once
            home = self.homes.get(instance_id)
            if home is None:
                home = self.sandbox / f"disk-{instance_id}"
                (home / "runctl").mkdir(parents=True)
                if self.venv_cache.exists():
                    (home / "runctl" / "venv").symlink_to(self.venv_cache)
                self.homes[instance_id] = home
            return home

    def imds_for(self, instance_id: str) -> _Imds:
        with self._cache_lock:
            if instance_id not in self.imds_of:
                self.imds_of[instance_id] = self.imds.for_instance(instance_id)
            return self.imds_of[instance_id]

    def env(self, home: Path, instance_id: str) -> dict[str, str]:
        # signed as the instance: the strict layer evaluates its role's policies (strict_iam.py)
        key = _strict().strict_iam.instance_key(instance_id)
        _strict().INSTANCE_KEYS[key] = instance_id
        try:  # the profile a fleet's instance carries, kept while its fleet is still there
            _strict().strict_iam.instance_principal("123456789012", REGION, instance_id)
        except Exception:  # noqa: BLE001 - judged again at each request
            pass
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": key,
            "AWS_SECRET_ACCESS_KEY": "testing",
            "HOME": str(home),
            "PATH": f"{self.bare_bin}:{self.disk_tools}:/usr/bin:/bin",
            "RUNCTL_FS_ROOT": str(home / "root"),  # the disk tools' stand-in machine root
            # the metadata service's local stand-in, as AWS_ENDPOINT_URL is AWS's
            "RUNCTL_IMDS_URL": self.imds_for(instance_id).url,
            **self.extra_env,
        }

    def _loop(self) -> None:
        from moto.ec2.models import ec2_backends
        from moto.ssm.models import ssm_backends

        while not self._stop.is_set():
            self._play_ec2(ec2_backends["123456789012"][REGION])
            commands = list(ssm_backends["123456789012"][REGION]._commands)
            for command in commands:
                if command.command_id in self.seen:
                    continue
                self.seen.add(command.command_id)
                for invocation in command.invocations:
                    instance_id = invocation["InstanceId"]
                    inst = ec2_backends["123456789012"][REGION].get_instance(instance_id)
                    if inst.state != "running":
                        invocation.update(
                            Status="Failed", StatusDetails="Undeliverable", ResponseCode=-1
                        )
                        continue
                    invocation.update(Status="InProgress", StatusDetails="InProgress")
                    self._run(command, invocation, self.home(instance_id), instance_id)
            self._stop.wait(0.1)

    # -- what AWS does on its own: boot scripts, terminations, refilled spot fleets --------
    def _play_ec2(self, ec2: Any) -> None:
        """Run each new instance's UserData once (cloud-init at first boot, in a thread like
        a boot); stop the processes of a terminated instance; and, as AWS does for a
        maintain fleet (not deleted) whose instance is gone, launch another."""
        self._play_volumes(ec2)
        for reservation in list(ec2.reservations.values()):
            for inst in reservation.instances:
                if inst.state == "terminated" and inst.id in self.homes:
                    self._kill(self.homes[inst.id])
                elif inst.state == "running" and inst.user_data and inst.id not in self.booted:
                    self.booted.add(inst.id)
                    script = inst.user_data.decode() if hasattr(inst.user_data, "decode") else ""
                    threading.Thread(target=self._boot, args=(inst.id, script), daemon=True).start()
        if not self.refill:
            return
        for fleet in list(ec2.fleets.values()):
            if fleet.fleet_type != "maintain" or fleet.state != "active":
                continue
            live = [r.instance.id for r in fleet.spot_requests if r.instance.state != "terminated"]
            if live:  # moto drops a terminated instance's request from its fleet
                self.fleet_instance[fleet.id] = live[-1]
            else:
                self._refill_fleet(ec2, fleet)

    def _play_volumes(self, ec2: Any) -> None:
        """An attached volume's device appears on its instance (its NVMe by-id link)."""
        for vol in list(ec2.volumes.values()):
            att = getattr(vol, "attachment", None)
            if att is None or att.instance.state != "running":
                continue
            disk = self.ebs / vol.id
            if not disk.exists():
                self.ebs.mkdir(exist_ok=True)
                disk.touch()
            serial = vol.id.replace("-", "")
            link = self.home(att.instance.id) / "root" / "dev" / "disk" / "by-id"
            link = link / f"nvme-Amazon_Elastic_Block_Store_{serial}"
            if not link.is_symlink():
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(disk)

    def _refill_fleet(self, ec2: Any, fleet: Any) -> None:
        """Launch the fleet's replacement in its best override that has capacity."""
        old = self.fleet_instance.get(fleet.id, "")
        for spec in fleet.launch_specs:  # the overrides, best priority first
            zone = ec2.get_subnet(spec.subnet_id).availability_zone
            if zone in self.no_capacity or spec.instance_type in self.no_capacity:
                continue
            everything = fleet.launch_specs
            fleet.launch_specs = [spec]
            try:
                fleet.create_spot_requests(1)
            finally:
                fleet.launch_specs = everything
            self.refills.append((fleet.id, old, fleet.spot_requests[-1].instance.id))
            self.unfilled.discard(fleet.id)
            return
        self.unfilled.add(fleet.id)

    def _boot(self, instance_id: str, script: str) -> None:
        self._execute(script, self.home(instance_id), instance_id, kind="boot")

    def terminate(self, instance_id: str) -> None:
        """AWS reclaiming a spot instance: the instance (and what runs on it) is gone."""
        from moto.ec2.models import ec2_backends

        ec2_backends["123456789012"][REGION].terminate_instances([instance_id])
        if instance_id in self.homes:
            self._kill(self.homes[instance_id])

    @staticmethod
    def _kill(home: Path) -> None:
        import signal

        for pid_file in (home / "runctl" / "runs").glob("*/service.pid"):
            try:
                os.killpg(int(pid_file.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass
            pid_file.unlink(missing_ok=True)

    def _run(self, command: Any, invocation: dict, home: Path, instance_id: str) -> None:
        script = "\n".join(command.parameters["commands"])
        proc = self._execute(script, home, instance_id, kind="ssm")
        invocation.update(
            Status="Success" if proc.returncode == 0 else "Failed",
            StatusDetails="Success" if proc.returncode == 0 else "Failed",
            ResponseCode=proc.returncode,
            StandardOutputContent=proc.stdout[-24000:],
            StandardErrorContent=proc.stderr[-8000:],
        )

    def _execute(self, script: str, home: Path, instance_id: str, kind: str) -> Any:
        import shutil
        import subprocess
        import tempfile

        cwd = tempfile.mkdtemp(dir=self.sandbox, prefix=f"{kind}-")
        started = time.monotonic()
        proc = subprocess.run(
            ["/bin/bash", "-c", script],
            cwd=cwd,
            env=self.env(home, instance_id),
            capture_output=True,
            text=True,
            timeout=900,
        )
        self.runs.append(
            {
                "kind": kind,
                "instance_id": instance_id,
                "script": script,
                "returncode": proc.returncode,
                "stdout": proc.stdout,
                "stderr": proc.stderr,
                "home": home,
                "seconds": time.monotonic() - started,
                "picked_up": started,
            }
        )
        venv = home / "runctl" / "venv"
        if (
            proc.returncode == 0
            and not self.venv_cache.exists()
            and venv.is_dir()
            and not venv.is_symlink()
        ):
            # keep the venv this bootstrap built for later instances (it is run as `python -m pip`);
            # copied aside, then renamed: a new instance never links a half-copied venv
            with self._cache_lock:
                if not self.venv_cache.exists():
                    partial = self.venv_cache.with_name(self.venv_cache.name + ".partial")
                    shutil.rmtree(partial, ignore_errors=True)
                    shutil.copytree(venv, partial, symlinks=True)
                    os.replace(partial, self.venv_cache)
        return proc

    def run_dir(self, run_id: str) -> Path:
        for home in self.homes.values():
            path = home / "runctl" / "runs" / run_id
            if path.exists():
                return path
        raise FileNotFoundError(run_id)

    def close(self) -> None:
        import signal

        self._stop.set()
        for server in self.imds_of.values():
            server.close()
        self._thread.join(timeout=5)
        for home in self.homes.values():
            pid_files = [
                *(home / "runctl" / "runs").glob("*/service.pid"),
                home / "runctl" / "idle.pid",
            ]
            for pid_file in (p for p in pid_files if p.exists()):
                try:
                    os.killpg(
                        int(pid_file.read_text().strip()), signal.SIGKILL
                    )  # setsid: own group
                except (ValueError, ProcessLookupError, PermissionError):
                    pass
                pid_file.unlink(missing_ok=True)


@pytest.fixture
def instance(
    aws, moto_server: str, bare_python: Path, venv_cache: Path, imds: _Imds, tmp_path: Path
) -> Iterator[InstancePlayer]:
    sandbox = tmp_path / "instance-sandbox"
    sandbox.mkdir()
    player = InstancePlayer(moto_server, bare_python, venv_cache, sandbox, imds)
    try:
        yield player
    finally:
        player.close()
