"""A store full of junk: every read command answers in one line and the rest keeps working.

Issues #13.8 and #13.9: one bad ``latest.json`` took `stnlp serve` down at start-up and crashed
`models list/show/rollback`; junk or partial ``state.json`` and lock objects gave 19 different
tracebacks, and one bad record killed `runs list` for the whole stack. Here every kind of
object the runtime reads is replaced by junk of the shapes a crash, a bad hand edit or a
hostile writer leaves (empty, cut short, the wrong JSON type, fields missing or of the wrong
type, invalid UTF-8, numbers past the digit limit, nesting past the recursion limit), and every
read command is run against the store.
"""

from __future__ import annotations

import json

import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.runs import Run, new_run_id
from stnlp.runtime.store import S3Store
from stnlp.runtime.upload import upload_path
from tests.helpers import run_cli

GOOD_RECORD = {
    "run_id": "", "stack": "", "job": "job-a", "backend": "local", "state": "training",
    "result": None, "created": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00",
    "heartbeat": "2026-01-01T00:00:00+00:00", "history": [{"state": "initialization"}],
}  # fmt: skip


def _record(**changes) -> bytes:
    return json.dumps({**GOOD_RECORD, **changes}).encode()


JUNK = {
    "empty": b"",
    "cut short": b'{"run_id": "x", "sta',
    "a list": b"[1, 2, 3]",
    "an empty object": b"{}",
    "invalid utf-8": b"\xff\xfe\x00junk",
    "5000 digits": b'{"run_id": ' + b"9" * 5000 + b"}",
    "deep nesting": b"[" * 100_000 + b"]" * 100_000,
    "state not a state": _record(state="exploding"),
    "no heartbeat": _record(heartbeat=None),
    "history a string": _record(history="x"),
    "job a number": _record(job=7),
    "names another run": _record(run_id="someone-else"),
}
# On moto every command costs a quarter second: S3 gets a sample of the shapes (the parsing is
# the store's, shared), plus the keys only S3 can hold.
S3_SAMPLE = ("cut short", "invalid utf-8", "deep nesting", "state not a state")


@pytest.fixture
def junk_store(stores, stores_settings, tmp_path):
    """A stack with one good run, one good model and dataset, and junk everywhere else."""
    stack = stores_settings.stack
    on_s3 = isinstance(stores.results, S3Store)
    junk = {k: v for k, v in JUNK.items() if k in S3_SAMPLE} if on_s3 else JUNK
    good = Run.start(stores, stack, "job-good", "local")
    good.cleanup()
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.bin").write_bytes(b"w")
    registry = ModelRegistry(stores.models)
    good_version = registry.publish("good-model", model_dir)
    folder = tmp_path / "transcripts"
    folder.mkdir()
    (folder / "S01E01.csv").write_text("name,line\nMike,Hello.\n")
    upload_path(folder, stores.datasets, progress=False)

    junk_runs = {}
    for n, (label, body) in enumerate(junk.items()):
        run_id = new_run_id(f"junk{n}")
        junk_runs[label] = run_id
        stores.results.put(f"{stack}/runs/{run_id}/state.json", body)
    first_junk = json.dumps({"run_id": [*junk_runs.values()][0]}).encode()
    for n, body in enumerate([b"{}", b"\xff", b"[]", first_junk]):
        stores.results.put(f"{stack}/locks/job-{n}.json", body)
    for n, body in enumerate(junk.values()):
        stores.models.put(f"models/junk-{n}/latest.json", body)
    stores.models.put("models/missing-version/latest.json",
                      json.dumps({"version": "v20260101T000000000000-abcdef"}).encode())
    version = registry.publish("bad-manifest", model_dir)
    stores.models.delete(f"models/bad-manifest/{version}/manifest.json")
    stores.models.put(f"models/bad-manifest/{version}/manifest.json", b'{"files": "nope"')
    stores.datasets.put("raw/characters/latest.json", b"\x00junk")
    if on_s3:  # keys only S3 can hold, written by someone else
        for key in ("raw/subtitles/../../escape.srt", "raw/locations/"):
            stores.datasets.client.put_object(Bucket=stores.datasets.bucket, Key=key, Body=b"x")
    return stores, stores_settings, junk_runs, good.run_id, good_version


def _one_line_or_clean(code: int, out: str, err: str, allowed=(0, 2)):
    assert "Traceback" not in out + err and "internal error" not in err, err
    assert code in allowed, (code, err)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) <= 1 and (code == 0 or errors or code == 1), err


