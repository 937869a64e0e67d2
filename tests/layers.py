"""The import rules between the layers (docs/architecture.md), checked over the source tree.

Every ``import`` statement of every module is read from its syntax tree (including imports
inside functions), so a lazy import breaks a rule as surely as a top-level one. Modules are
named as installed: ``runtime/store.py`` is ``stnlp.runtime.store``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Checkout folder -> the package it is installed as.
PACKAGE_DIRS = {"stnlp": "stnlp", "runtime": "stnlp.runtime", "plugins": "stnlp.plugins",
                "infra": "stnlp.infra"}  # fmt: skip
# Other Python code of the checkout, named by role.
OTHER_CODE = ("__main__.py", "policy", "tests", "bench", "data")
BARE = ("runtime", "plugins", "infra")
PLUGIN_CORE = ("stnlp.plugins", "stnlp.plugins.spec", "stnlp.plugins.hookspecs",
               "stnlp.plugins.manager")  # fmt: skip
PUBLIC_API = "stnlp"


def module_name(path: Path, root: Path = ROOT) -> str:
    """The import name of the file ``path`` of the checkout at ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts and parts[0] in PACKAGE_DIRS:
        return ".".join([PACKAGE_DIRS[parts[0]], *parts[1:]])
    return "/".join(parts) or path.name


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(path: Path, module: str) -> tuple[set[str], set[str]]:
    """``(modules, candidates)`` that ``path`` imports.

    ``from a import b`` imports ``a``, and ``a.b`` is a candidate: a module if one has that
    name, else just an attribute of ``a``.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    candidates: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, path.name == "__init__.py")
            found.add(source)
            candidates.update(f"{source}.{a.name}" for a in node.names if a.name != "*")
    return found, candidates


def source_files(root: Path = ROOT) -> Iterable[Path]:
    """Every Python file of the checkout that belongs to the project (not the venv)."""
    for top in [*PACKAGE_DIRS, *OTHER_CODE]:
        path = root / top
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def import_map(root: Path = ROOT) -> dict[str, set[str]]:
    """Module name -> the modules it imports, for the whole checkout."""
    parsed = {module_name(p, root): p for p in source_files(root)}
    imports = {name: imports_of(path, name) for name, path in parsed.items()}
    return {name: found | (maybe & parsed.keys()) for name, (found, maybe) in imports.items()}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _plugin_of(name: str) -> str | None:
    """The built-in plugin package a module belongs to (``stnlp.plugins.chatbot``), if any."""
    if not _within(name, "stnlp.plugins") or name in PLUGIN_CORE:
        return None
    return ".".join(name.split(".")[:3])


def broken_rule(module: str, target: str) -> str | None:
    """Why ``module`` may not import ``target``, or ``None`` when it may."""
    top = target.split(".")[0]
    if top in BARE:
        return f"imports {target!r} by its bare name: use 'stnlp.{target}'"
    if module.startswith("tests/example_plugin/"):
        if top == "stnlp" and target != PUBLIC_API:
            return f"a third-party plugin imports only the public API 'stnlp', not {target!r}"
        return None
    if not _within(target, "stnlp") or target == PUBLIC_API and not module.startswith("stnlp"):
        return None
    if _within(module, "stnlp.common") and not _within(target, "stnlp.common"):
        return f"the neutral layer imports nothing else of the project, not {target!r}"
    if module == PUBLIC_API:
        return f"the public API resolves its names lazily; it does not import {target!r}"
    if _within(module, "stnlp.infra"):
        allowed = ("stnlp.common", "stnlp.infra", "stnlp.plugins.spec")
        if not any(_within(target, a) for a in allowed):
            return f"the Pulumi program imports only stnlp.common and plugins.spec, not {target!r}"
    if module in PLUGIN_CORE and not (_within(target, "stnlp.common") or target in PLUGIN_CORE):
        return f"the plugin spine imports only stnlp.common and itself, not {target!r}"
    if _within(module, "stnlp.runtime"):
        if _within(target, "stnlp.infra"):
            return f"the runtime never imports the Pulumi program ({target!r})"
        if _plugin_of(target):
            return f"the runtime reaches plugins through the registry, not by importing {target!r}"
    plugin, other = _plugin_of(module), _plugin_of(target)
    if plugin and other and plugin != other:
        return f"plugin {plugin!r} imports another plugin ({target!r})"
    if plugin and _within(target, "stnlp.infra"):
        return f"a plugin adds resources through its hook, not by importing {target!r}"
    return None


def violations(imports: Mapping[str, Iterable[str]]) -> list[str]:
    """Every broken rule in an import map, as ``module: why`` lines."""
    return [
        f"{module}: {why}"
        for module, targets in sorted(imports.items())
        for target in sorted(targets)
        if (why := broken_rule(module, target))
    ]
