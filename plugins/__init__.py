"""The plugin spine: pluggy markers for the `stnlp` project.

A plugin is any module or object with functions decorated by :data:`hookimpl`; see
:mod:`stnlp.plugins.hookspecs` for what each hook is asked and returns.
"""

import pluggy

PROJECT = "stnlp"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
