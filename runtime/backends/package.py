"""What a launch ships to its instances: the project's wheel, plugin wheels and a dependency lock.

An instance runs exactly the code and the dependency set the launch came from, never a package
found by name on an index:

- the project's wheel, built from the checkout the launch runs in (reproducibly, so an unchanged
  checkout gives the same file and nothing new is uploaded);
- one wheel per entry-point plugin installed here (repacked from its installed files);
- a hash-pinned lock of every distribution those need, as installed here, except the ones the
  training AMI provides (``ami_packages`` in the stack manifest: the AMI's CUDA build of torch)
  and the Pulumi SDK (the runtime never imports the Pulumi program). Its hashes are those of the
  index's files for the AMI's Python (``ami_python``), resolved once per dependency set by pip
  and cached; the instance installs with ``--require-hashes``, so an index cannot substitute
  anything, and what the AMI already has at the pinned version is kept.

Each file goes to ``packages/sha256/<digest>/<file>`` in the stack's models bucket; the user
data names the keys and digests and checks each download (see stnlp.common.userdata).

The interface host (Ubuntu, no AMI environment to reuse) gets a release of its own from
`stnlp release --stack S` (:func:`build_interface_release`, :func:`publish_release`): the same
wheels and a lock of everything they need for the host's Python, torch's CPU build included
(hash-pinned from the PyTorch CPU index), named by the pointer ``packages/current.json``.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from stnlp.common.cache import cache_root
from stnlp.common.errors import UserError
from stnlp.common.names import PROJECT, package_key
from stnlp.common.userdata import INTERFACE_PYTHON, RELEASE_POINTER, TORCH_CPU_INDEX
from stnlp.plugins import PROJECT as ENTRY_POINT_GROUP
from stnlp.runtime.store import ObjectStore

NOT_SHIPPED = ("pulumi", "pulumi-aws")
"""Requirements of the project that instances never need (the Pulumi program stays behind)."""
DEFAULT_AMI_PACKAGES = ("torch", "torchvision", "torchaudio", "triton", "nvidia-*")
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Shipped:
    """One file a launch ships: its name, the sha256 of its content and where it is here."""

    filename: str
    digest: str
    path: Path

    @property
    def key(self) -> str:
        """Its key in the models bucket (content-addressed)."""
        return package_key(self.digest, self.filename)

    @property
    def size(self) -> int:
        """Its size in bytes."""
        return self.path.stat().st_size

    @classmethod
    def of(cls, path: Path) -> Shipped:
        """Describe the file at ``path``."""
        return cls(path.name, hashlib.sha256(path.read_bytes()).hexdigest(), path)


@dataclass(frozen=True)
class Release:
    """Everything one launch ships: the wheels (the project's first) and the lock."""

    wheels: tuple[Shipped, ...]
    lock: Shipped
    pins: int

    @property
    def files(self) -> tuple[Shipped, ...]:
        """The wheels and the lock."""
        return (*self.wheels, self.lock)


# -- the project's wheel -------------------------------------------------------------------------


def checkout_root() -> Path:
    """The checkout this code runs from (the folder holding the project's ``pyproject.toml``)."""
    import stnlp

    root = Path(stnlp.__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    try:
        name = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["name"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        name = None
    if name != PROJECT:
        raise UserError(
            f"cloud launches ship the checkout they run from, and {root} is not one "
            f"(no pyproject.toml of {PROJECT}); run `stnlp train` from a clone of the project"
        )
    return root


def _source_files(root: Path) -> list[Path]:
    """The files of the checkout that go into the wheel (as pyproject.toml maps them)."""
    config = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    folders = [*config["tool"]["setuptools"]["package-dir"].values(), "data/sample"]
    files = [root / "pyproject.toml", root / "README.md"]
    for folder in folders:
        files += [p for p in (root / folder).rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts and not p.name.endswith((".pyc", ".pyo"))]
    return sorted(set(files))


def source_digest(root: Path) -> str:
    """sha256 over the wheel's source files (names and contents)."""
    digest = hashlib.sha256()
    for path in _source_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build_project_wheel(root: Path | None = None) -> Path:
    """The project's wheel for the checkout at ``root``, built once per source state.

    The build runs on a copy of the sources (no ``build/`` lands in the checkout) with a fixed
    ``SOURCE_DATE_EPOCH``, so the same sources give the same file.
    """
    root = root or checkout_root()
    out = cache_root() / "wheels" / source_digest(root)
    found = sorted(out.glob("*.whl"))
    if found:
        return found[0]
    with tempfile.TemporaryDirectory(prefix="stnlp-wheel-") as tmp:
        source, dist = Path(tmp) / "source", Path(tmp) / "dist"
        for path in _source_files(root):
            target = source / path.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
             "-w", str(dist), str(source)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode != 0:
            raise UserError(f"building the project's wheel failed: {done.stderr.strip()[-500:]}")
        (wheel,) = dist.glob("*.whl")
        out.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheel, out / wheel.name))


# -- plugin wheels -------------------------------------------------------------------------------


def plugin_distributions() -> list[metadata.Distribution]:
    """The distributions of the entry-point plugins installed here (not the project's own)."""
    found: dict[str, metadata.Distribution] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist
        if dist is None or canonicalize_name(dist.metadata["Name"]) == PROJECT:
            continue
        found[canonicalize_name(dist.metadata["Name"])] = dist
    return [found[name] for name in sorted(found)]


def _dist_folder(dist: metadata.Distribution) -> Path:
    path = getattr(dist, "_path", None)
    if path is None or not Path(path).is_dir():
        raise UserError(f"plugin {dist.metadata['Name']!r}: its install cannot be read")
    return Path(path)


def _top_level(dist: metadata.Distribution) -> list[str]:
    names = {ep.value.split(":")[0].split(".")[0] for ep in dist.entry_points
             if ep.group == ENTRY_POINT_GROUP}  # fmt: skip
    text = dist.read_text("top_level.txt")
    names.update(line.strip() for line in (text or "").splitlines() if line.strip())
    return sorted(names)


def repack_plugin(dist: metadata.Distribution, out_dir: Path) -> Path:
    """A pure-Python wheel of an installed plugin: its top-level packages and metadata."""
    import importlib.util

    name, version = dist.metadata["Name"], dist.version
    stem = f"{canonicalize_name(name).replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    members: dict[str, bytes] = {}
    for top in _top_level(dist):
        spec = importlib.util.find_spec(top)
        if spec is None or not spec.submodule_search_locations:
            raise UserError(f"plugin {name!r}: package {top!r} is not importable")
        folder = Path(next(iter(spec.submodule_search_locations)))
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix in (".pyc",):
                continue
            if path.suffix in (".so", ".pyd"):
                raise UserError(f"plugin {name!r} has compiled code ({path.name}); ship it "
                                "as a wheel of its own")
            members[f"{top}/{path.relative_to(folder).as_posix()}"] = path.read_bytes()
    folder = _dist_folder(dist)
    for item in ("METADATA", "entry_points.txt", "top_level.txt"):
        if (folder / item).is_file():
            members[f"{info}/{item}"] = (folder / item).read_bytes()
    members[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: stnlp\nRoot-Is-Purelib: true\n"
                                b"Tag: py3-none-any\n")
    return write_wheel(out_dir / f"{stem}-py3-none-any.whl", members, info)


def write_wheel(path: Path, members: Mapping[str, bytes], info: str) -> Path:
    """Write a wheel holding ``members`` plus its ``RECORD``; fixed timestamps, sorted names."""

    def record_line(name: str, data: bytes) -> str:
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        return f"{name},sha256={digest},{len(data)}"

    record = "".join(f"{record_line(n, d)}\n" for n, d in sorted(members.items()))
    record += f"{info}/RECORD,,\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*sorted(members.items()), (f"{info}/RECORD", record.encode())]:
            archive.writestr(zipfile.ZipInfo(name, _EPOCH), data)
    return path


# -- the dependency lock -------------------------------------------------------------------------


def _active(requirement: Requirement, extras: Iterable[str] = ()) -> bool:
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in ("", *extras))