def test_every_read_command_answers_in_one_line(junk_store, capsys, monkeypatch):
    stores, settings, junk_runs, good_run, good_version = junk_store
    commands = [
        ("runs", "list"), ("runs", "show", good_run), ("models", "list"),
        ("models", "show", "good-model"), ("models", "show", "missing-version"),
        ("models", "show", "bad-manifest"), ("data", "versions", "transcripts"),
        ("data", "versions", "characters"), ("data", "versions", "subtitles"),
    ]  # fmt: skip
    for run_id in junk_runs.values():
        commands += [("runs", "show", run_id), ("runs", "logs", run_id)]
    commands += [("models", "show", f"junk-{n}") for n in range(len(junk_runs))]
    tried = 0
    for args in commands:
        code, out, err = run_cli(capsys, monkeypatch, settings, *args)
        _one_line_or_clean(code, out, err)
        tried += 1
    code, out, err = run_cli(capsys, monkeypatch, settings, "runs", "list")
    assert good_run in out  # one bad record no longer hides the others
    assert err.count("damaged run record") == len(junk_runs)
    code, out, err = run_cli(capsys, monkeypatch, settings, "models", "list")
    assert good_version in out and "damaged latest.json" in out
    assert tried == 9 + 3 * len(junk_runs)


def test_doctor_lists_the_damage_and_repairs_what_is_safe(junk_store, capsys, monkeypatch):
    stores, settings, junk_runs, good_run, good_version = junk_store
    code, out, err = run_cli(capsys, monkeypatch, settings, "doctor")
    _one_line_or_clean(code, out, err, allowed=(1,))
    assert out.count("damaged:") >= len(junk_runs) * 2 + 4
    code, out, err = run_cli(capsys, monkeypatch, settings, "doctor", "--repair")
    _one_line_or_clean(code, out, err, allowed=(0,))
    code, out, err = run_cli(capsys, monkeypatch, settings, "doctor")
    assert code == 0 and "0 to repair" in out, out
    code, out, err = run_cli(capsys, monkeypatch, settings, "runs", "list")
    assert "damaged" not in err and good_run in out
    # nothing was lost: each damaged record's bytes are kept beside its repaired record
    for label, run_id in junk_runs.items():
        kept = [k for k in stores.results.list(f"{settings.stack}/runs/{run_id}/")
                if "state.damaged-" in k]  # fmt: skip
        assert stores.results.get(kept[0]) == JUNK[label]
    registry = ModelRegistry(stores.models)
    assert registry.latest("good-model") == good_version
    assert registry.latest("missing-version") is None
    Run.start(stores, settings.stack, "job-0", "local").cleanup()  # damaged locks are gone


def test_rollback_repairs_a_damaged_pointer(junk_store, capsys, monkeypatch):
    stores, settings, *_ = junk_store
    registry = ModelRegistry(stores.models)
    stores.models.put("models/good-model/latest.json", b"{\"version\": 12")
    code, out, err = run_cli(capsys, monkeypatch, settings, "models", "show", "good-model")
    assert code == 0 and "latest.json" in err and "Traceback" not in err
    version = registry.versions("good-model")[0]
    code, out, err = run_cli(capsys, monkeypatch, settings, "models", "rollback", "good-model",
                             version)  # fmt: skip
    assert code == 0, err
    assert registry.latest("good-model") == version
    from stnlp.runtime.datasets import DatasetStore

    datasets = DatasetStore(stores.datasets)
    code, out, err = run_cli(capsys, monkeypatch, settings, "data", "rollback", "transcripts",
                             datasets.versions("transcripts")[0])  # fmt: skip
    assert code == 0, err


def test_the_interface_starts_with_a_damaged_pointer(tmp_path):
    """`stnlp serve` exited with a traceback at start-up (a restart loop under systemd)."""
    from stnlp.runtime.ui import AppContext, build_app, status_markdown
    from tests.test_ui import ProbePlugin

    settings = Settings(store=str(tmp_path / "store"), stack="test",
                        disabled_plugins=("chatbot", "classifier", "network"))
    stores_root = tmp_path / "store" / "models" / "models" / "probe-model"
    stores_root.mkdir(parents=True)
    (stores_root / "latest.json").write_bytes(b"\x00{junk")
    app = AppContext(settings, build_plugin_manager(settings, extra=(("probe", ProbePlugin),)))
    build_app(app)
    status = status_markdown(app)
    assert "probe-model" in status and "latest.json is damaged" in status
