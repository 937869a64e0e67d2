"""The wheel: one import package (`stnlp`), the sample data, a CLI that runs without a checkout.

The wheel is built from a copy of the checkout's sources, so no build folder lands in it, and
installed into a fresh venv with that venv's own pip. Its dependencies come from this
environment through a ``.pth`` path line (site-packages only, never the checkout), so the
installed copy is the only ``stnlp`` the new venv can import.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from stnlp.runtime.data import SAMPLE_DIR, find_sample_dir, load_subtitles

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
SAMPLE_FILES = sorted(
    str(path.relative_to(SAMPLE_DIR))
    for kind in ("characters", "locations", "subtitles", "transcripts")
    for path in (SAMPLE_DIR / kind).iterdir()
)


def test_the_checkout_wins_and_the_installed_copy_is_the_fallback(tmp_path):
    checkout, prefix = tmp_path / "checkout", tmp_path / "prefix"
    installed = prefix / "share" / "stranger-things-nlp" / "sample"
    assert find_sample_dir(checkout, prefix) == checkout  # neither: the error names the checkout
    installed.mkdir(parents=True)
    assert find_sample_dir(checkout, prefix) == installed
    checkout.mkdir()
    assert find_sample_dir(checkout, prefix) == checkout


def test_every_package_folder_is_listed_under_its_namespaced_name():
    found = set()
    for package, folder in SETUPTOOLS["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *relative]))
    assert sorted(found) == sorted(SETUPTOOLS["packages"])


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy of the sources."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in [*SETUPTOOLS["package-dir"].values(), "data"]:
        shutil.copytree(ROOT / part, source / part, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(source)],
        check=True, capture_output=True,
    )
    (path,) = out.glob("stranger_things_nlp-*.whl")
    return path


def test_the_wheel_holds_every_sample_file(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    prefix = "/data/share/stranger-things-nlp/sample/"
    shipped = sorted(name.split(prefix, 1)[1] for name in names if prefix in name)
    assert shipped == SAMPLE_FILES


def test_the_wheel_holds_every_module_of_the_checkout(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    expected = {
        "/".join([*package.split("."), *path.relative_to(ROOT / folder).parts])
        for package, folder in SETUPTOOLS["package-dir"].items()
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert expected - names == set()


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv holding the wheel; returns the venv folder."""
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True,
    )
    (site,) = env.glob("lib/python*/site-packages")
    dependencies = [p for p in sys.path if Path(p).name == "site-packages"]
    (site / "zz_dependencies.pth").write_text("".join(f"{p}\n" for p in dependencies))
    return env


def _site_packages(env: Path) -> Path:
    (site,) = env.glob("lib/python*/site-packages")
    return site


def test_the_wheel_adds_only_stnlp_to_site_packages(installed):
    site = _site_packages(installed)
    added = sorted(p.name for p in site.iterdir() if p.name != "zz_dependencies.pth")
    fresh = {"pip", "_distutils_hack", "distutils-precedence.pth", "setuptools", "pkg_resources"}
    added = [name for name in added if name not in fresh and not name.startswith("pip-")
             and not name.startswith("setuptools-")]  # fmt: skip
    assert added == ["stnlp", "stranger_things_nlp-0.1.0.dist-info"]


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    clean = {"PATH": f"{env / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "COLUMNS": "200",
             "HF_HUB_OFFLINE": "1", "XDG_CACHE_HOME": str(cwd / "cache")}  # fmt: skip
    return subprocess.run(list(args), cwd=cwd, env=clean, capture_output=True, text=True)


def test_an_installed_wheel_loads_the_sample_without_the_checkout(installed, tmp_path):
    probe = (
        "import stnlp, stnlp.runtime.data as d; print(stnlp.__file__); print(d.SAMPLE_DIR); "
        "print(len(d.load_subtitles(d.SAMPLE_DIR / 'subtitles').records))"
    )
    done = _run(installed, str(installed / "bin" / "python"), "-c", probe, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    module, sample_dir, captions = done.stdout.split()
    assert Path(module).is_relative_to(_site_packages(installed))
    assert Path(sample_dir) == installed / "share" / "stranger-things-nlp" / "sample"
    assert int(captions) == len(load_subtitles(SAMPLE_DIR / "subtitles").records) > 0


def test_stnlp_plugins_runs_from_the_wheel(installed, tmp_path):
    done = _run(installed, str(installed / "bin" / "stnlp"), "plugins", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("chatbot", "classifier", "network", "network-characters", "chatbot-llama"):
        assert name in done.stdout


@pytest.mark.slow
def test_stnlp_demo_trains_from_the_wheel(installed, tmp_path):
    """The demo's training half from the wheel alone (the network job: seconds on a CPU)."""
    (tmp_path / "stnlp.toml").write_text('disabled_plugins = ["chatbot", "classifier"]\n')
    done = _run(installed, str(installed / "bin" / "stnlp"), "demo", "--no-serve", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "network-characters" in done.stdout and "trained" in done.stdout
    assert list((tmp_path / ".stnlp" / "store" / "models" / "models").glob("*/latest.json"))
