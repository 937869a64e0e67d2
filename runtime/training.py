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

from stnlp.common.errors import UserError

METRICS_FILE = "metrics.jsonl"
"""The local metrics file: one JSON object per line, appended by ``log_metrics``."""


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
        """Record one metrics entry: a JSON line appended to the local metrics file.

        Appending keeps each call O(1) however long the run; the runtime uploads the entries
        as the run's ``training.json`` list.
        """
        record = {"time": time.time(), "step": step, **metrics}
        with self.metrics_path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        """The metrics entries logged so far (a line still being written is left out)."""
        if not self.metrics_path.exists():
            return []
        text = self.metrics_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.split("\n")[:-1] if line]

    def restore_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace the local metrics with ``records`` (a resumed run's earlier entries)."""
        self.metrics_path.write_text(
            "".join(json.dumps(record) + "\n" for record in records), encoding="utf-8"
        )

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
            metrics_path=root / METRICS_FILE,
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
