"""Make the example plugin package under tests/ discoverable through its entry point.

Writes a ``.dist-info`` folder (what pip writes on install) beside the package's source, so
``importlib.metadata`` finds the ``stnlp`` entry point exactly as for an installed package.
"""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

EXAMPLE_SOURCE = Path(__file__).parent / "example_plugin"


def install_example_plugin(site: Path, requires: tuple[str, ...] = ()) -> Path:
    """Copy the example plugin into ``site`` with its dist-info; return ``site`` for sys.path.

    ``requires`` adds ``Requires-Dist`` lines (dependencies the plugin declares)."""
    shutil.copytree(EXAMPLE_SOURCE / "stnlp_example", site / "stnlp_example")
    dist_info = site / "stnlp_example_plugin-0.1.0.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: stnlp-example-plugin\nVersion: 0.1.0\n"
        + "".join(f"Requires-Dist: {line}\n" for line in requires)
    )
    project = tomllib.loads((EXAMPLE_SOURCE / "pyproject.toml").read_text())["project"]
    entries = project["entry-points"]["stnlp"].items()
    lines = "".join(f"{name} = {target}\n" for name, target in entries)
    (dist_info / "entry_points.txt").write_text(f"[stnlp]\n{lines}")
    return site
