"""The plugin registry: default plugins, entry-point plugins, and validated contributions."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from importlib import metadata
from typing import Any

import pluggy

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins import PROJECT, hookspecs
from stnlp.plugins.spec import (
    Component,
    JobSpec,
    SpecError,
    TabSpec,
    validate_component,
    validate_job,
    validate_tab,
)

# Built-in plugins, registered by default under these names.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("chatbot", "stnlp.plugins.chatbot.plugin"),
    ("classifier", "stnlp.plugins.classifier.plugin"),
    ("network", "stnlp.plugins.network.plugin"),
)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin and where it came from."""

    name: str
    origin: str  # "builtin" or the distribution that declared the entry point


def _entry_points() -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=PROJECT))


def build_plugin_manager(settings: Settings, extra: tuple[tuple[str, Any], ...] = ()) -> Registry:
    """Register the default plugins, entry-point plugins and ``extra`` ones, minus disabled ones.

    ``extra`` is ``(name, plugin object)`` pairs, for tests and embedding.
    """
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    disabled = set(settings.disabled_plugins)
    infos: list[PluginInfo] = []

    def register(name: str, plugin: Any, origin: str) -> None:
        if name in disabled:
            return
        if pm.has_plugin(name):
            raise SpecError(f"plugin {name!r} is registered twice ({origin})")
        pm.register(plugin, name=name)
        infos.append(PluginInfo(name, origin))

    for name, module in DEFAULT_PLUGINS:
        if name not in disabled:
            register(name, importlib.import_module(module), "builtin")
    for entry_point in _entry_points():
        if entry_point.name in disabled:
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:  # a broken third-party package must be named, not crash us
            raise SpecError(f"plugin {entry_point.name!r} failed to load: {exc}") from exc
        dist = entry_point.dist.name if entry_point.dist else "entry point"
        register(entry_point.name, plugin, dist)
    for name, plugin in extra:
        register(name, plugin, "registered")
    return Registry(pm, settings, tuple(infos))


class Registry:
    """What the registered plugins contribute, validated once and cached."""

    def __init__(self, pm: pluggy.PluginManager, settings: Settings, infos: tuple[PluginInfo, ...]):
        self.pm = pm
        self.settings = settings
        self.plugins = infos

    def call_each(self, hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
        """Call ``hook`` on each plugin in registration order, yielding ``(plugin, result)``.

        An exception inside a plugin becomes a :class:`SpecError` naming that plugin.
        """
        caller = getattr(self.pm.hook, hook)
        for impl in caller.get_hookimpls():
            args = {k: v for k, v in kwargs.items() if k in impl.argnames}
            try:
                result = impl.function(**args)
            except UserError:
                raise
            except Exception as exc:
                raise SpecError(f"plugin {impl.plugin_name!r} failed in {hook}: {exc}") from exc
            yield impl.plugin_name, result

    def _collect(self, hook: str, validate) -> list[tuple[str, Any]]:
        collected = []
        for plugin, result in self.call_each(hook, settings=self.settings):
            if result is None:
                continue
            if not isinstance(result, list | tuple):
                raise SpecError(f"plugin {plugin!r}: {hook} must return a list")
            collected.extend((plugin, validate(plugin, item)) for item in result)
        return collected

    @cached_property
    def components(self) -> list[tuple[str, Component]]:
        """``(plugin, component)`` pairs from every plugin."""
        return self._collect("stnlp_components", validate_component)

    @cached_property
    def jobs(self) -> dict[str, tuple[str, JobSpec]]:
        """Job name -> ``(plugin, spec)``; names are unique across plugins."""
        jobs: dict[str, tuple[str, JobSpec]] = {}
        for plugin, job in self._collect("stnlp_training_jobs", validate_job):
            if job.name in jobs:
                raise SpecError(
                    f"plugin {plugin!r}: job name {job.name!r} is already used by "
                    f"plugin {jobs[job.name][0]!r}"
                )
            jobs[job.name] = (plugin, job)
        return jobs

    @cached_property
    def tabs(self) -> list[tuple[str, TabSpec]]:
        """``(plugin, tab)`` pairs, sorted by the tab's order."""
        tabs = self._collect("stnlp_gradio_tabs", validate_tab)
        return sorted(tabs, key=lambda pair: pair[1].order)

    def job(self, name: str) -> JobSpec:
        """The job spec called ``name``, or a :class:`UserError` listing the known jobs."""
        if name not in self.jobs:
            known = ", ".join(sorted(self.jobs)) or "none"
            raise UserError(f"unknown job {name!r} (known jobs: {known})")
        return self.jobs[name][1]

    def job_specs(self) -> list[JobSpec]:
        """All job specs, sorted by name."""
        return [spec for _, spec in sorted(self.jobs.values(), key=lambda p: p[1].name)]
