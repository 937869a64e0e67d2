"""The EC2 backend: one ephemeral GPU instance per run, launched from the job's launch template.

``train_ec2`` reads the stack manifest, takes the job lock and creates the run record (with the
resolved hyperparameters and the maximum runtime), uploads the runtime's source, and launches
ONE instance from the job's launch template with the run id and job in its tags and user data,
as spot or on-demand. It returns the run id at once: the instance's bootstrap
(:mod:`runtime.bootstrap`) drives the run from there and terminates the instance at the end.

Relaunching with the ``run_id`` of a run a spot interruption left in ``data_sync`` or
``training`` (its lock still held) starts a new instance for the same run, which resumes from
the run's checkpoints.
"""

from __future__ import annotations

import logging
from shlex import quote
from typing import Any

from infra.names import TAG_JOB, TAG_STACK
from infra.userdata import render_user_data
from plugins.spec import JobSpec
from runtime import logs
from runtime.backends.source import build_source_tarball, source_key
from runtime.errors import UserError
from runtime.manifest import load_manifest
from runtime.runs import STALE_AFTER_SECONDS, Run, is_stale, load_run
from runtime.settings import Settings
from runtime.store import Stores, open_stores, s3_client

log = logging.getLogger(__name__)

TAG_RUN = "stnlp:run-id"
RESUMABLE_STATES = ("initialization", "data_sync", "training")
SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
}


def run_user_data(stack: str, job: str, region: str, run_id: str, max_runtime_minutes: int) -> str:
    """The instance's user data for one run: the job's bootstrap script with the run id."""
    script = render_user_data(stack, job, region, max_runtime_minutes=max_runtime_minutes)
    command = f"-m runtime.bootstrap --stack {stack} --job {job}"
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
        run = Run.start(
            stores, settings.stack, spec.name, "ec2", run_id=run_id,
            hyperparameters=spec.resolved_hyperparameters(preset, overrides), preset=preset,
            model=spec.output_model, max_runtime_seconds=spec.max_runtime_minutes * 60,
            spot=use_spot, instance_type=spec.instance_type, gpu_count=spec.gpu_count,
        )  # fmt: skip
    try:
        stores.results.put(source_key(settings.stack, run.run_id), build_source_tarball())
        request = launch_request(spec, manifest, settings.stack, run.run_id, spot=use_spot,
                                 launch=len(run.record.get("launches", [])) + 1)
        instance_id = ec2.run_instances(**request)["Instances"][0]["InstanceId"]
    except Exception as exc:
        if not resuming:
            run.fail(f"launch failed: {type(exc).__name__}: {exc}")
            run.cleanup()
        raise
    launches = [*run.record.get("launches", []), instance_id]
    run.heartbeat(instance_id=instance_id, launches=launches)
    logs.event(log, "instance launched", run_id=run.run_id, instance_id=instance_id,
               spot=use_spot, resumed=resuming)
    return run.run_id


def terminate_run_instance(settings: Settings, record: dict[str, Any], ec2: Any = None) -> bool:
    """Terminate the instance of an EC2 run (if it has one); return whether one was asked to."""
    instance_id = record.get("instance_id")
    if record.get("backend") != "ec2" or not instance_id:
        return False
    ec2 = ec2 or s3_client(settings, "ec2")
    ec2.terminate_instances(InstanceIds=[instance_id])
    return True


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
    """Record ``killed`` (``failed`` outside training) and terminate the run's instance."""
    run = load_run(stores, settings.stack, run_id)
    if run.state == "cleanup":
        raise UserError(f"run {run_id} has already ended ({run.record.get('result')})")
    terminate_run_instance(settings, run.record, ec2)
    run.fail("killed by `stnlp runs kill`; instance terminated", killed=True)
    run.cleanup()
    return run


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
