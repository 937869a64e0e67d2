"""The one-command local demo: sample data -> small models through the local backend -> interface.

No cloud and no network: the datasets go into the local store, and every job with a demo preset
trains as a local subprocess and publishes to the local registry. A job's demo preset is
``local`` where it has one (a real model that trains on a CPU in minutes: the chatbots'
SmolLM2-135M-Instruct), else ``tiny``. Each trained model is
fingerprinted from its input files' sha256, its job spec and its preset; the fingerprints live
in the results store at ``<stack>/demo/fingerprints.json``, so a rerun reuses a model unless its
data or configuration changed, its version is no longer the registry's latest, or a file of it
is missing or damaged.

Two jobs whose training is the same (one entrypoint, the same preset hyperparameters and input
files: the two chatbots' ``local`` presets both fine-tune SmolLM2 on the same character) are
trained once: the second gets a copy of the first's version, its manifest naming the version
it copies (``same_training_as``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime import logs
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.store import NotFoundError, Stores, open_stores, sha256_file

log = logging.getLogger(__name__)

PRESETS = ("local", "tiny")
"""The demo's presets in order of preference: a job trains on the first one it has."""


def demo_preset(spec: JobSpec, presets: tuple[str, ...] = PRESETS) -> str | None:
    """The first of ``presets`` that ``spec`` has, or ``None`` (the demo skips the job)."""
    return next((name for name in presets if name in spec.presets), None)


@dataclass(frozen=True)
class DemoJob:
    """What the demo did with one job: ``trained``, ``reused``, ``copied`` (from ``source``,
    a job of the same training) or ``skipped`` (no demo preset)."""

    job: str
    model: str
    action: str
    version: str | None
    fingerprint: str | None
    source: str | None = None


def data_fingerprint(data_dir: Path, datasets: tuple[str, ...]) -> dict[str, str]:
    """``relative path -> sha256`` of every file of ``datasets`` under ``data_dir``."""
    hashes = {}
    for name in datasets:
        folder = data_dir / name
        if not folder.is_dir():
            raise UserError(f"{data_dir}: dataset folder {name!r} is missing")
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            hashes[path.relative_to(data_dir).as_posix()] = sha256_file(path)
    return hashes


def training_fingerprint(spec: JobSpec, data_dir: Path, preset: str = "tiny") -> str:
    """sha256 over what the training process sees: the entrypoint, the preset's
    hyperparameters and the input files (not the job's name, model or machine)."""
    material = {
        "data": data_fingerprint(data_dir, spec.input_datasets),
        "entrypoint": spec.entrypoint,
        "hyperparameters": spec.resolved_hyperparameters(preset),
    }
    return _digest(material)


def job_fingerprint(
    spec: JobSpec, data_dir: Path, preset: str = "tiny", training: str | None = None
) -> str:
    """sha256 over the job's training fingerprint (``training``, computed when not given),
    its whole spec and its preset's name."""
    training = training or training_fingerprint(spec, data_dir, preset)
    return _digest({"training": training, "spec": asdict(spec), "preset": preset})


def _digest(material: dict[str, Any]) -> str:
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class FingerprintBook:
    """The demo's record of which fingerprint produced which model version."""

    def __init__(self, stores: Stores, stack: str):
        self.store = stores.results
        self.key = f"{stack}/demo/fingerprints.json"

    def read(self) -> dict[str, dict[str, Any]]:
        """Job name -> ``{"fingerprint", "model", "version"}``."""
        try:
            return json.loads(self.store.get(self.key))
        except NotFoundError:
            return {}

    def record(self, job: str, entry: dict[str, Any]) -> None:
        """Store ``entry`` for ``job`` (the demo runs its jobs one after another)."""
        book = self.read()
        book[job] = entry
        self.store.put(self.key, json.dumps(book, indent=1, sort_keys=True).encode())


def load_sample(stores: Stores, data_dir: Path) -> list[str]:
    """Validate ``data_dir`` and upload its datasets to ``raw/<dataset>/`` in the datasets store
    (unchanged files are skipped); return the dataset names."""
    from stnlp.runtime.upload import upload_path

    report = upload_path(data_dir, stores.datasets, progress=False)
    return sorted({key.split("/")[1] for key in report.uploaded + report.skipped})


def _latest(stores: Stores, model: str) -> str | None:
    from stnlp.runtime.registry import ModelRegistry

    return ModelRegistry(stores.models).latest(model)


