"""Shared fixtures: S3 on moto's server over HTTP, and stores of both kinds.

``moto_endpoint`` (session): the URL of a ``ThreadedMotoServer`` on 127.0.0.1 and a free port.
``s3_client`` (session): a boto3 S3 client against it, built as the runtime builds its own.
``stores``: a :class:`stnlp.runtime.store.Stores` for each backend (``local`` folders under
tmp_path, ``s3`` fresh buckets on moto); tests using it run once per backend.
``store``: one :class:`stnlp.runtime.store.ObjectStore` of each backend (the results bucket).
``stores_settings``: :class:`Settings` whose ``open_stores`` gives the same buckets as ``stores``
(for S3: a fresh stack whose SSM manifest names them).
"""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import pytest

from stnlp.common.names import BUCKET_KINDS, manifest_parameter
from stnlp.common.settings import Settings
from stnlp.runtime.store import LocalStore, S3Store, Stores
from stnlp.runtime.store import s3_client as make_s3_client
from tests.helpers import free_port

if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # One worker per core (`make test` runs -n 2 on 2 cores): each worker, and every job it
    # spawns, keeps to its share of the cores. Two workers of two OpenMP threads each on two
    # cores spin against each other and make the jobs several times slower.
    _SHARE = max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))
    os.environ.setdefault("OMP_NUM_THREADS", str(_SHARE))

_FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(autouse=True)
def _internal_errors_in_tmp(tmp_path_factory, monkeypatch):
    """Tracebacks of internal errors (stnlp.runtime.crash) go to a temporary folder."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.getbasetemp() / "state"))


@pytest.fixture(scope="session")
def moto_endpoint():
    """URL of a moto server (all AWS services) on 127.0.0.1, shared by the session."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _FAKE_AWS}
    os.environ.update(_FAKE_AWS)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="session")
def moto_settings(moto_endpoint) -> Settings:
    """Settings pointing at the moto server (store ``s3``, stack ``test``)."""
    return Settings(store="s3", stack="test", region="us-east-1", endpoint_url=moto_endpoint)


@pytest.fixture(scope="session")
def s3_client(moto_settings):
    """A boto3 S3 client on the moto server, configured like the runtime's."""
    return make_s3_client(moto_settings)


def new_bucket(client, label: str) -> str:
    """Create a uniquely named bucket on moto and return its name."""
    name = f"stnlp-{label}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def stores(request, tmp_path) -> Stores:
    """A :class:`Stores` per backend: local folders, or fresh S3 buckets on moto."""
    if request.param == "local":
        return Stores(*(LocalStore(tmp_path / "store" / name) for name in BUCKET_KINDS))
    client = request.getfixturevalue("s3_client")
    return Stores(*(S3Store(new_bucket(client, name), client) for name in BUCKET_KINDS))


@pytest.fixture
def store(stores):
    """One object store per backend."""
    return stores.results


@pytest.fixture
def stores_settings(request, stores, tmp_path) -> Settings:
    """Settings that open exactly ``stores`` (writing an SSM manifest for S3).

    Model caches go under ``tmp_path`` (``XDG_CACHE_HOME``).
    """
    request.getfixturevalue("monkeypatch").setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    if isinstance(stores.results, LocalStore):
        return Settings(store=str(tmp_path / "store"), stack="test")
    import json

    settings = request.getfixturevalue("moto_settings")
    stack = f"t{uuid.uuid4().hex[:10]}"
    buckets = {name: getattr(stores, name).bucket for name in BUCKET_KINDS}
    make_s3_client(settings, "ssm").put_parameter(
        Name=manifest_parameter(stack),
        Type="String",
        Value=json.dumps({"stack": stack, "region": settings.region, "buckets": buckets}),
    )
    return settings.with_overrides(stack=stack)


@pytest.fixture(scope="session")
def release_cache(tmp_path_factory):
    """``XDG_CACHE_HOME`` for the session: cloud launches build the project's wheel and the
    dependency lock once per session (stnlp.runtime.backends.package caches them there)."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("release-cache"))
    yield Path(os.environ["XDG_CACHE_HOME"])
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved


@pytest.fixture
def cloud(moto_endpoint, release_cache, tmp_path, monkeypatch):
    """A deployed stack on moto with the example plugin (a :class:`tests.cloud_stack.Cloud`);
    every AWS call the project's code makes in the test is judged by AWS's rules at its end."""
    from tests.cloud_stack import judged_cloud

    with judged_cloud(moto_endpoint, tmp_path, monkeypatch) as made:
        yield made
