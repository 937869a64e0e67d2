"""The neutral layer: what the runtime, the plugins and the Pulumi program must agree on.

Error types, names and tags, store layout keys, settings, typed stack config and the user-data
scripts. Nothing here imports the runtime, the plugins or the Pulumi program (a test enforces
it), so every other layer may import it.
"""
