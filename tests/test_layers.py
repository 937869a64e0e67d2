"""The layers run one way (docs/architecture.md), checked on every module's imports.

The rules are read from the syntax trees by :mod:`tests.layers`; a second check imports the
Pulumi program's and the runtime's modules in fresh interpreters and looks at what got loaded,
so that an import hidden behind a package ``__init__`` is caught too.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.layers import ROOT, broken_rule, import_map, violations

IMPORTS = import_map()


def test_the_tree_keeps_every_layer_rule():
    assert IMPORTS, "no modules found"
    assert violations(IMPORTS) == []


# One forbidden import per rule: (importing module, imported module).
FORBIDDEN = [
    ("stnlp.runtime.store", "runtime.errors"),  # a bare name
    ("stnlp.runtime.backends.ec2", "stnlp.infra.compute"),  # runtime -> Pulumi program
    ("stnlp.infra.storage", "stnlp.runtime.runs"),  # Pulumi program -> runtime
    ("stnlp.infra.compute", "stnlp.plugins.manager"),  # Pulumi program -> beyond the spec
    ("stnlp.common.names", "stnlp.plugins.spec"),  # neutral layer -> anything
    ("stnlp.plugins.spec", "stnlp.runtime.training"),  # plugin spine -> runtime
    ("stnlp.plugins.chatbot.offline", "stnlp.plugins.classifier.labels"),  # plugin -> plugin
    ("stnlp.plugins.network.job", "stnlp.infra.stack"),  # plugin -> Pulumi program
    ("stnlp.runtime.demo", "stnlp.plugins.chatbot.train"),  # runtime -> a built-in plugin
    ("stnlp", "stnlp.runtime.ui"),  # the public API imports eagerly
    ("tests/example_plugin/stnlp_example/plugin", "stnlp.runtime.registry"),  # private API
]


@pytest.mark.parametrize(("module", "target"), FORBIDDEN)
def test_adding_a_forbidden_import_breaks_exactly_one_rule(module, target):
    assert module in IMPORTS, f"{module} is not a module of the tree any more"
    changed = {**IMPORTS, module: IMPORTS[module] | {target}}
    assert violations(changed) == [f"{module}: {broken_rule(module, target)}"]


@pytest.mark.parametrize(
    ("module", "target"),
    [
        ("stnlp.plugins.chatbot.offline", "stnlp.runtime.encoder"),  # shared services
        ("stnlp.plugins.chatbot.tab", "stnlp.plugins.chatbot.infer"),  # its own package
        ("stnlp.infra.compute", "stnlp.plugins.spec"),
        ("stnlp.infra.compute", "stnlp.common.userdata"),
        ("stnlp.runtime.cli.base", "stnlp.plugins.manager"),
        ("tests/example_plugin/stnlp_example/plugin", "stnlp"),
        ("tests/test_infra_stack", "stnlp.infra.stack"),
    ],
)
def test_allowed_imports(module, target):
    assert broken_rule(module, target) is None


def _loaded_after_importing(modules: list[str]) -> set[str]:
    probe = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print('\\n'.join(sorted(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT / "tests", capture_output=True,
                          text=True, check=True)  # fmt: skip
    return set(done.stdout.split())


def test_the_pulumi_program_loads_no_runtime_and_no_plugin():
    infra = sorted(m for m in IMPORTS if m.startswith("stnlp.infra"))
    loaded = _loaded_after_importing(infra)
    assert set(infra) <= loaded
    leaked = sorted(m for m in loaded if m.startswith(("stnlp.runtime", "stnlp.plugins.")))
    assert [m for m in leaked if m != "stnlp.plugins.spec"] == []


def test_the_runtime_loads_no_pulumi_program():
    runtime = ["stnlp.runtime.cli", "stnlp.runtime.bootstrap", "stnlp.runtime.backends.ec2",
               "stnlp.runtime.backends.sagemaker", "stnlp.runtime.cost"]  # fmt: skip
    loaded = _loaded_after_importing(runtime)
    assert set(runtime) <= loaded
    assert sorted(m for m in loaded if m.startswith("stnlp.infra") or m == "pulumi") == []


def test_importing_the_public_api_loads_nothing_else():
    loaded = _loaded_after_importing(["stnlp", "stnlp.common.names"])
    assert sorted(m for m in loaded if m.startswith("stnlp")) == [
        "stnlp", "stnlp.common", "stnlp.common.names"
    ]