def dependency_pins(
    roots: Iterable[str], provided: Iterable[str] = DEFAULT_AMI_PACKAGES
) -> dict[str, str]:
    """Name -> installed version for every distribution ``roots`` need (transitively), as
    installed here, except the roots themselves (they ship as wheels), the ``provided`` ones
    (fnmatch patterns) and :data:`NOT_SHIPPED`."""
    patterns = [canonicalize_name(p) if "*" not in p else p for p in provided]
    skip = {canonicalize_name(n) for n in NOT_SHIPPED}
    pins: dict[str, str] = {}
    todo = [canonicalize_name(name) for name in roots]
    root_names = set(todo)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name in skip or any(fnmatch.fnmatch(name, p) for p in patterns):
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError as exc:
            raise UserError(f"dependency {name!r} is not installed here; run "
                            "`pip install -e .` in the checkout first") from exc
        if name not in root_names:
            pins[name] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            if _active(requirement):
                todo.append(canonicalize_name(requirement.name))
    return pins


def pip_hashes(
    pins: Mapping[str, str], python: str, extra_index: str | None = None
) -> dict[str, list[str]]:
    """sha256 of the file pip picks for each pin on Linux x86_64 CPython ``python``.

    Asks pip's resolver (``install --dry-run --report``, as configured here: index, mirrors,
    plus ``extra_index``) without downloading the wheels where the index publishes their
    metadata.
    """
    if not pins:
        return {}
    with tempfile.TemporaryDirectory(prefix="stnlp-lock-") as tmp:
        report = Path(tmp) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
            "--no-deps", "--quiet", "--report", str(report), "--only-binary=:all:",
            "--platform", "manylinux_2_28_x86_64", "--implementation", "cp",
            "--python-version", python, "--target", str(Path(tmp) / "target"),
            *(["--extra-index-url", extra_index] if extra_index else []),
            *(f"{name}=={version}" for name, version in sorted(pins.items())),
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise UserError(f"resolving the dependency lock for Python {python} failed: "
                            f"{done.stderr.strip().splitlines()[-1] if done.stderr else '?'}")
        installs = json.loads(report.read_text())["install"]
    hashes = {}
    for item in installs:
        archive = item["download_info"].get("archive_info") or {}
        digest = (archive.get("hashes") or {}).get("sha256")
        if not digest:
            raise UserError(f"the index gives no sha256 for {item['metadata']['name']}")
        hashes[canonicalize_name(item["metadata"]["name"])] = [digest]
    missing = sorted(set(pins) - set(hashes))
    if missing:
        raise UserError(f"the index has no wheel of {', '.join(missing)} for Python {python}")
    return hashes


