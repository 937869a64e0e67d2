"""The EC2 backend: one ephemeral GPU instance per run, launched from the job's launch template.

``train_ec2`` reads the stack manifest and checks, before anything is created, what AWS would
refuse or what would leave a run that cannot train (:func:`stnlp.runtime.launchcheck.check_launch`:
the input datasets, the instance type in a subnet's zone, the vCPU quota, the permission to
launch and pass the training role). It builds the release the instance will install (the
project's wheel, plugin wheels, the dependency lock: :mod:`stnlp.runtime.backends.package`),
takes the job lock, creates the run record, uploads the release (content-addressed, so an
unchanged checkout uploads nothing) and launches ONE instance from the job's launch template into
the stack's subnet, with the run's own user data, tags and market options. It returns the run
id at once: the instance's bootstrap (:mod:`stnlp.runtime.bootstrap`) drives the run from there
and the instance shuts itself down (= terminates) at the end.

``dry_run`` stops before the lock: it returns the :class:`LaunchPlan` (the request, the user
data's size, what would be uploaded, the estimated cost) and creates nothing.

Relaunching with the ``run_id`` of a run a spot interruption left in ``data_sync`` or
``training`` (its lock still held) starts a new instance for the same run, which resumes from
the run's checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import TAG_JOB, TAG_RUN, TAG_STACK
from stnlp.common.settings import Settings
from stnlp.common.userdata import ShippedFile, render_user_data
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.cloud import kill_run, launch_or_fail, start_run
from stnlp.runtime.backends.package import Release, build_release, upload_release
from stnlp.runtime.cost import RunCost, run_cost
from stnlp.runtime.launchcheck import check_dry_run, check_launch, stack_spot
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.runs import (
    STALE_AFTER_SECONDS,
    Run,
    is_stale,
    list_runs,
    load_run,
    new_run_id,
)
from stnlp.runtime.store import Stores, open_stores, s3_client

log = logging.getLogger(__name__)

RESUMABLE_STATES = ("initialization", "data_sync", "training")
SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
}


@dataclass(frozen=True)
class LaunchPlan:
    """What one launch sends: the RunInstances request, the release and the estimated cost."""

    request: dict[str, Any]
    release: Release
    cost: RunCost

    @property
    def user_data_bytes(self) -> int:
        """The size of the run's user data (EC2 accepts at most 16 KB)."""
        return len(self.request["UserData"].encode())


def shipped(release: Release) -> tuple[list[ShippedFile], ShippedFile]:
    """The release as the user data names it: ``(wheels, lock)``."""
    def named(item) -> ShippedFile:
        return ShippedFile(item.key, item.filename, item.digest)

    return [named(w) for w in release.wheels], named(release.lock)


