"""The wheel: it carries the sample data set, and an installed copy finds it without a checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from runtime.data import SAMPLE_DIR, find_sample_dir, load_subtitles

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from a copy so that no build folder lands in the checkout."""
    out = tmp_path_factory.mktemp("wheel")
    source = out / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for part in ("runtime", "plugins", "infra", "data"):
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


def test_an_installed_wheel_loads_the_sample_without_the_checkout(wheel, tmp_path):
    env = tmp_path / "env"  # its own pip, so this environment's install is left alone
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
         "--disable-pip-version-check", str(wheel)],
        check=True, capture_output=True,
    )
    probe = (
        "import runtime.data as d; "
        "print(d.SAMPLE_DIR); print(len(d.load_subtitles(d.SAMPLE_DIR / 'subtitles').records))"
    )
    done = subprocess.run(
        [str(env / "bin" / "python"), "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    sample_dir, captions = done.stdout.split()
    assert Path(sample_dir) == env / "share" / "stranger-things-nlp" / "sample"
    assert int(captions) == len(load_subtitles(SAMPLE_DIR / "subtitles").records) > 0
