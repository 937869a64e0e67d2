"""The runtime's source as a tarball, for instances and SageMaker containers to unpack.

The tarball holds the ``stnlp`` package as it is installed (``stnlp/__init__.py`` and the
``common``, ``runtime`` and ``plugins`` subpackages; the Pulumi program stays behind) and, for
every plugin loaded from the ``stnlp`` entry-point group, its top-level package and its
``.dist-info`` folder, so that the unpacked tree on ``PYTHONPATH`` finds the same plugins as the
machine that launched the run.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from importlib import metadata
from pathlib import Path

from stnlp.common.errors import UserError
from stnlp.plugins import PROJECT

PACKAGE = "stnlp"
SUBPACKAGES = ("stnlp.common", "stnlp.runtime", "stnlp.plugins")
_SKIP = {"__pycache__", ".pytest_cache"}


def source_key(stack: str, run_id: str) -> str:
    """Where the launching side puts a run's source tarball in the results store."""
    return f"{stack}/runs/{run_id}/source.tar.gz"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"cannot package the source: package {name!r} is not importable")
    return Path(next(iter(spec.submodule_search_locations)))


def plugin_sources() -> dict[str, Path]:
    """Archive name -> local folder for each entry-point plugin's package and dist-info."""
    found: dict[str, Path] = {}
    for entry_point in metadata.entry_points(group=PROJECT):
        top = entry_point.value.split(":")[0].split(".")[0]
        if top == PACKAGE:
            continue
        found[top] = _package_dir(top)
        dist = entry_point.dist
        dist_path = getattr(dist, "_path", None)
        if dist_path is not None and Path(dist_path).is_dir():
            found[Path(dist_path).name] = Path(dist_path)
    return found


def _filter(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    parts = Path(info.name).parts
    if any(p in _SKIP for p in parts) or info.name.endswith((".pyc", ".pyo")):
        return None
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = 0
    return info


def build_source_tarball() -> bytes:
    """A gzipped tarball of the project packages and entry-point plugins."""
    members = {name.replace(".", "/"): _package_dir(name) for name in SUBPACKAGES}
    members.update(plugin_sources())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        init = _package_dir(PACKAGE) / "__init__.py"
        tar.add(init, arcname=f"{PACKAGE}/__init__.py", filter=_filter)
        for name, path in sorted(members.items()):
            tar.add(path, arcname=name, filter=_filter)
    return buffer.getvalue()


def unpack_source(data: bytes, dest: Path) -> Path:
    """Extract a tarball from :func:`build_source_tarball` into ``dest``; return ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        tar.extractall(dest, filter="data")
    return dest
