"""An AWS schedule's clock: EventBridge Scheduler, so runs fire with this machine off.

`schedule add ... --backend aws` makes, after every check, in this order (and removes
what it made when a step fails):
1. the schedule's own instance role `runctl-run-sched-NAME` (aws/run_role.py): the run
   policy's reach by its tag, so S3 under `runctl/runs/sched-NAME/` and its own
   instances only;
2. the schedule bundle at `runctl/runs/sched-NAME/schedule/bundle.tar.gz`: a template
   run (spec, code, pins) whose S3 sync prefix is that folder, so the fired runs live
   at `runctl/runs/sched-NAME/runs/<run id>/`;
3. the launch template `runctl-sched-NAME`: image, type, the role, IMDSv2, encrypted
   root volume, tags, and as UserData the fire script (aws/bootstrap.py `fire_script`);
4. the Scheduler schedule `runctl-NAME` (aws/scheduler.py): its universal target
   `ec2:RunInstances` of that template, in the schedule's time zone.

The notebook side finds fired runs by listing that prefix (`schedules`, `schedule show`):
each run's spec.json (written by the instance, agent/fired.py) makes its local folder,
whose events are then pulled from S3 like any AWS run's.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import RunctlError

AWS_NAME_MAX = 40  # runctl-run-sched-NAME is an IAM role name (64 characters at most)


def local_zone() -> str:
    """This machine's IANA time zone name ($TZ, else /etc/localtime's link), else UTC."""
    from zoneinfo import ZoneInfo

    for name in (os.environ.get("TZ", "").lstrip(":"), _linked_zone()):
        if name:
            try:
                ZoneInfo(name)
                return name
            except (ValueError, KeyError, OSError):
                continue
    return "UTC"


def _linked_zone() -> str:
    try:
        target = os.readlink("/etc/localtime")
    except OSError:
        return ""
    return target.split("zoneinfo/", 1)[1] if "zoneinfo/" in target else ""


def check_name(name: str) -> None:
    if len(name) > AWS_NAME_MAX:
        raise RunctlError(
            f"schedule name {name!r}: an AWS schedule's name has at most {AWS_NAME_MAX} "
            "characters (it names an IAM role); give --schedule-name"
        )


def _template_run(session: Any, schedule: dict, folder: Path) -> dict:
    """The run every fire starts, written once into `folder` (never into the store)."""
    from ..store.folders import create_run
    from .fire import when_text

    run = schedule.get("run") or {}
    target = schedule["target"]
    return create_run(
        folder,
        kind="script",
        script=target,
        args=list(run.get("args") or ()),
        params=dict(run.get("params") or {}),
        experiment=run.get("experiment") or session.config.experiment,
        name=run.get("name") or Path(target).stem,
        project=run.get("project") or session.config.project,
        owner=session.config.owner,
        backend="aws",
        workdir=str(Path(target).parent),
        tags=list(run.get("tags") or ()),
        metrics=list(run.get("metrics") or ()),
        max_hours=run.get("max_hours"),
        grace_seconds=session.config.grace_seconds,
        options=dict(run.get("options") or {}),
        trigger={
            "schedule": schedule["name"],
            "reason": when_text(schedule),
            "allow_overlap": bool(schedule.get("allow_overlap")),  # agent/fired.py
            **_data_of(schedule),
        },
    )


def _data_of(schedule: dict) -> dict:
    """What the instance checks before a data-triggered run (agent/fired.py)."""
    data = schedule.get("data")
    return {"data": data["uri"], "max_age": data.get("max_age")} if data else {}


def make(session: Any, schedule: dict, expression: str) -> dict:
    """Make the role, bundle, template and Scheduler schedule; returns their facts
    (kept in the schedule's file as `aws`)."""
    from ..aws import bootstrap, bundle, run_role, scheduler, tags
    from ..aws.clients import owner_from_arn
    from ..aws.policy import models_prefix
    from ..backends.aws_checks import check_before_launch

    name = schedule["name"]
    check_name(name)
    backend = session.backend("aws")
    opts = dict((schedule.get("run") or {}).get("options") or {})
    folder = Path(tempfile.mkdtemp(prefix="runctl-schedule-"))
    undo: list[Any] = []
    try:
        spec = _template_run(session, schedule, folder)
        run_dir = folder / spec["run_id"]
        checked = check_before_launch(backend, run_dir, spec, opts)
        clients, bucket = checked.clients, checked.bucket
        owner = opts.get("owner") or owner_from_arn(checked.identity["Arn"])
        run_tags = tags.run_tags(
            scheduler.role_run_id(name), owner, spec.get("project") or "default"
        )
        image, instance_type = _image(clients, opts, backend)
        security_group = _security_group(clients)
        profile = run_role.create(clients, run_tags, bucket)
        undo.append(lambda: run_role.delete(clients, profile))
        if schedule.get("data"):
            from ..aws.data_rule import grant_read
            from .data import parse_s3_prefix

            grant_read(clients, profile, *parse_s3_prefix(schedule["data"]["uri"]))
        prefix = f"{backend.prefix}runs/{scheduler.role_run_id(name)}/"
        sync_cfg = {"kind": "s3", "bucket": bucket, "prefix": prefix, "region": clients.region}
        sync_cfg.update(instance_id=None, terminate=True, persistent=False)
        sync_cfg["models"] = models_prefix(owner, run_tags[tags.PROJECT])
        data, _ = bundle.build(
            run_dir, spec, sync_cfg, pip=checked.pip, sync_dirs=checked.sync_dirs
        )
        key = f"{prefix}schedule/bundle.tar.gz"
        clients.s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256")
        undo.append(lambda: clients.s3.delete_object(Bucket=bucket, Key=key))
        user_data = bootstrap.fire_script(bucket, key, clients.region)
        template_id = _launch_template(
            clients,
            name,
            image,
            instance_type,
            security_group,
            profile,
            backend,
            run_tags,
            user_data,
        )
        undo.append(lambda: clients.ec2.delete_launch_template(LaunchTemplateId=template_id))
        facts = {}
        if schedule.get("data"):
            from ..aws import data_rule
            from .data import parse_s3_prefix

            data_bucket, data_prefix = parse_s3_prefix(schedule["data"]["uri"])
            settle = float(schedule["data"].get("settle") or 0)
            facts = data_rule.create(clients, name, data_bucket, data_prefix, settle, template_id)
            arn = ""
        else:
            zone = schedule.get("timezone") or "UTC"
            arn = scheduler.create(clients, name, expression, zone, template_id)
        return {
            **facts,
            "region": clients.region,
            "bucket": bucket,
            "prefix": prefix,
            "bundle_key": key,
            "launch_template_id": template_id,
            "instance_profile": profile,
            "instance_type": instance_type,
            "schedule_arn": arn,
            "expression": expression,
        }
    except BaseException:
        scheduler.unwind(undo)  # what was made, last first; the first error is raised
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _image(clients: Any, opts: dict, backend: Any) -> tuple[dict, str]:
    from ..aws.ami import resolve_ami
    from ..aws.instance_types import validate_instance_type

    instance_type = opts.get("instance_type") or backend.instance_type
    info = validate_instance_type(clients, instance_type)
    return resolve_ami(clients, info, opts.get("ami")), instance_type


def _security_group(clients: Any) -> str:
    from ..aws.candidates import choose_subnets
    from ..aws.setup import find_security_group

    vpc = choose_subnets(clients, None, None)[0]["VpcId"]
    group = find_security_group(clients, vpc)
    if not group:
        raise RunctlError("no runctl-agent security group: run `runctl aws setup`")
    return group


def _launch_template(
    clients: Any,
    name: str,
    image: dict,
    instance_type: str,
    security_group: str,
    profile: str,
    backend: Any,
    run_tags: dict,
    user_data: str,
) -> str:
    from ..aws import scheduler, tags
    from ..aws.instance_spec import instance_settings

    data: dict[str, Any] = {
        "ImageId": image["ImageId"],
        "InstanceType": instance_type,
        "SecurityGroupIds": [security_group],
        "UserData": base64.b64encode(user_data.encode()).decode(),
        **instance_settings(profile, backend.root_gb, image, run_tags),
    }
    answer = clients.ec2.create_launch_template(
        LaunchTemplateName=scheduler.template_name(name),
        LaunchTemplateData=data,
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": tags.tag_list(run_tags)}],
    )
    return str(answer["LaunchTemplate"]["LaunchTemplateId"])


def _clients(session: Any, schedule: dict) -> Any:
    return session.backend("aws").clients_for(schedule["aws"]["region"])


def set_enabled(session: Any, schedule: dict, enabled: bool) -> None:
    from ..aws import data_rule, scheduler

    if (schedule.get("aws") or {}).get("rule"):
        events = _clients(session, schedule).client("events")
        name = data_rule.rule_name(schedule["name"])
        (events.enable_rule if enabled else events.disable_rule)(Name=name)
        return
    scheduler.set_state(_clients(session, schedule), schedule["name"], enabled)


def remove(session: Any, schedule: dict) -> list[str]:
    """Delete the Scheduler schedule first (nothing fires any more), then the rest;
    returns what could not be deleted (each step on its own)."""
    from ..aws import run_role, scheduler
    from ..aws.clients import error_code

    facts = schedule.get("aws") or {}
    clients = _clients(session, schedule)
    failed = []
    if facts.get("rule"):
        from ..aws import data_rule
        from .aws_data import hand_over_events

        facts = hand_over_events(session, schedule, facts)
        failed += data_rule.delete(clients, schedule["name"], facts)
    else:
        scheduler.delete(clients, schedule["name"])  # an error here stops everything: said
    steps = [
        lambda: clients.ec2.delete_launch_template(LaunchTemplateId=facts["launch_template_id"]),
        lambda: clients.s3.delete_object(Bucket=facts["bucket"], Key=facts["bundle_key"]),
    ]
    for step in steps:
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - each step on its own
            if "NotFound" not in error_code(exc):
                failed.append(error_code(exc) or str(exc))
    failed += run_role.delete(clients, facts["instance_profile"])
    return failed


def fire_now(session: Any, schedule: dict) -> str:
    """`schedule run NAME`: what the Scheduler does at a fire, done now."""
    from ..aws.run_role import launch_when_ready

    facts = schedule["aws"]
    clients = _clients(session, schedule)
    template = {"LaunchTemplateId": facts["launch_template_id"]}
    answer = launch_when_ready(
        lambda: clients.ec2.run_instances(MinCount=1, MaxCount=1, LaunchTemplate=template)
    )
    instance = answer["Instances"][0]["InstanceId"]
    return (
        f"schedule {schedule['name']} fired: {instance} starts a new run at boot "
        f"(`%runctl schedule show {schedule['name']}` finds it)"
    )


def fired_runs(session: Any, schedule: dict) -> list[dict]:
    """The schedule's runs in S3, each made a local run folder when new and pulled;
    their specs, oldest first."""
    from ..store.folders import read_spec

    facts = schedule.get("aws") or {}
    if not facts.get("bucket"):
        return []
    backend = session.backend("aws")
    s3 = backend.clients_for(facts["region"]).s3
    found = []
    paginator = s3.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=facts["bucket"], Prefix=facts["prefix"] + "runs/", Delimiter="/"
    )
    for page in pages:
        for common in page.get("CommonPrefixes", []):
            run_id = common["Prefix"].rstrip("/").rsplit("/", 1)[-1]
            run_dir = session.store.run_dir(run_id)
            if not (run_dir / "spec.json").exists() and not _import(s3, facts, run_id, run_dir):
                continue
            spec = read_spec(run_dir)
            backend.pull(run_dir, spec, force=True)
            session.store.refresh(run_id)
            found.append(spec)
    return sorted(found, key=lambda s: s.get("created") or 0)


def _import(s3: Any, facts: dict, run_id: str, run_dir: Path) -> bool:
    from ..backends.aws_target import write_target
    from ..paths import path_under

    key = f"{facts['prefix']}runs/{run_id}/spec.json"
    try:
        spec = json.loads(s3.get_object(Bucket=facts["bucket"], Key=key)["Body"].read())
    except Exception:  # noqa: BLE001 - not written yet (the instance is still booting)
        return False
    if not isinstance(spec, dict) or spec.get("run_id") != run_id:
        return False
    path_under(run_dir.parent, run_id)  # an id from S3 names a folder: it stays in runs/
    run_dir.mkdir(parents=True, exist_ok=True)
    sync = spec.get("sync") or {}
    write_target(
        run_dir,
        {
            "bucket": facts["bucket"],
            "prefix": facts["prefix"],
            "region": facts["region"],
            "instance_id": sync.get("instance_id"),
            "fired_at": time.time(),
        },
    )
    (run_dir / "spec.json").write_text(json.dumps(spec, indent=1))
    return True