def launch_request(
    spec: JobSpec, manifest: dict[str, Any], stack: str, run_id: str, *, spot: bool,
    subnet_id: str, release: Release, launch: int = 1,
) -> dict[str, Any]:  # fmt: skip
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
    wheels, lock = shipped(release)
    user_data = render_user_data(
        stack, spec.name, manifest["region"], run_id=run_id, buckets=manifest["buckets"],
        wheels=wheels, lock=lock, max_runtime_minutes=spec.max_runtime_minutes,
    )  # fmt: skip
    request: dict[str, Any] = {
        "LaunchTemplate": {"LaunchTemplateId": template["id"], "Version": "$Latest"},
        "MinCount": 1,
        "MaxCount": 1,
        "SubnetId": subnet_id,
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


def plan_launch(
    spec: JobSpec, settings: Settings, manifest: dict[str, Any], stores: Stores, ec2: Any,
    *, spot: bool | None, run_id: str, launch: int = 1,
) -> LaunchPlan:  # fmt: skip
    """Check the launch and build what it would send, creating nothing."""
    use_spot = stack_spot(spec, manifest, spot)
    subnet_id = check_launch(spec, settings, manifest, stores, ec2, spot=use_spot)
    release = build_release(manifest)
    request = launch_request(spec, manifest, settings.stack, run_id, spot=use_spot,
                             subnet_id=subnet_id, release=release, launch=launch)
    check_dry_run(request, manifest, ec2)
    cost = run_cost(spec, spot=use_spot, nat=bool(manifest.get("nat_gateway")))
    return LaunchPlan(request, release, cost)


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
    dry_run: bool = False,
) -> str | LaunchPlan:
    """Launch one instance for a new run of ``spec`` (or relaunch run ``run_id``); return its id.

    ``spot`` defaults to the job spec's ``spot`` and is never used on a stack whose config says
    ``spot: false``. With ``dry_run``, return the :class:`LaunchPlan` and create nothing.
    """
    if not settings.uses_s3:
        raise UserError("the ec2 backend needs a deployed stack: use --stack NAME (store 's3')")
    manifest = load_manifest(settings)
    stores = stores or open_stores(settings)
    ec2 = ec2 or s3_client(settings, "ec2")
    run = _resume(stores, settings.stack, spec, run_id) if run_id else None
    launches = len(run.record.get("launches", [])) + 1 if run else 1
    the_id = run_id or new_run_id(spec.name)
    plan = plan_launch(spec, settings, manifest, stores, ec2, spot=spot, run_id=the_id,
                       launch=launches)
    if dry_run:
        return plan
    use_spot = "InstanceMarketOptions" in plan.request
    resuming = run is not None
    if run is None:
        run = start_run(spec, stores, settings.stack, "ec2", spot=use_spot, preset=preset,
                        overrides=overrides, run_id=the_id)

    def launch() -> str:
        upload_release(plan.release, stores.models)
        return ec2.run_instances(**plan.request)["Instances"][0]["InstanceId"]

    instance_id = launch_or_fail(run, launch, what="launch", resuming=resuming)
    run.heartbeat(instance_id=instance_id, launches=[*run.record.get("launches", []),
                                                     instance_id])
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


def instance_state(ec2: Any, instance_id: str | None) -> str:
    """The instance's state name, ``"gone"`` when EC2 no longer knows it."""
    from botocore.exceptions import ClientError

    if not instance_id:
        return "none"
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except ClientError as exc:
        if "InvalidInstanceID" in str(exc.response.get("Error", {}).get("Code", "")):
            return "gone"
        raise
    if not reservations:
        return "gone"
    return reservations[0]["Instances"][0]["State"]["Name"]


def awaiting_resume(record: dict[str, Any]) -> bool:
    """True for a run a spot interruption stopped on its current instance (resume it)."""
    interruptions = record.get("spot_interruptions") or []
    return bool(interruptions) and interruptions[-1].get("instance_id") == record.get("instance_id")


def sweep_instances(
    settings: Settings, stores: Stores, ec2: Any = None, stale_after: float = STALE_AFTER_SECONDS
) -> list[dict[str, Any]]:
    """Terminate this stack's instances whose run has ended, is unknown or has gone stale, and
    end the open EC2 runs whose instance is already gone (unless a spot notice stopped it).

    A stale run (no heartbeat for ``stale_after`` seconds) is recorded ``failed`` and cleaned
    up. Returns what was swept, each with the reason.
    """
    ec2 = ec2 or s3_client(settings, "ec2")
    swept = []
    running = set()
    for instance in stack_instances(settings, ec2):
        running.add(instance["instance_id"])
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
    for record in list_runs(stores, settings.stack):
        if record["backend"] != "ec2" or record["state"] == "cleanup":
            continue
        instance_id = record.get("instance_id")
        if instance_id in running or awaiting_resume(record):
            continue
        state = instance_state(ec2, instance_id)
        if state in ("pending", "running", "stopping", "stopped") or (
            state == "none" and not is_stale(record, stale_after)
        ):
            continue
        reason = f"its instance is {state}" if instance_id else "it never got an instance"
        run = load_run(stores, settings.stack, record["run_id"])
        run.fail(f"swept: {reason} and the run never recorded its end")
        run.cleanup()
        swept.append({"instance_id": instance_id, "run_id": record["run_id"],
                      "job": record["job"], "reason": reason})
        logs.event(log, "run swept", run_id=record["run_id"], reason=reason)
    return swept
