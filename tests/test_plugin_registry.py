"""The plugin registry: defaults, disabling, validation errors that name the plugin."""

from __future__ import annotations

import inspect

import pytest

from stnlp.common.settings import Settings
from stnlp.plugins import hookimpl, hookspecs
from stnlp.plugins.manager import DEFAULT_PLUGINS, build_plugin_manager
from stnlp.plugins.spec import JobSpec, SpecError, TabSpec


def job(**changes) -> JobSpec:
    """A valid job spec with some fields changed."""
    fields = dict(
        name="probe-job",
        component="probe",
        entrypoint="probe.train:train",
        output_model="probe-model",
    )
    return JobSpec(**{**fields, **changes})


class JobsPlugin:
    """A plugin object contributing the given jobs."""

    def __init__(self, *jobs):
        self._jobs = list(jobs)

    @hookimpl
    def stnlp_training_jobs(self, settings):
        """Contribute the jobs given to the constructor."""
        return self._jobs


class RaisingPlugin:
    """A plugin whose hook raises."""

    @hookimpl
    def stnlp_training_jobs(self, settings):
        """Fail like a buggy third-party plugin."""
        raise RuntimeError("boom")


def test_builtin_plugins_are_registered_by_default():
    registry = build_plugin_manager(Settings())
    assert [p.name for p in registry.plugins] == [name for name, _ in DEFAULT_PLUGINS]
    components = {c.name for _, c in registry.components}
    assert {"chatbot-llama", "chatbot-qwen", "network-characters"} <= components


def test_disabled_plugin_is_not_loaded():
    registry = build_plugin_manager(Settings(disabled_plugins=("network",)))
    assert "network" not in [p.name for p in registry.plugins]
    assert all(plugin != "network" for plugin, _ in registry.components)


def test_valid_extra_plugin_contributes_its_job():
    registry = build_plugin_manager(Settings(), extra=(("probe", JobsPlugin(job())),))
    assert registry.job("probe-job").output_model == "probe-model"
    assert registry.jobs["probe-job"][0] == "probe"


@pytest.mark.parametrize(
    ("bad_job", "message"),
    [
        (job(max_runtime_minutes=0), "max_runtime_minutes must be positive"),
        (job(instance_type="m5.large", gpu_count=1), "has no GPU"),
        (job(instance_type="g5.xlarge", gpu_count=4), "has 1 GPU(s)"),
        (job(name="Bad Name"), "name must be lowercase"),
        (job(entrypoint="no-colon"), "entrypoint"),
        ({"name": "dict-job"}, "expected a JobSpec"),
    ],
)
def test_invalid_job_spec_names_the_plugin(bad_job, message):
    registry = build_plugin_manager(Settings(), extra=(("sloppy", JobsPlugin(bad_job)),))
    with pytest.raises(SpecError) as err:
        _ = registry.jobs
    assert "plugin 'sloppy'" in str(err.value)
    assert message in str(err.value)


def test_cpu_job_needs_no_gpu_instance():
    registry = build_plugin_manager(
        Settings(), extra=(("cpu", JobsPlugin(job(instance_type="c6i.2xlarge", gpu_count=0))),)
    )
    assert registry.job("probe-job").gpu_count == 0


def test_duplicate_job_names_across_plugins_are_refused():
    registry = build_plugin_manager(
        Settings(), extra=(("first", JobsPlugin(job())), ("second", JobsPlugin(job())))
    )
    with pytest.raises(SpecError, match="plugin 'second': job name 'probe-job' is already used"):
        _ = registry.jobs


def test_raising_plugin_is_named():
    registry = build_plugin_manager(Settings(), extra=(("buggy", RaisingPlugin()),))
    with pytest.raises(SpecError, match="plugin 'buggy' failed in stnlp_training_jobs: boom"):
        _ = registry.jobs


def test_unknown_job_lists_known_ones():
    registry = build_plugin_manager(Settings(), extra=(("probe", JobsPlugin(job())),))
    with pytest.raises(Exception, match="unknown job 'nope'.*probe-job"):
        registry.job("nope")


def test_tab_must_be_a_tabspec():
    class BadTabs:
        @hookimpl
        def stnlp_gradio_tabs(self, settings):
            """Return something that is not a TabSpec."""
            return ["not a tab"]

    registry = build_plugin_manager(Settings(), extra=(("badtabs", BadTabs()),))
    with pytest.raises(SpecError, match="plugin 'badtabs': expected a TabSpec"):
        _ = registry.tabs


def test_tabs_are_sorted_by_order():
    class Tabs:
        @hookimpl
        def stnlp_gradio_tabs(self, settings):
            """Two tabs out of order."""
            return [
                TabSpec("late", "Late", build=lambda app: None, order=999),
                TabSpec("early", "Early", build=lambda app: None, order=-1),
            ]

    registry = build_plugin_manager(Settings(), extra=(("tabs", Tabs()),))
    names = [tab.name for _, tab in registry.tabs]
    assert names.index("early") < names.index("late")
    assert names[0] == "early"


def test_every_hookspec_has_a_docstring():
    specs = [f for name, f in inspect.getmembers(hookspecs) if name.startswith("stnlp_")]
    assert len(specs) == 4
    assert all(inspect.getdoc(f) for f in specs)


def test_presets_and_overrides_resolve_in_order():
    spec = job(hyperparameters={"lr": 1.0, "steps": 10}, presets={"tiny": {"steps": 2}})
    assert spec.resolved_hyperparameters("tiny", {"lr": 0.5}) == {"lr": 0.5, "steps": 2}
    with pytest.raises(Exception, match="no preset 'huge'"):
        spec.resolved_hyperparameters("huge")
