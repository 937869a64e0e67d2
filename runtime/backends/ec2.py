"""The EC2 backend: one ephemeral GPU instance per run, launched from the job's launch template.

``train_ec2`` reads the stack manifest, takes the job lock and creates the run record (with the
resolved hyperparameters and the maximum runtime), uploads the runtime's source, and launches
ONE instance from the job's launch template with the run id and job in its tags and user data,
as spot or on-demand. It returns the run id at once: the instance's bootstrap
(:mod:`stnlp.runtime.bootstrap`) drives the run from there and terminates the instance at the end.

Relaunching with the ``run_id`` of a run a spot interruption left in ``data_sync`` or
``training`` (its lock still held) starts a new instance for the same run, which resumes from
the run's checkpoints.
"""

from __future__ import annotations

import logging
from shlex import quote
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import TAG_JOB, TAG_RUN, TAG_STACK
from stnlp.common.settings import Settings
from stnlp.common.userdata import render_user_data
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.cloud import kill_run, launch_or_fail, start_run
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.runs import STALE_AFTER_SECONDS, Run, is_stale, load_run
from stnlp.runtime.store import Stores, open_stores, s3_client

log = logging.getLogger(__name__)

RESUMABLE_STATES = ("initialization", "data_sync", "training")
SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
}


def run_user_data(stack: str, job: str, region: str, run_id: str, max_runtime_minutes: int) -> str:
    """The instance's user data for one run: the job's bootstrap script with the run id."""
    script = render_user_data(stack, job, region, max_runtime_minutes=max_runtime_minutes)
    command = f"-m stnlp.runtime.bootstrap --stack {stack} --job {job}"
    if script.count(command) != 1:
        raise RuntimeError(f"infra user data no longer runs {command!r} exactly once")
    return script.replace(command, f"{command} --run-id {quote(run_id)}")


def launch_request(
    spec: JobSpec, manifest: dict[str, Any], stack: str, run_id: str, *, spot: bool,
    launch: int = 1,
) -> dict[str, Any]:
    """The ``run_instances`` arguments launching one instance of ``spec`` for ``run_id``.

    ``launch`` numbers the run's launches (relaunches after spot interruptions); with the run
    id it makes the idempotency token, so a retried call never starts a second instance.
    """
    template = manifest.get("launch_templates", {}).get(spec.name)
    if not template or not template.get("id"):
        raise UserError(
            f"stack {stack!r} has no launch template for job {spec.name!r}; "
            "run `pulumi up` after installing the plugin that provides it"
        )
    tags = [
        {"Key": TAG_STACK, "Value": stack},
        {"Key": TAG_JOB, "Value": spec.name},
        {"Key": TAG_RUN, "Value": run_id},
    ]
    user_data = run_user_data(
        stack, spec.name, manifest["region"], run_id, spec.max_runtime_minutes
    )
    request: dict[str, Any] = {
        "LaunchTemplate": {"LaunchTemplateId": template["id"], "Version": "$Latest"},
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": f"{run_id}-{launch}"[-64:],
        "UserData": user_data,  # boto3 base64-encodes it for RunInstances
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": tags} for kind in ("instance", "volume")
        ],
    }
    if spot:
        request["InstanceMarketOptions"] = SPOT_OPTIONS
    return request


def _resume(stores: Stores, stack: str, spec: JobSpec, run_id: str) -> Run | None:
    """The existing run ``run_id`` to relaunch, or ``None`` when there is no such run."""
    try:
        run = load_run(stores, stack, run_id)
    except UserError:
        return None
    if run.record["job"] != spec.name:
        raise UserError(f"run {run_id} is a run of {run.record['job']!r}, not {spec.name!r}")
    if run.state not in RESUMABLE_STATES or run.lock.holder() != run_id:
        raise UserError(
            f"run {run_id} cannot be resumed: it is in {run.state!r} "
            f"and the lock of job {spec.name!r} is held by {run.lock.holder()}"
        )
    return run