def lock_text(pins: Mapping[str, str], hashes: Mapping[str, list[str]]) -> str:
    """A pip requirements file pinning every name to its version and hashes."""
    lines = ["# stnlp instance lock: exactly these, hash-checked (pip --require-hashes)\n"]
    for name in sorted(pins):
        checks = " ".join(f"--hash=sha256:{h}" for h in hashes[name])
        lines.append(f"{name}=={pins[name]} {checks}\n")
    return "".join(lines)


def build_lock(
    roots: Iterable[str], provided: Iterable[str], python: str,
    resolve: Callable[..., dict[str, list[str]]] = pip_hashes, extra_index: str | None = None,
) -> tuple[Path, int]:  # fmt: skip
    """The lock file of ``roots`` for Python ``python`` (cached by its pins); ``(path, pins)``."""
    pins = dependency_pins(roots, provided)
    key = hashlib.sha256(json.dumps([python, extra_index, sorted(pins.items())]).encode())
    path = cache_root() / "locks" / f"instance-{key.hexdigest()[:16]}.txt"
    if not path.is_file():
        text = lock_text(pins, resolve(pins, python, extra_index))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return path, len(pins)


# -- the release ---------------------------------------------------------------------------------


def _release(provided: Iterable[str], python: str, extra_index: str | None = None) -> Release:
    project = build_project_wheel()
    out = cache_root() / "plugin-wheels"
    plugins = [repack_plugin(dist, out) for dist in plugin_distributions()]
    roots = [PROJECT, *(dist.metadata["Name"] for dist in plugin_distributions())]
    lock, pins = build_lock(roots, provided, python, extra_index=extra_index)
    wheels = tuple(Shipped.of(path) for path in (project, *plugins))
    return Release(wheels, Shipped.of(lock), pins)


def build_release(manifest: Mapping[str, object], python: str | None = None) -> Release:
    """Build (or reuse) everything a launch on the stack of ``manifest`` ships: the AMI's
    packages (``ami_packages``) are left out of the lock, resolved for ``python`` (default
    ``ami_python``; a SageMaker image's own Python otherwise)."""
    provided = manifest.get("ami_packages") or DEFAULT_AMI_PACKAGES
    return _release(provided, python or str(manifest.get("ami_python") or "3.12"))


def build_interface_release(manifest: Mapping[str, object]) -> Release:
    """The release of the interface host: everything locked for its Python, torch's CPU build
    from the PyTorch index included (``interface_packages`` in the manifest lists what the host
    already has; none by default)."""
    provided = manifest.get("interface_packages") or ()
    python = str(manifest.get("interface_python") or INTERFACE_PYTHON)
    return _release(provided, python, TORCH_CPU_INDEX)


def upload_release(release: Release, models: ObjectStore) -> int:
    """Upload the files the models bucket does not hold yet; return how many were sent."""
    sent = 0
    for shipped in release.files:
        if not models.exists(shipped.key):
            models.upload_file(shipped.key, shipped.path)
            sent += 1
    return sent


def release_pointer(release: Release, python: str) -> dict[str, object]:
    """What ``packages/current.json`` says: each file's key, name and digest."""

    def item(shipped: Shipped) -> dict[str, str]:
        return {"key": shipped.key, "filename": shipped.filename, "digest": shipped.digest}

    return {"wheels": [item(w) for w in release.wheels], "lock": item(release.lock),
            "python": python, "pins": release.pins,
            "published": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def publish_release(release: Release, models: ObjectStore, python: str) -> dict[str, object]:
    """Upload ``release`` then move the pointer to it (last, so it never names a missing
    file); return the pointer."""
    upload_release(release, models)
    pointer = release_pointer(release, python)
    models.put(RELEASE_POINTER, json.dumps(pointer, indent=1).encode())
    return pointer
