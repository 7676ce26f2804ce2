"""`runctl aws doctor`: checks what runs need and says what to fix, one line each."""

from __future__ import annotations

from dataclasses import dataclass

from . import policy, run_role
from .clients import AWSError, Clients, error_code
from .errors import actionable, hint
from .setup import default_vpc, find_security_group

SETUP_FIX = "run `runctl aws setup`"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        mark = "ok " if self.ok else "FAIL"
        text = f"[{mark}] {self.name}: {self.detail}"
        return text + (f" -> {self.fix}" if not self.ok and self.fix else "")


def _detail(exc: BaseException) -> str:
    return error_code(exc) or type(exc).__name__


def _fix(exc: BaseException, fix: str) -> str:
    """No credentials, no permission, no network...: what to do about that (errors.hint);
    a missing resource: `fix`."""
    return hint(exc) if actionable(exc) else fix


def doctor(clients: Clients, bucket: str | None = None) -> list[Check]:
    """Each check in turn; without credentials nothing else can be asked."""
    try:
        ident = clients.identity()
    except AWSError as exc:
        cause = exc.__cause__
        if cause is not None and actionable(cause):  # the call, AWS's code, what to do
            return [Check("credentials", False, _detail(cause), hint(cause))]
        return [
            Check(
                "credentials",
                False,
                str(exc),
                "configure credentials (aws configure / AWS_PROFILE)",
            )
        ]
    return [
        Check("credentials", True, ident["Arn"]),
        _region(clients),
        _bucket(clients, bucket or policy.bucket_name(ident["Account"], clients.region)),
        _instance_profile(clients),
        _run_policy(
            clients,
            ident["Account"],
            bucket or policy.bucket_name(ident["Account"], clients.region),
        ),
        _security_group(clients),
        _ssm(clients),
    ]


def _region(clients: Clients) -> Check:
    try:
        zones = clients.ec2.describe_availability_zones()["AvailabilityZones"]
        return Check("region", True, f"{clients.region} ({len(zones)} availability zones)")
    except Exception as exc:
        return Check(
            "region",
            False,
            f"{clients.region}: {_detail(exc)}",
            _fix(exc, "set c.AWSBackend.region or AWS_DEFAULT_REGION"),
        )


def _bucket(clients: Clients, bucket: str) -> Check:
    """The bucket exists, blocks every kind of public access and encrypts by default."""
    s3 = clients.s3
    try:
        s3.head_bucket(Bucket=bucket)
        problems = []
        try:
            pab = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            if not all(
                pab.get(k)
                for k in (
                    "BlockPublicAcls",
                    "IgnorePublicAcls",
                    "BlockPublicPolicy",
                    "RestrictPublicBuckets",
                )
            ):
                problems.append("public access not fully blocked")
        except Exception:
            problems.append("no public access block")
        try:
            s3.get_bucket_encryption(Bucket=bucket)
        except Exception:
            problems.append("no default encryption")
        if problems:
            return Check("bucket", False, f"s3://{bucket}: {', '.join(problems)}", SETUP_FIX)
        return Check("bucket", True, f"s3://{bucket} (encrypted, private)")
    except Exception as exc:
        return Check(
            "bucket",
            False,
            f"s3://{bucket} missing or unreachable ({_detail(exc)})",
            _fix(exc, SETUP_FIX),
        )


def _instance_profile(clients: Clients) -> Check:
    try:
        prof = clients.iam.get_instance_profile(InstanceProfileName=policy.PROFILE_NAME)[
            "InstanceProfile"
        ]
        roles = [r["RoleName"] for r in prof.get("Roles", [])]
        if policy.ROLE_NAME in roles:
            return Check(
                "instance profile", True, f"{policy.PROFILE_NAME} -> role {policy.ROLE_NAME}"
            )
        return Check(
            "instance profile",
            False,
            f"{policy.PROFILE_NAME} has no role {policy.ROLE_NAME}",
            SETUP_FIX,
        )
    except Exception as exc:
        return Check(
            "instance profile",
            False,
            f"{policy.PROFILE_NAME} missing ({_detail(exc)})",
            _fix(exc, SETUP_FIX),
        )


def _run_policy(clients: Clients, account: str, bucket: str) -> Check:
    """The managed policy each run's own role holds (aws/run_role.py)."""
    name = run_role.policy_name(bucket)
    try:
        clients.iam.get_policy(PolicyArn=run_role.policy_arn(account, bucket))
        return Check("run policy", True, f"{name} (each run's own role: its reach only)")
    except Exception as exc:
        return Check("run policy", False, f"{name} missing ({_detail(exc)})", _fix(exc, SETUP_FIX))


def _security_group(clients: Clients) -> Check:
    try:
        group = find_security_group(clients, default_vpc(clients))
        if group:
            return Check("security group", True, group)
        return Check("security group", False, f"{policy.SECURITY_GROUP_NAME} missing", SETUP_FIX)
    except Exception as exc:
        return Check(
            "security group",
            False,
            str(exc) if isinstance(exc, AWSError) else _detail(exc),
            _fix(exc, SETUP_FIX),
        )


def _ssm(clients: Clients) -> Check:
    try:
        clients.ssm.describe_instance_information(MaxResults=5)
        return Check("ssm", True, f"Systems Manager reachable in {clients.region}")
    except Exception as exc:
        return Check(
            "ssm",
            False,
            f"Systems Manager not reachable ({_detail(exc)})",
            _fix(
                exc,
                "allow ssm:DescribeInstanceInformation and ssm:SendCommand (`runctl aws policy`)",
            ),
        )


def summary(checks: list[Check]) -> str:
    """The failed checks and their fixes, one line (the shell's error line after the report)."""
    bad = [c for c in checks if not c.ok]
    fixes = list(dict.fromkeys(c.fix for c in bad if c.fix))
    names = ", ".join(c.name for c in bad)
    todo = "; ".join(fixes) or "fix what is marked FAIL above"
    if not todo.endswith("`runctl aws doctor`"):  # most fixes end by saying so already
        todo += "; then `runctl aws doctor` again"
    return f"{len(bad)} problem(s) ({names}): {todo}"


def report(checks: list[Check]) -> str:
    lines = [c.line() for c in checks]
    bad = sum(not c.ok for c in checks)
    lines.append(
        "all good" if not bad else f"{bad} problem(s); fix them and run `runctl aws doctor` again"
    )
    return "\n".join(lines)