def _intact(stores: Stores, model: str, version: str) -> bool:
    """Whether ``version`` of ``model`` is complete, every checksum right (else it retrains)."""
    from stnlp.runtime.registry import CorruptModelError, ModelRegistry

    try:
        ModelRegistry(stores.models).verify(model, version)
    except CorruptModelError as exc:
        logs.event(log, "model damaged, retraining", logging.WARNING, model=model,
                   version=version, reason=str(exc))  # fmt: skip
        return False
    return True


def _train(spec: JobSpec, settings: Settings, stores: Stores, preset: str) -> str:
    from stnlp.runtime.backends import get_backend
    from stnlp.runtime.runs import load_run

    run_id = get_backend("local")(spec, settings, stores=stores, preset=preset, progress=True)
    record = load_run(stores, settings.stack, run_id).record
    if record.get("result") != "succeeded":
        why = record.get("error") or record.get("result")
        raise UserError(f"demo: job {spec.name!r} did not succeed (run {run_id}): {why}")
    version = _latest(stores, spec.output_model)
    if version is None:
        raise UserError(f"demo: job {spec.name!r} published no {spec.output_model!r} model")
    return version


def _copy(stores: Stores, source: DemoJob, spec: JobSpec) -> str:
    """Publish ``source``'s model version as ``spec.output_model``'s new latest version."""
    from stnlp.runtime.registry import ModelRegistry

    registry = ModelRegistry(stores.models)
    origin = {"job": source.job, "model": source.model, "version": source.version}
    with tempfile.TemporaryDirectory(prefix="stnlp-demo-copy-") as folder:
        manifest = registry.fetch(source.model, source.version, Path(folder)).manifest
        return registry.publish(
            spec.output_model,
            Path(folder),
            base_model=manifest.get("base_model"),
            run_id=manifest.get("run_id"),
            metrics=manifest.get("metrics"),
            extra={"same_training_as": origin},
        )


def train_all(
    settings: Settings,
    registry,
    data_dir: Path = SAMPLE_DIR,
    retrain: bool = False,
    presets: tuple[str, ...] = PRESETS,
) -> list[DemoJob]:
    """Load ``data_dir`` into the local store and train (or reuse) every job's demo model
    (its first preset of ``presets``; the tests pass ``("tiny",)``). A job whose training
    fingerprint matches an earlier job's of this run gets a copy of that job's version."""
    if settings.uses_s3:
        raise UserError("stnlp demo runs on a local store only: unset STNLP_STORE=s3")
    if not data_dir.is_dir():
        raise UserError(f"demo data folder {data_dir} does not exist")
    stores = open_stores(settings)
    load_sample(stores, data_dir)
    book = FingerprintBook(stores, settings.stack)
    done = []
    by_training: dict[str, DemoJob] = {}
    for spec in registry.job_specs():
        preset = demo_preset(spec, presets)
        if preset is None:
            logs.event(log, "no demo preset, not trained", job=spec.name, presets=presets)
            done.append(DemoJob(spec.name, spec.output_model, "skipped", None, None))
            continue
        training = training_fingerprint(spec, data_dir, preset)
        fingerprint = job_fingerprint(spec, data_dir, preset, training)
        known = book.read().get(spec.name, {})
        latest = _latest(stores, spec.output_model)
        unchanged = (
            not retrain
            and known.get("fingerprint") == fingerprint
            and known.get("version") == latest
            and _intact(stores, spec.output_model, latest)
        )
        same = by_training.get(training)
        if unchanged:
            logs.event(log, "reusing model", job=spec.name, version=latest)
            job = DemoJob(spec.name, spec.output_model, "reused", latest, fingerprint)
        elif same is not None:
            version = _copy(stores, same, spec)
            logs.event(log, "same training, model copied", job=spec.name, source=same.job,
                       version=version)  # fmt: skip
            job = DemoJob(spec.name, spec.output_model, "copied", version, fingerprint, same.job)
        else:
            version = _train(spec, settings, stores, preset)
            job = DemoJob(spec.name, spec.output_model, "trained", version, fingerprint)
        if job.action != "reused":
            entry = {"fingerprint": fingerprint, "model": job.model, "version": job.version}
            book.record(spec.name, entry)
        by_training.setdefault(training, job)
        done.append(job)
    return done
