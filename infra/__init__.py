"""The Pulumi program of the Stranger Things NLP suite: one ComponentResource per concern.

Importing this package is cheap; nothing is created until :func:`stnlp.infra.stack.build_stack` runs
inside a Pulumi program (``__main__.py``) or under Pulumi mocks (the tests).
"""
