"""Pulumi entry point: the stack of the Stranger Things NLP suite (see infra/ and docs/).

`pulumi up` runs this file; it loads the settings, builds the plugin registry and creates the
stack from ``infra/``, driven by the stack's config in ``Pulumi.<stack>.yaml``.
"""

from stnlp.common.settings import load_settings
from stnlp.infra.stack import build_stack
from stnlp.plugins.manager import build_plugin_manager

build_stack(build_plugin_manager(load_settings()))
