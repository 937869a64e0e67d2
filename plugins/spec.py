"""What plugins contribute: components, training job specs and interface tabs.

Job specs are data. They are validated here once, and then drive both the Pulumi program
(launch templates, IAM scoping, log groups, alarms) and the runtime (launch, run, record).
"""

from __future__ import annotations

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stnlp.common.errors import UserError

# GPUs per instance for the instance families a training job may ask for. Types outside this
# table are CPU-only as far as validation is concerned.
GPU_INSTANCE_GPUS: Mapping[str, int] = MappingProxyType(
    {
        "g4dn.xlarge": 1,
        "g4dn.2xlarge": 1,
        "g4dn.12xlarge": 4,
        "g5.xlarge": 1,
        "g5.2xlarge": 1,
        "g5.4xlarge": 1,
        "g5.12xlarge": 4,
        "g5.48xlarge": 8,
        "g6.xlarge": 1,
        "g6.2xlarge": 1,
        "g6.12xlarge": 4,
        "g6e.xlarge": 1,
        "g6e.12xlarge": 4,
        "p4d.24xlarge": 8,
        "p5.48xlarge": 8,
        "ml.g5.xlarge": 1,
        "ml.g5.2xlarge": 1,
        "ml.g5.12xlarge": 4,
        "ml.p4d.24xlarge": 8,
    }
)

_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_ENTRYPOINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class SpecError(UserError):
    """A plugin contributed something invalid; the message names the plugin and the field."""


PARAMETER_TYPES = ("int", "float", "bool", "str", "list", "dict", "json")
"""The kinds a hyperparameter may have; ``json`` takes any JSON value."""
_INT = re.compile(r"^[+-]?[0-9]{1,18}$")
_BOOLS = {"true": True, "yes": True, "on": True, "1": True,
          "false": False, "no": False, "off": False, "0": False}  # fmt: skip


def parameter_type(default: Any) -> str:
    """The kind a hyperparameter's default value implies (``json`` for ``None``)."""
    for kind, python in (("bool", bool), ("int", int), ("float", float), ("str", str),
                         ("list", list | tuple), ("dict", Mapping)):  # fmt: skip
        if isinstance(default, python):
            return kind
    return "json"


def check_parameter(where: str, key: str, value: Any, kind: str) -> Any:
    """``value`` as hyperparameter ``key`` of ``kind``; :class:`UserError` naming both if not.

    An int is accepted for a float; floats must be finite.
    """

    def wrong(expected: str) -> UserError:
        return UserError(f"{where}: {key}={value!r} is not {expected}")

    if kind == "bool" and not isinstance(value, bool):
        raise wrong("true or false")
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise wrong("an integer")
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise wrong("a number")
        if not math.isfinite(value):
            raise wrong("a finite number")
        return float(value)
    if kind == "str" and not isinstance(value, str):
        raise wrong("text")
    if kind == "list" and not isinstance(value, list | tuple):
        raise wrong("a JSON list")
    if kind == "dict" and not isinstance(value, Mapping):
        raise wrong("a JSON object")
    return value


def parse_parameter(where: str, key: str, text: str, kind: str) -> Any:
    """The value ``text`` (from ``--set key=text``) gives hyperparameter ``key`` of ``kind``."""
    if kind == "int":
        if not _INT.match(text.strip()):
            raise UserError(f"{where}: {key}={text!r} is not an integer")
        return int(text)
    if kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{where}: {key}={text!r} is not a number") from None
        return check_parameter(where, key, value, kind)
    if kind == "bool":
        if text.strip().lower() not in _BOOLS:
            raise UserError(f"{where}: {key}={text!r} is not true or false")
        return _BOOLS[text.strip().lower()]
    if kind == "str":
        return json.loads(text) if re.fullmatch(r'"(?:[^"\\]|\\.)*"', text) else text
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        if kind != "json":
            raise UserError(f"{where}: {key}={text[:60]!r} is not valid JSON") from None
        return text
    return check_parameter(where, key, value, kind)


@dataclass(frozen=True)
class Component:
    """One NLP component a plugin provides (shown by `stnlp plugins` and the interface)."""

    name: str
    description: str


SEARCH_SCALES = ("linear", "log")
"""How a numeric search range is sampled: uniformly, or uniformly in its logarithm."""
MAX_SEARCH_VALUES = 30  # SageMaker's limit on a categorical range's values
SHARD_HOOKS = ("units", "shard", "merge")
"""What a sharded job names: ``units(ctx)`` lists the corpus's episodes, ``shard(ctx, units)``
writes the partial results of some of them to ``ctx.output_dir``, ``merge(ctx, parts)`` turns
the shards' folders into the one output to publish and returns the ``TrainingOutcome``."""


