"""What a SageMaker container runs once its entry script has installed the release.

``python -m stnlp.runtime.backends.container`` reads what to do from the job's environment
(``STNLP_MODE``, set by the request that started the job):

- ``train``: the bootstrap of run ``STNLP_RUN_ID``, which the launcher created, as on EC2;
- ``trial``: a tuning trial. SageMaker's tuning job started this training job
  (``TRAINING_JOB_NAME``) with the tuned hyperparameters in ``hyperparameters.json``; the
  trial's run is created here, named after the training job so a container that SageMaker
  restarts (spot) finds its run again, and publishes to the trial model; then the bootstrap.
- ``shard``: shard ``STNLP_SHARD`` of the batch run ``STNLP_RUN_ID`` (a processing job;
  :func:`stnlp.runtime.batch.shard_job`).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings, load_settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.runs import NoRunError, check_run_id, load_run
from stnlp.runtime.store import open_stores

log = logging.getLogger(__name__)

CONFIG_DIR = "/opt/ml/input/config"  # SageMaker's; SM_INPUT_CONFIG_DIR where the toolkit sets it
MODES = ("train", "trial", "shard")


def _settings(env: Mapping[str, str]) -> Settings:
    return load_settings().with_overrides(store="s3", stack=env["STNLP_STACK"])


def _spec(settings: Settings, job: str) -> JobSpec:
    from stnlp.plugins.manager import build_plugin_manager

    return build_plugin_manager(settings).job(job)


def tuned_values(spec: JobSpec, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """The searched hyperparameters SageMaker chose, parsed to their kinds (it sends text)."""
    return {key: spec.parse_override(key, str(hyperparameters[key]))
            for key in spec.search_space if key in hyperparameters}  # fmt: skip


def start_trial(env: Mapping[str, str]) -> str:
    """Create the run of this tuning trial unless it exists (a restarted container); its id."""
    from stnlp.runtime.backends.cloud import start_run
    from stnlp.runtime.tune import trial_spec

    settings = _settings(env)
    stores = open_stores(settings)
    run_id = check_run_id(env["TRAINING_JOB_NAME"])
    try:
        load_run(stores, settings.stack, run_id)
        return run_id
    except NoRunError:
        pass
    spec = _spec(settings, env["STNLP_JOB"])
    folder = Path(env.get("SM_INPUT_CONFIG_DIR", CONFIG_DIR))
    chosen = json.loads((folder / "hyperparameters.json").read_text(encoding="utf-8"))
    base = json.loads(env.get("STNLP_TRIAL_PARAMS") or "{}")
    start_run(trial_spec(spec), stores, settings.stack, "sagemaker",
              spot=env.get("STNLP_SPOT") == "true", preset=None,
              overrides={**base, **tuned_values(spec, chosen)}, run_id=run_id,
              tuning=env["STNLP_TUNING"], job_id=run_id)  # fmt: skip
    logs.event(log, "tuning trial started", run_id=run_id, tuning=env["STNLP_TUNING"])
    return run_id


def _bootstrap(env: Mapping[str, str], run_id: str) -> int:
    from stnlp.runtime import bootstrap

    return bootstrap.main(["--stack", env["STNLP_STACK"], "--job", env["STNLP_JOB"],
                           "--run-id", run_id, "--platform", "sagemaker"])


def run(env: Mapping[str, str]) -> int:
    """Do what ``env`` says; the exit status (SageMaker marks the job failed unless 0)."""
    mode = env.get("STNLP_MODE", "train")
    if mode not in MODES:
        raise UserError(f"STNLP_MODE={mode!r} is not one of {', '.join(MODES)}")
    if mode == "train":
        return _bootstrap(env, env["STNLP_RUN_ID"])
    if mode == "shard":
        from stnlp.runtime.batch import shard_job

        settings = _settings(env)
        shard_job(env, _spec(settings, env["STNLP_JOB"]), settings.stack, open_stores(settings))
        return 0
    return _bootstrap(env, start_trial(env))


def main() -> int:
    """Entry point of the container (after the entry script's install)."""
    logs.configure(os.environ.get("STNLP_LOG_LEVEL", "INFO"))
    try:
        return run(os.environ)
    except Exception as exc:  # one line in the job's log; SageMaker records the failure
        logs.event(log, "container failed", logging.ERROR, error=f"{type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
