"""SageMaker's side of a job, played in a sandbox folder: what the service and the image's
training toolkit do before the project's code runs, so the entry script the launch shipped runs
for real (its checks, its pip install, the container module, the bootstrap).

- Training (and each tuning trial): every input channel's S3 objects are downloaded into
  ``opt/ml/input/data/<channel>/``, the hyperparameters written to
  ``opt/ml/input/config/hyperparameters.json``, and, as the toolkit does in script mode,
  ``sagemaker_submit_directory`` (a tar.gz) is extracted into ``opt/ml/code`` and
  ``sagemaker_program`` run as ``/bin/sh -c "./<program> --key value ..."``; ``TRAINING_JOB_NAME``
  names the job.

The "image" is a venv over this environment (:func:`tests.test_userdata_sandbox._ami`); the
absolute paths of the scripts move under the sandbox. Every AWS call the container makes is
recorded as the SageMaker role's (``Cloud.instance_env``) and judged when the test ends.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from stnlp.runtime.store import s3_client
from tests.cloud_stack import RECORDER, Cloud
from tests.test_userdata_sandbox import _ami


class SageMakerSandbox:
    """Runs the containers of the jobs a test's requests describe."""

    def __init__(self, cloud: Cloud, root: Path):
        self.cloud, self.root = cloud, root
        self.s3 = s3_client(cloud.settings)
        self.image = _ami(root / "image")

    def _download(self, uri: str, folder: Path) -> None:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for item in (o for page in pages for o in page.get("Contents", [])):
            target = folder / item["Key"][len(prefix):].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(bucket, item["Key"], str(target))

    def _paths(self, box: Path, text: str) -> str:
        return (text.replace("/opt/pytorch", str(self.image))
                .replace("/opt/stnlp", str(box / "stnlp"))
                .replace("/opt/ml", str(box / "opt" / "ml"))
                .replace("/tmp/stnlp", str(box / "tmp" / "stnlp")))  # fmt: skip

    def _rewrite_archive(self, box: Path, archive: Path) -> None:
        """The entry archive with its script's absolute paths moved under ``box``."""
        with tarfile.open(archive, mode="r:gz") as tar:
            members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
        with tarfile.open(archive, mode="w:gz") as tar:
            for member, data in members:
                data = self._paths(box, data.decode()).encode()
                member.size = len(data)
                tar.addfile(member, io.BytesIO(data))

    def _env(self, box: Path, environment: dict[str, str], **extra: str) -> dict[str, str]:
        env = self.cloud.instance_env(box / "work", "http://127.0.0.1:9", principal="sagemaker",
                                      STNLP_PREFLIGHT_GPUS="0")
        env.update({k: self._paths(box, v) for k, v in environment.items()})
        env.update(
            PATH=os.pathsep.join([str(self.image / "bin"), "/usr/bin", "/bin"]),
            PYTHONPATH=str(RECORDER), PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
            PIP_NO_CACHE_DIR="1", STNLP_WORKDIR=str(box / "work"), **extra,
        )  # fmt: skip
        return env

    def train(self, name: str, definition: dict[str, Any],
              hyperparameters: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run training job ``name`` of ``definition`` (a CreateTrainingJob request or a tuning
        job's TrainingJobDefinition, with the trial's ``hyperparameters``)."""
        box = self.root / name
        data = box / "opt" / "ml" / "input" / "data"
        for channel in definition["InputDataConfig"]:
            uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
            self._download(uri, data / channel["ChannelName"])
        params = {**(definition.get("HyperParameters") or definition["StaticHyperParameters"]),
                  **(hyperparameters or {})}  # fmt: skip
        config = box / "opt" / "ml" / "input" / "config"
        config.mkdir(parents=True)
        (config / "hyperparameters.json").write_text(json.dumps(params))
        code = box / "opt" / "ml" / "code"
        archive = params["sagemaker_submit_directory"].removeprefix("s3://")
        bucket, _, key = archive.partition("/")
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            tar.extractall(code, filter="data")
        program = code / params["sagemaker_program"]
        program.write_text(self._paths(box, program.read_text()))
        args = " ".join(f"--{k} {v}" for k, v in params.items() if not k.startswith("sagemaker_"))
        env = self._env(box, definition.get("Environment") or {}, TRAINING_JOB_NAME=name,
                        SM_INPUT_CONFIG_DIR=str(config), STNLP_CHECKPOINT_DIR=str(box / "ckpt"))
        return subprocess.run(["/bin/sh", "-c", f"./{program.name} {args}"], cwd=code, env=env,
                              capture_output=True, text=True, timeout=240)
