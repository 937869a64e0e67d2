"""Hyperparameter tuning on SageMaker: one tuning job whose trials are training jobs.

:func:`tune_sagemaker` builds and uploads the container release (as a training run does),
records the tuning (:func:`stnlp.runtime.tune.save_tuning`) and calls
``CreateHyperParameterTuningJob``: the job's search space becomes SageMaker's parameter ranges
(:func:`parameter_ranges`), the objective a metric definition whose regex
(:func:`stnlp.runtime.tune.metric_regex`) reads the ``stnlp-metric NAME=VALUE`` lines the
container's bootstrap prints for each logged metrics entry. Each trial's container
(``STNLP_MODE=trial``, :mod:`stnlp.runtime.backends.container`) creates its own run, named after
its training job and publishing to the trial model, so trials are ordinary runs.
``MaxParallelTrainingJobs`` is 1: trials take the job's lock in turn.

:func:`finish_sagemaker` reads the tuning job's status; once it has ended, the trial table is
built from the run records naming the tuning and the best trial is published
(:func:`stnlp.runtime.tune.finish`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.backends.sagemaker import (
    ContainerRelease,
    container_environment,
    container_release,
    job_definition,
    script_mode,
    tags,
    upload_container_release,
)
from stnlp.runtime.launchcheck import check_datasets, stack_spot
from stnlp.runtime.manifest import load_manifest
from stnlp.runtime.store import Stores, open_stores, s3_client
from stnlp.runtime.tune import (
    Objective,
    TuningResult,
    check_tunable,
    finish,
    load_tuning,
    metric_regex,
    new_tuning_id,
    save_tuning,
    tuning_rows,
)

log = logging.getLogger(__name__)

ENDED = ("Completed", "Failed", "Stopped")
SCALING = {"linear": "Linear", "log": "Logarithmic"}
TAG_TUNING = "stnlp:tuning"


def parameter_ranges(spec: JobSpec) -> dict[str, list[dict[str, Any]]]:
    """SageMaker's ``ParameterRanges`` for ``spec.search_space`` (every value as a string)."""
    kinds = spec.parameter_types()
    ranges: dict[str, list[dict[str, Any]]] = {
        "IntegerParameterRanges": [], "ContinuousParameterRanges": [],
        "CategoricalParameterRanges": []}  # fmt: skip
    for name, space in sorted(spec.search_space.items()):
        if "values" in space:
            values = [json.dumps(v) if isinstance(v, bool) else str(v) for v in space["values"]]
            ranges["CategoricalParameterRanges"].append({"Name": name, "Values": values})
            continue
        kind = "IntegerParameterRanges" if kinds[name] == "int" else "ContinuousParameterRanges"
        ranges[kind].append({"Name": name, "MinValue": str(space["min"]),
                             "MaxValue": str(space["max"]),
                             "ScalingType": SCALING[space.get("scale", "linear")]})
    return {kind: items for kind, items in ranges.items() if items}


def tuning_job_request(
    spec: JobSpec, manifest: dict[str, Any], stack: str, tuning_id: str, *, max_trials: int,
    objective: Objective, spot: bool, container: ContainerRelease,
    fixed: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """The ``create_hyper_parameter_tuning_job`` arguments; ``fixed`` holds the trials'
    hyperparameters outside the search (preset and ``--set`` values)."""
    region, models = manifest["region"], manifest["buckets"]["models"]
    definition = job_definition(spec, manifest, stack, f"{stack}/tunings/{tuning_id}/sagemaker",
                                spot=spot, container=container)
    definition["AlgorithmSpecification"]["MetricDefinitions"] = [
        {"Name": objective.metric, "Regex": metric_regex(objective.metric)}]
    return {
        "HyperParameterTuningJobName": tuning_id,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": objective.direction,
                                                 "MetricName": objective.metric},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_trials,
                               "MaxParallelTrainingJobs": 1},
            "ParameterRanges": parameter_ranges(spec),
            "TrainingJobEarlyStoppingType": "Off",
        },
        "TrainingJobDefinition": {
            **definition,
            "StaticHyperParameters": script_mode(container, models, region),
            "Environment": container_environment(
                stack, region, "trial", STNLP_JOB=spec.name, STNLP_TUNING=tuning_id,
                STNLP_SPOT="true" if spot else "false",
                STNLP_TRIAL_PARAMS=json.dumps(dict(fixed), sort_keys=True)),
        },
        "Tags": tags(stack, spec.name, **{TAG_TUNING: tuning_id}),
    }  # fmt: skip


def tune_sagemaker(
    spec: JobSpec, settings: Settings, *, max_trials: int, objective: Objective,
    preset: str | None = None, overrides: Mapping[str, Any] | None = None,
    stores: Stores | None = None, image: str | None = None, image_python: str | None = None,
    sagemaker: Any = None,
) -> str:  # fmt: skip
    """Start a SageMaker tuning job over ``spec``'s search space; return the tuning id."""
    check_tunable(spec, objective, max_trials)
    if not settings.uses_s3:
        raise UserError("the sagemaker backend needs a deployed stack: use --stack NAME")
    manifest = load_manifest(settings)
    stores = stores or open_stores(settings)
    check_datasets(spec, stores)
    spot = stack_spot(spec, manifest, None)
    resolved = spec.resolved_hyperparameters(preset, dict(overrides or {}))
    fixed = {k: v for k, v in resolved.items() if k not in spec.search_space}
    container = container_release(manifest, image, image_python)
    tuning_id = new_tuning_id()
    request = tuning_job_request(spec, manifest, settings.stack, tuning_id,
                                 max_trials=max_trials, objective=objective, spot=spot,
                                 container=container, fixed=fixed)  # fmt: skip
    upload_container_release(container, stores.models)
    save_tuning(stores, settings.stack, tuning_id, spec, objective, "sagemaker", max_trials)
    (sagemaker or s3_client(settings, "sagemaker")).create_hyper_parameter_tuning_job(**request)
    logs.event(log, "tuning job created", tuning=tuning_id, job=spec.name, trials=max_trials)
    return tuning_id


def finish_sagemaker(
    settings: Settings, stores: Stores, tuning_id: str, registry: Any, sagemaker: Any = None
) -> TuningResult | str:
    """Publish the best trial of an ended tuning job; while it runs, return its status."""
    record = load_tuning(stores, settings.stack, tuning_id)
    client = sagemaker or s3_client(settings, "sagemaker")
    status = client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=tuning_id)["HyperParameterTuningJobStatus"]
    if status not in ENDED:
        return status
    spec = registry.job(record["job"])
    objective = Objective(record["objective"], record["direction"] == "Maximize")
    return finish(stores, spec, tuning_rows(stores, settings.stack, tuning_id, spec, objective),
                  objective, tuning_id)
