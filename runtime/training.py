"""The contract between the runtime and a job's entrypoint.

The runtime (any backend) prepares directories, then imports ``JobSpec.entrypoint`` and calls
it with a :class:`TrainingContext`. The entrypoint reads its inputs from
``ctx.dataset(name)``, writes checkpoints under ``ctx.checkpoint_dir`` (resuming from them when
present), records metrics with ``ctx.log_metrics``, writes the artifacts to publish into
``ctx.output_dir`` and returns a :class:`TrainingOutcome`. The context travels to a subprocess
or an instance as JSON.
"""

from __future__ import annotations

import importlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runtime.errors import UserError


@dataclass(frozen=True)
class TrainingOutcome:
    """What an entrypoint returns: final metrics and the base model it started from."""

    metrics: dict[str, Any] = field(default_factory=dict)
    base_model: str | None = None


@dataclass(frozen=True)
class TrainingContext:
    """Everything a job's entrypoint needs, as plain paths and values."""

    run_id: str
    job: str
    hyperparameters: dict[str, Any]
    data_dir: Path
    output_dir: Path
    checkpoint_dir: Path
    metrics_path: Path

    def dataset(self, name: str) -> Path:
        """The local folder holding dataset ``name`` (e.g. ``transcripts``), checked to exist."""
        path = self.data_dir / name
        if not path.is_dir():
            raise UserError(f"job {self.job!r}: dataset {name!r} not found at {path}")
        return path

    def param(self, key: str, default: Any = None) -> Any:
        """One hyperparameter, or ``default``."""
        return self.hyperparameters.get(key, default)

    def log_metrics(self, step: int | None = None, **metrics: Any) -> None:
        """Append one metrics record to ``training.json`` (a JSON list), atomically."""
        history = self.read_metrics()
        history.append({"time": time.time(), "step": step, **metrics})
        tmp = self.metrics_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(history, indent=1), encoding="utf-8")
        tmp.replace(self.metrics_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metrics records logged so far."""
        if not self.metrics_path.exists():
            return []
        return json.loads(self.metrics_path.read_text(encoding="utf-8"))

    def to_json(self) -> str:
        """Serialise for a subprocess or an instance."""
        data = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def from_json(cls, text: str) -> TrainingContext:
        """Inverse of :meth:`to_json`."""
        data = json.loads(text)
        paths = ("data_dir", "output_dir", "checkpoint_dir", "metrics_path")
        return cls(**{k: Path(v) if k in paths else v for k, v in data.items()})

    @classmethod
    def in_directory(
        cls, root: Path, run_id: str, job: str, hyperparameters: dict[str, Any], data_dir: Path
    ) -> TrainingContext:
        """A context whose output, checkpoint and metrics paths live under ``root``."""
        ctx = cls(
            run_id=run_id,
            job=job,
            hyperparameters=dict(hyperparameters),
            data_dir=data_dir,
            output_dir=root / "output",
            checkpoint_dir=root / "checkpoints",
            metrics_path=root / "training.json",
        )
        ctx.output_dir.mkdir(parents=True, exist_ok=True)
        ctx.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        return ctx


def import_entrypoint(spec: str):
    """Import ``"package.module:function"`` and return the function."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"entrypoint {spec!r}: cannot import {module_name!r}: {exc}") from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise UserError(f"entrypoint {spec!r}: {module_name!r} has no {attr!r}") from exc


def run_entrypoint(spec: str, ctx: TrainingContext) -> TrainingOutcome:
    """Call the entrypoint and check it returned a :class:`TrainingOutcome`."""
    outcome = import_entrypoint(spec)(ctx)
    if not isinstance(outcome, TrainingOutcome):
        raise TypeError(
            f"entrypoint {spec!r} returned {type(outcome).__name__}, not TrainingOutcome"
        )
    return outcome