@dataclass(frozen=True)
class JobSpec:
    """A training (or batch) job: everything the runtime and the Pulumi program need.

    ``entrypoint`` is ``"module:function"``; the function takes a
    :class:`stnlp.runtime.training.TrainingContext` and returns a
    :class:`stnlp.runtime.training.TrainingOutcome`. ``presets`` maps a preset name (``tiny`` for
    tests and the local demo) to hyperparameter overrides. ``output_model`` names the registry
    model the job's output directory is published to. ``evaluator`` and ``chat`` are optional
    ``"module:function"`` names run by ``stnlp eval JOB`` and ``stnlp chat``. ``sharding``
    (optional) lets ``stnlp batch`` split the job by episode: it maps each of
    :data:`SHARD_HOOKS` to a ``"module:function"`` (see docs/user-guide.md, "Sharded batch jobs").
    """

    name: str
    component: str
    entrypoint: str
    output_model: str
    instance_type: str = "g5.xlarge"
    gpu_count: int = 1
    spot: bool = True
    max_runtime_minutes: int = 120
    root_volume_gb: int = 100
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    input_datasets: tuple[str, ...] = ()
    evaluator: str | None = None
    chat: str | None = None
    description: str = ""
    hyperparameter_types: Mapping[str, str] = field(default_factory=dict)
    search_space: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    sharding: Mapping[str, str] = field(default_factory=dict)

    def parameter_types(self) -> dict[str, str]:
        """Each hyperparameter's kind: declared, else its default's."""
        kinds = {key: parameter_type(value) for key, value in self.hyperparameters.items()}
        kinds.update(self.hyperparameter_types)
        return kinds

    def parse_override(self, key: str, text: str) -> Any:
        """The typed value of ``--set key=text``; :class:`UserError` naming the key and value."""
        kinds = self.parameter_types()
        if key not in kinds:
            names = ", ".join(sorted(kinds)) or "none"
            raise UserError(f"--set {key}: job {self.name!r} has no hyperparameter {key!r} "
                            f"({names})")  # fmt: skip
        return parse_parameter(f"--set (job {self.name!r})", key, text, kinds[key])

    def resolved_hyperparameters(
        self, preset: str | None = None, overrides: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Hyperparameters with a preset and then explicit overrides applied on top.

        Overrides are checked against the parameters' kinds (:class:`UserError` otherwise).
        """
        params = dict(self.hyperparameters)
        if preset is not None:
            if preset not in self.presets:
                known = ", ".join(sorted(self.presets)) or "none"
                raise UserError(f"job {self.name!r} has no preset {preset!r} (known: {known})")
            params.update(self.presets[preset])
        kinds = self.parameter_types()
        for key, value in (overrides or {}).items():
            if key not in kinds:
                raise UserError(f"job {self.name!r} has no hyperparameter {key!r}")
            params[key] = check_parameter(f"job {self.name!r}", key, value, kinds[key])
        return params


@dataclass(frozen=True)
class TabSpec:
    """One tab of the Gradio interface.

    ``build(app)`` creates the tab's components inside an open ``gr.Tab``; ``model_source(app)``
    returns a short text naming the model source the tab uses (registry version, hub model or
    offline fallback). ``app`` is a :class:`stnlp.runtime.ui.AppContext`.

    Either may be given as ``"package.module:function"``: the module is imported on the first
    call, so listing plugins (``stnlp plugins``, ``stnlp train --help``) never imports a tab's
    heavy libraries (Gradio, torch).
    """

    name: str
    title: str
    build: Callable[[Any], None] | str
    model_source: Callable[[Any], str] | str = field(default=lambda app: "no model")
    order: int = 100

    def __post_init__(self) -> None:
        for attribute in ("build", "model_source"):
            value = getattr(self, attribute)
            if isinstance(value, str):
                object.__setattr__(self, attribute, ImportedOnCall(value))


class ImportedOnCall:
    """A ``"package.module:function"`` callable whose module is imported on its first call."""

    def __init__(self, path: str):
        if not _ENTRYPOINT.match(path):
            raise SpecError(f"{path!r} must look like 'package.module:function'")
        self.path = path
        self._function: Callable[..., Any] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._function is None:
            module, name = self.path.split(":")
            self._function = getattr(importlib.import_module(module), name)
        return self._function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"ImportedOnCall({self.path!r})"


def validate_job(plugin: str, job: Any) -> JobSpec:
    """Check one job spec contributed by ``plugin``; return it or raise :class:`SpecError`."""

    def fail(why: str) -> SpecError:
        name = getattr(job, "name", "?")
        return SpecError(f"plugin {plugin!r}: job {name!r}: {why}")

    if not isinstance(job, JobSpec):
        raise fail(f"expected a JobSpec, got {type(job).__name__}")
    if not _NAME.match(job.name):
        raise fail("name must be lowercase letters, digits and dashes, 2-63 characters")
    if not _NAME.match(job.output_model):
        raise fail(f"output_model {job.output_model!r} is not a valid model name")
    if not _ENTRYPOINT.match(job.entrypoint):
        raise fail(f"entrypoint {job.entrypoint!r} must look like 'package.module:function'")
    if job.max_runtime_minutes <= 0:
        raise fail(f"max_runtime_minutes must be positive, got {job.max_runtime_minutes}")
    if job.root_volume_gb < 8:
        raise fail(f"root_volume_gb must be at least 8, got {job.root_volume_gb}")
    if job.gpu_count < 0:
        raise fail(f"gpu_count must not be negative, got {job.gpu_count}")
    _check_parameters(job, fail)
    _check_search_space(job, fail)
    if job.sharding and set(job.sharding) != set(SHARD_HOOKS):
        raise fail(f"sharding must name exactly {', '.join(SHARD_HOOKS)}, got "
                   f"{', '.join(sorted(job.sharding))}")  # fmt: skip
    for hook, target in job.sharding.items():
        if not isinstance(target, str) or not _ENTRYPOINT.match(target):
            raise fail(f"sharding[{hook!r}] {target!r} must look like 'package.module:function'")
    if job.gpu_count > 0:
        available = GPU_INSTANCE_GPUS.get(job.instance_type, 0)
        if available == 0:
            raise fail(
                f"instance_type {job.instance_type!r} has no GPU but gpu_count is {job.gpu_count}"
            )
        if job.gpu_count > available:
            raise fail(
                f"instance_type {job.instance_type!r} has {available} GPU(s), "
                f"gpu_count asks for {job.gpu_count}"
            )
    return job


def _check_parameters(job: JobSpec, fail: Callable[[str], SpecError]) -> None:
    """Declared kinds are known and every preset value fits its parameter's kind."""
    for key, kind in job.hyperparameter_types.items():
        if kind not in PARAMETER_TYPES:
            raise fail(f"hyperparameter_types[{key!r}] is {kind!r}, not one of "
                       f"{', '.join(PARAMETER_TYPES)}")  # fmt: skip
    kinds = job.parameter_types()
    for preset, values in job.presets.items():
        for key, value in values.items():
            try:
                check_parameter(f"preset {preset!r}", key, value, kinds.get(key, "json"))
            except UserError as exc:
                raise fail(str(exc)) from None


def _check_search_space(job: JobSpec, fail: Callable[[str], SpecError]) -> None:
    """Every searched key is a hyperparameter, with a ``values`` list or a numeric range."""
    kinds = job.parameter_types()
    for key, space in job.search_space.items():
        where = f"search_space[{key!r}]"
        if key not in kinds:
            raise fail(f"{where}: the job has no hyperparameter {key!r}")
        if not isinstance(space, Mapping):
            raise fail(f"{where} must be a mapping with 'values' or 'min' and 'max'")
        if "values" in space:
            _check_values(where, space, kinds[key], fail)
        else:
            _check_range(where, space, kinds[key], fail)


def _check_values(where: str, space: Mapping[str, Any], kind: str, fail) -> None:
    if set(space) != {"values"}:
        raise fail(f"{where}: 'values' goes alone, got {sorted(space)}")
    values = space["values"]
    if not isinstance(values, list | tuple) or not 1 <= len(values) <= MAX_SEARCH_VALUES:
        raise fail(f"{where}: values must be a list of 1 to {MAX_SEARCH_VALUES} values")
    for value in values:
        try:
            check_parameter(where, "value", value, kind)
        except UserError as exc:
            raise fail(str(exc)) from None


def _check_range(where: str, space: Mapping[str, Any], kind: str, fail) -> None:
    if kind not in ("int", "float") or not {"min", "max"} <= set(space):
        raise fail(f"{where}: a {kind} hyperparameter is searched over 'values'; numbers also "
                   "take 'min' and 'max'")
    extra = set(space) - {"min", "max", "scale"}
    if extra:
        raise fail(f"{where}: unknown key(s) {', '.join(sorted(extra))}")
    low, high = (check_parameter(where, bound, space[bound], kind) for bound in ("min", "max"))
    if not low < high:
        raise fail(f"{where}: min {low!r} must be below max {high!r}")
    scale = space.get("scale", "linear")
    if scale not in SEARCH_SCALES:
        raise fail(f"{where}: scale {scale!r} is not one of {', '.join(SEARCH_SCALES)}")
    if scale == "log" and low <= 0:
        raise fail(f"{where}: a log scale needs min above 0, got {low!r}")


def validate_tab(plugin: str, tab: Any) -> TabSpec:
    """Check one tab contributed by ``plugin``; return it or raise :class:`SpecError`."""
    if not isinstance(tab, TabSpec):
        raise SpecError(f"plugin {plugin!r}: expected a TabSpec, got {type(tab).__name__}")
    if not callable(tab.build):
        raise SpecError(f"plugin {plugin!r}: tab {tab.name!r}: build is not callable")
    return tab


def validate_component(plugin: str, component: Any) -> Component:
    """Check one component contributed by ``plugin``; return it or raise :class:`SpecError`."""
    if not isinstance(component, Component) or not component.name:
        raise SpecError(f"plugin {plugin!r}: expected a Component with a name, got {component!r}")
    return component
