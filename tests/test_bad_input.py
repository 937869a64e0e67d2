"""Any bytes in: records or one clear error out, never anything else (issues #13.11, #13.12).

Hypothesis feeds every loader arbitrary bytes and near-misses of each format; `--set` values of
every kind, the settings file and the environment get arbitrary text. Then the exact inputs the
adversarial pass found: numbers past the interpreter's digit limit, nesting past the recursion
limit, a CSV field over 128 KiB, a non-ASCII digit as a caption index, bad settings values, a
hyperparameter of the wrong type, a port already in use.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnlp.common.errors import DataError, UserError
from stnlp.common.settings import Settings, load_settings
from stnlp.plugins.spec import JobSpec
from stnlp.runtime.data import (
    load_any,
    load_characters,
    load_locations,
    load_subtitles,
    load_transcripts,
)
from stnlp.runtime.data.records import LoadResult
from tests.helpers import run_cli, run_main

FUZZ = settings(max_examples=40, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip

LOADERS = {
    "S01E01.srt": load_subtitles,
    "S01E01.csv": load_transcripts,
    "locations.jsonl": load_locations,
    "characters.jsonl": load_characters,
}
# Near-misses of each format, joined at random with junk.
PIECES = st.sampled_from([
    "1\n00:00:01,000 --> 00:00:02,000\nHello.\n\n", "²\n00:00:01,000 --> 00:00:02,000\nx\n",
    "name,line\n", "Mike,\"Hi, there\"\n", "\"unclosed,\n", '{"location_name": "Lab", ',
    '"location_description": "d", "location_type": "t"}\n', '{"character_name": "Will"}\n',
    "[" * 50, "9" * 5000, "\ud800", "\x00", "\r\n", "\ufeff", "\u0663\n", ",,,\n",
])  # fmt: skip
CONTENT = st.one_of(
    st.binary(max_size=600),
    st.lists(st.one_of(PIECES, st.text(max_size=30)), max_size=12).map(
        lambda parts: "".join(parts).encode("utf-8", "surrogatepass")
    ),
)


def _load_or_clear_error(load, path):
    try:
        result = load(path)
    except DataError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None
    assert isinstance(result, (LoadResult, dict))
    return result


@FUZZ
@given(name=st.sampled_from(sorted(LOADERS)), content=CONTENT)
def test_any_bytes_give_records_or_a_data_error(tmp_path_factory, name, content):
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_bytes(content)
    result = _load_or_clear_error(LOADERS[name], path)
    if result is not None:  # records can be written back as JSON and as UTF-8
        json.dumps([getattr(r, "__dict__", str(r)) for r in result.records],
                   ensure_ascii=False, default=str).encode("utf-8")  # fmt: skip
    _load_or_clear_error(load_any, path)
    from stnlp.runtime.data.validate import check_files

    with contextlib.suppress(DataError):
        check_files(path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("locations.jsonl", '{"location_name": ' + "9" * 5000 + "}\n"),
        ("characters.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"),
        ("characters.jsonl", '{"character_name": "\\ud800"}\n'),
        ("S01E01.csv", "name,line\nMike,\"" + "x" * (129 * 1024) + "\"\n"),
        ("S01E01.srt", "²\n00:00:01,000 --> 00:00:02,000\nHello.\n"),
        ("S01E01.srt", "1" * 5000 + "\n00:00:01,000 --> 00:00:02,000\nHello.\n"),
    ],
    ids=["5000 digits", "deep nesting", "lone surrogate", "128 KiB field", "superscript index",
         "5000-digit index"],
)  # fmt: skip
def test_the_inputs_that_crashed_the_loaders(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    _load_or_clear_error(LOADERS[name], path)
    _load_or_clear_error(load_any, path)


SPEC = JobSpec(
    "fuzz-job", "c", "m.n:f", "model",
    hyperparameters={"epochs": 3, "lr": 0.1, "flag": False, "name": "x", "themes": ["a"],
                     "extra": {"k": 1}, "anything": None},
)  # fmt: skip


@FUZZ
@given(key=st.sampled_from(sorted(SPEC.hyperparameters) + ["nope", ""]), text=st.text(max_size=40))
def test_set_values_are_typed_or_refused_in_one_line(key, text):
    try:
        value = SPEC.parse_override(key, text)
    except UserError as exc:
        assert "\n" not in str(exc)
        return
    from stnlp.plugins.spec import PARAMETER_TYPES

    kind = SPEC.parameter_types()[key]
    assert kind in PARAMETER_TYPES
    assert SPEC.resolved_hyperparameters(overrides={key: value})[key] == value


ENV_KEYS = ["STNLP_STORE", "STNLP_STACK", "STNLP_REGION", "STNLP_ENDPOINT_URL",
            "STNLP_LOG_LEVEL", "STNLP_DISABLED_PLUGINS", "STNLP_MODEL_CHATBOT", "STNLP_MODEL_",
            "AWS_REGION"]  # fmt: skip


@FUZZ
@given(env=st.dictionaries(st.sampled_from(ENV_KEYS),
                           st.text(st.characters(exclude_characters="\x00"), max_size=30)),
       file=st.one_of(st.none(), st.binary(max_size=200),
                      st.text(max_size=80).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_settings_and_environment_give_settings_or_a_user_error(tmp_path_factory, env, file):
    folder = tmp_path_factory.mktemp("settings")
    if file is not None:
        (folder / "stnlp.toml").write_bytes(file)
    try:
        loaded = load_settings(env=env, cwd=folder)
    except UserError as exc:
        assert "\n" not in str(exc).strip()
        return
    assert isinstance(loaded, Settings)
    from stnlp.runtime import logs

    logs.configure(loaded.log_level)  # a value that loads is one the runtime can use


BAD_ENV = [
    ("STNLP_LOG_LEVEL", "LOUD"), ("STNLP_STACK", "a/b"), ("STNLP_STACK", ".."),
    ("STNLP_STORE", " "), ("STNLP_REGION", "moon-base"), ("STNLP_ENDPOINT_URL", "localhost:5000"),
    ("AWS_REGION", "us east"), ("STNLP_MODEL_", "x"), ("STNLP_MODEL_CHATBOT", " "),
    ("STNLP_SETTINGS", "{dir}"), ("STNLP_SETTINGS", "{binary}"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "value"), BAD_ENV)
def test_a_bad_setting_is_one_line_naming_it(tmp_path, capsys, monkeypatch, name, value):
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe store = 1")
    for variable in [v for v in os.environ if v.startswith("STNLP_") or v == "AWS_REGION"]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("STNLP_STORE", str(tmp_path / "store"))
    monkeypatch.setenv(name, value.format(dir=tmp_path, binary=tmp_path / "binary.toml"))
    code, out, err = run_main(capsys, "runs", "list")
    assert code == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert name in err or (name == "STNLP_SETTINGS" and str(tmp_path) in err)


def test_a_wrong_hyperparameter_type_is_refused_before_any_run_exists(tmp_path):
    """`epochs=abc` gave a raw ValueError naming no field, after the run record existed."""
    from stnlp.runtime.backends.local import train_local
    from stnlp.runtime.store import open_stores
    from tests.kill_harness import SPEC as EXAMPLE

    settings = Settings(store=str(tmp_path / "store"), stack="test")
    with pytest.raises(UserError, match="steps='abc' is not an integer"):
        train_local(EXAMPLE, settings, overrides={"steps": "abc"}, progress=False)
    assert open_stores(settings).results.list("") == []


@pytest.fixture
def busy_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_port_in_use_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch, busy_port,
                                                     command):
    monkeypatch.setenv("STNLP_DISABLED_PLUGINS", "chatbot,classifier,network")
    settings = Settings(store=str(tmp_path / "store"))
    code, out, err = run_cli(capsys, monkeypatch, settings, command, "--port", str(busy_port))
    assert code == 2 and err.count("\n") == 1, err
    assert f"port {busy_port} on 127.0.0.1 is already in use: pass --port" in err
    assert "GRADIO_SERVER_PORT" not in err
    assert not (tmp_path / "store" / "models").exists()  # the demo refused before training
