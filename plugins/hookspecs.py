"""Hook specifications of the `stnlp` plugin project.

Every hook is called on every registered plugin and its results are collected into one list
(pluggy's default). A plugin implements only the hooks it needs. Each hook receives the
:class:`stnlp.common.settings.Settings` in force, so a plugin can read its configured model ids.
"""

from __future__ import annotations

from stnlp.plugins import hookspec


@hookspec
def stnlp_components(settings):
    """Name the NLP components this plugin provides.

    Called once when the registry is built, for `stnlp plugins` and the interface header.
    Return a list of :class:`stnlp.plugins.spec.Component` (name and one-line description).
    """


@hookspec
def stnlp_training_jobs(settings):
    """Contribute the plugin's training jobs.

    Called when the registry is built. Return a list of :class:`stnlp.plugins.spec.JobSpec`; each is
    validated (unique name across all plugins, an instance type with GPUs when GPUs are asked for,
    a positive maximum runtime). The same specs feed the Pulumi program (one launch template, log
    group and alarm per job) and the runtime (`stnlp train JOB`), which imports and calls
    ``spec.entrypoint`` with a :class:`stnlp.runtime.training.TrainingContext`.
    """


@hookspec
def stnlp_gradio_tabs(settings):
    """Contribute tabs to the Gradio interface.

    Called when `stnlp serve` builds the app. Return a list of :class:`stnlp.plugins.spec.TabSpec`;
    the shell opens one ``gr.Tab`` per spec, in order, and calls ``spec.build(app_context)``
    inside it. ``spec.model_source(app_context)`` says which model source the tab uses.
    """


@hookspec
def stnlp_infra_resources(stack):
    """Add extra Pulumi resources to the stack.

    Called by the Pulumi program after the core components (storage, network, identity,
    compute) exist. ``stack`` is an :class:`stnlp.infra.stack.StackContext` giving the stack name,
    typed config, bucket names and the parent resource: create resources with
    ``pulumi.ResourceOptions(parent=stack.parent)``. Return nothing, or a dict of extra facts
    to merge into the stack manifest under the plugin's name.
    """
