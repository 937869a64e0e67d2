"""`stnlp tune --backend sagemaker`: a tuning job on moto whose trials run for real.

moto stores the tuning job (and reports it ``Completed`` at once) but starts no trial. The
sandbox plays SageMaker's part: each trial is a training job of the request's
``TrainingJobDefinition`` with values drawn from its ranges, its container run as SageMaker runs
it. The objective SageMaker would rank by is read from each trial's log with the request's own
metric regex, as SageMaker does (:func:`tests.aws_rules.sagemaker_metric`): the published best
must be the trial SageMaker would call best.
"""

from __future__ import annotations

import pytest

from stnlp.runtime.backends.sagemaker_tune import finish_sagemaker, tune_sagemaker
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.tune import Objective, load_tuning
from tests.aws_rules import sagemaker_metric, tuning_job_problems
from tests.cloud_stack import recording_client
from tests.sagemaker_sandbox import SageMakerSandbox

JOB = "example-linefit"
IMAGE = "123.dkr.ecr.us-east-1.amazonaws.com/stnlp:1-py311"


def test_tuning_job_passes_the_rules_and_publishes_the_trial_sagemaker_ranks_best(cloud, tmp_path):
    sagemaker = recording_client(cloud.settings, "sagemaker", "CreateHyperParameterTuningJob")
    goal = Objective("heldout_mae", maximize=False)
    tuning_id = tune_sagemaker(cloud.registry.job(JOB), cloud.settings, max_trials=2,
                               objective=goal, preset="tiny", overrides={"heldout_every": 2},
                               stores=cloud.stores, image=IMAGE, sagemaker=sagemaker)
    (request,) = sagemaker.sent
    assert tuning_job_problems(request, cloud.facts(), stack_spot=True) == []
    assert load_tuning(cloud.stores, cloud.settings.stack, tuning_id)["direction"] == "Minimize"
    config = request["HyperParameterTuningJobConfig"]
    (searched,) = config["ParameterRanges"]["ContinuousParameterRanges"]
    assert searched["Name"] == "shrinkage"
    definition = request["TrainingJobDefinition"]
    (metric,) = definition["AlgorithmSpecification"]["MetricDefinitions"]
    sandbox, read = SageMakerSandbox(cloud, tmp_path / "sm"), {}
    for number, value in enumerate((searched["MinValue"], "3.25"), start=1):
        name = f"{tuning_id}-{number:03d}-0a1b2c3d"
        done = sandbox.train(name, definition, {"shrinkage": value})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        read[name] = sagemaker_metric(metric["Regex"], done.stdout)
        assert read[name] is not None, "SageMaker would read no objective from the trial's log"
    result = finish_sagemaker(cloud.settings, cloud.stores, tuning_id, cloud.registry,
                              sagemaker=sagemaker)
    assert [row["run_id"] for row in result.trials] == list(read)
    for row in result.trials:
        assert row["result"] == "succeeded"
        assert row["heldout_mae"] == pytest.approx(read[row["run_id"]])
    best = min(read, key=read.get)
    assert result.best["run_id"] == best
    registry = ModelRegistry(cloud.stores.models)
    manifest = registry.manifest("line-length", registry.latest("line-length"))
    assert manifest["run_id"] == best and manifest["tuning"]["id"] == tuning_id
    assert manifest["hyperparameters"] == {"shrinkage": 0.0 if best.endswith("001-0a1b2c3d")
                                           else 3.25}
    assert cloud.lock_holder(JOB) is None