def train_ec2(
    spec: JobSpec,
    settings: Settings,
    *,
    stores: Stores | None = None,
    preset: str | None = None,
    overrides: dict[str, Any] | None = None,
    run_id: str | None = None,
    progress: bool = True,
    spot: bool | None = None,
    ec2: Any = None,
) -> str:
    """Launch one instance for a new run of ``spec`` (or relaunch run ``run_id``); return its id.

    ``spot`` defaults to the job spec's ``spot``. The run goes on on the instance; follow it
    with `stnlp runs show` or ``--wait``.
    """
    if not settings.uses_s3:
        raise UserError("the ec2 backend needs a deployed stack: use --stack NAME (store 's3')")
    manifest = load_manifest(settings)
    stores = stores or open_stores(settings)
    ec2 = ec2 or s3_client(settings, "ec2")
    use_spot = spec.spot if spot is None else spot
    run = _resume(stores, settings.stack, spec, run_id) if run_id else None
    resuming = run is not None
    if run is None:
        run = start_run(spec, stores, settings.stack, "ec2", spot=use_spot, preset=preset,
                        overrides=overrides, run_id=run_id)

    def launch() -> str:
        request = launch_request(spec, manifest, settings.stack, run.run_id, spot=use_spot,
                                 launch=len(run.record.get("launches", [])) + 1)
        return ec2.run_instances(**request)["Instances"][0]["InstanceId"]

    instance_id = launch_or_fail(run, stores, launch, what="launch", resuming=resuming)
    launches = [*run.record.get("launches", []), instance_id]
    run.heartbeat(instance_id=instance_id, launches=launches)
    logs.event(log, "instance launched", run_id=run.run_id, instance_id=instance_id,
               spot=use_spot, resumed=resuming)
    return run.run_id


def stack_instances(settings: Settings, ec2: Any = None) -> list[dict[str, Any]]:
    """This stack's training instances that are pending or running, with their run ids."""
    ec2 = ec2 or s3_client(settings, "ec2")
    pages = ec2.get_paginator("describe_instances").paginate(Filters=[
        {"Name": f"tag:{TAG_STACK}", "Values": [settings.stack]},
        {"Name": "tag-key", "Values": [TAG_RUN]},
        {"Name": "instance-state-name", "Values": ["pending", "running"]},
    ])  # fmt: skip
    found = []
    for page in pages:
        for reservation in page["Reservations"]:
            for instance in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
                found.append({"instance_id": instance["InstanceId"], "run_id": tags[TAG_RUN],
                              "job": tags.get(TAG_JOB)})
    return found



def kill_ec2_run(settings: Settings, stores: Stores, run_id: str, ec2: Any = None) -> Run:
    """Terminate the run's instance (if it has one), then record ``killed`` (``failed``
    outside training)."""

    def terminate(run: Run) -> str:
        instance_id = run.record.get("instance_id")
        if not instance_id:
            return "it had no instance yet"
        (ec2 or s3_client(settings, "ec2")).terminate_instances(InstanceIds=[instance_id])
        return "instance terminated"

    return kill_run(stores, settings.stack, run_id, terminate)


def sweep_instances(
    settings: Settings, stores: Stores, ec2: Any = None, stale_after: float = STALE_AFTER_SECONDS
) -> list[dict[str, Any]]:
    """Terminate this stack's instances whose run has ended, is unknown or has gone stale.

    A stale run (no heartbeat for ``stale_after`` seconds) is recorded ``failed`` and cleaned
    up. Returns what was terminated, each with the reason.
    """
    ec2 = ec2 or s3_client(settings, "ec2")
    swept = []
    for instance in stack_instances(settings, ec2):
        try:
            run = load_run(stores, settings.stack, instance["run_id"])
        except UserError:
            run = None
        if run is None:
            reason = "no run record"
        elif run.state == "cleanup":
            reason = f"run ended ({run.record.get('result')})"
        elif is_stale(run.record, stale_after):
            reason = f"no heartbeat since {run.record['heartbeat']}"
        else:
            continue
        ec2.terminate_instances(InstanceIds=[instance["instance_id"]])
        if run is not None and run.state != "cleanup":
            run.fail(f"swept: {reason}; instance terminated")
            run.cleanup()
        swept.append({**instance, "reason": reason})
        logs.event(log, "instance swept", reason=reason, **instance)
    return swept
