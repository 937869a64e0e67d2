"""The interface shell served for real: errors in the page, login, upload limit, file serving."""

from __future__ import annotations

import base64
import os
import tempfile
import urllib.error
import urllib.request
import uuid

import gradio as gr
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from stnlp.common.errors import UserError
from stnlp.common.settings import Settings
from stnlp.plugins import hookimpl
from stnlp.plugins.manager import build_plugin_manager
from stnlp.plugins.spec import Component, JobSpec, TabSpec
from stnlp.runtime.auth import Credentials
from stnlp.runtime.registry import ModelRegistry
from stnlp.runtime.store import open_stores
from stnlp.runtime.ui import (
    AppContext,
    ServeOptions,
    build_app,
    component_status,
    guard_callback,
    launch,
    page_error,
    status_markdown,
)
from stnlp.runtime.ui_sources import VERSION_ID, badge_html, badge_kind, badge_text
from tests.helpers import free_port

# The shell is tested on its own: the built-in and example plugins have their own tests.
ISOLATED = ("chatbot", "classifier", "network", "example")


class ProbePlugin:
    """A plugin whose tab exercises every kind of callback and failure."""

    @staticmethod
    @hookimpl
    def stnlp_components(settings):
        """A trained component and one without a job."""
        return [Component("probe-model", "trained"), Component("probe-rules", "no job")]

    @staticmethod
    @hookimpl
    def stnlp_training_jobs(settings):
        """The job publishing the probe model."""
        spec = JobSpec("probe-fit", "probe-model", "tests.test_ui:fit", output_model="probe-model")
        return [spec]

    @staticmethod
    @hookimpl
    def stnlp_gradio_tabs(settings):
        """One working tab and one whose build fails."""

        def build(app):
            text = gr.Textbox(label="in")
            out = gr.Textbox(label="out")

            def answer(value: str) -> str:
                if value == "user":
                    raise UserError(f"season {value!r} is not in the data")
                if value == "bug":
                    raise RuntimeError("secret internal detail")
                return value.upper()

            def stream(value: str):
                for i in range(1, len(value) + 1):
                    yield value[:i]
                if value == "late":
                    raise UserError("stream broke after the text")

            gr.Button("go").click(answer, text, out, api_name="answer")
            gr.Button("stream").click(stream, text, out, api_name="stream")

        def broken(app):
            raise RuntimeError("cannot build")

        return [
            TabSpec("probe", "Probe", build, model_source=lambda app: "offline probe"),
            TabSpec("broken", "Broken", broken, order=200),
        ]


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    settings = Settings(store=str(tmp_path_factory.mktemp("store")), disabled_plugins=ISOLATED)
    registry = build_plugin_manager(settings, extra=(("probe", ProbePlugin),))
    return AppContext(settings, registry)


@pytest.fixture(scope="module")
def served(context):
    blocks = launch(context, ServeOptions(port=free_port(), max_file_size="1kb"))
    yield blocks
    blocks.close()


@pytest.fixture(scope="module")
def served_with_login(context):
    creds = Credentials("hopper", "eggos", "test")
    blocks = launch(context, ServeOptions(port=free_port(), credentials=creds))
    yield blocks
    blocks.close()


def _status(url: str, headers: dict[str, str] | None = None, data: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_callbacks_keep_their_kind_and_signature():
    def plain(a, request: gr.Request):
        return a

    def gen(a):
        yield a

    async def coro(a):
        return a

    async def agen(a):
        yield a

    import inspect

    assert inspect.signature(guard_callback(plain, "t")) == inspect.signature(plain)
    assert inspect.isgeneratorfunction(guard_callback(gen, "t"))
    assert inspect.iscoroutinefunction(guard_callback(coro, "t"))
    assert inspect.isasyncgenfunction(guard_callback(agen, "t"))


def test_each_tab_shows_its_badge_status_the_detail_and_a_broken_tab_does_not_stop_the_app(
    context,
):
    blocks = build_app(context)
    markdown = [b.value for b in blocks.blocks.values() if isinstance(b, gr.Markdown)]
    html = [b.value for b in blocks.blocks.values() if isinstance(b, gr.HTML)]
    assert '<h1>Stranger Things NLP</h1>' in html[0]
    assert any('stnlp-badge-fallback" title="Full detail in the Status tab">offline probe<' in h
               for h in html)  # fmt: skip
    assert any("| Probe | offline probe | offline probe |" in text for text in markdown)
    assert any("could not be built" in text and "`probe`" in text for text in markdown)
    titles = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert titles[-1] == "Status" and "Probe" in titles


@pytest.mark.parametrize(
    ("line", "badge", "kind"),
    [
        ("trained network; registry: character-network v20260105T101010123456-ed7e70",
         "trained network", "trained"),
        ("registry line-length v20260105T101010123456-ed7e70", "registry line-length", "trained"),
        ("offline fallback: nearest centroid (sample); not the trained version: it loses",
         "offline fallback: nearest centroid", "fallback"),
        ("computed live; MiniLM", "computed live", "live"),
        ("hub model org/name (NLI) if cached", "hub model org/name if cached", "hub"),
        ("no model", "no model", "other"),
    ],
)  # fmt: skip
def test_a_badge_is_the_first_clause_without_versions_or_parentheses(line, badge, kind):
    assert (badge_text(line), badge_kind(badge_text(line))) == (badge, kind)
    assert VERSION_ID.search(badge_html(line)) is None


def test_page_errors_show_an_uploaded_files_own_name_never_its_server_path(monkeypatch, tmp_path):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    upload = tmp_path / "gradio" / "0a1b2c" / "episode two.srt"
    shown = page_error("Themes", UserError(f"{upload.parent}/notes.srt: file name has no tag"))
    assert shown.message == "notes.srt: file name has no tag"
    shown = page_error("Themes", gr.Error(f"cannot read {tempfile.gettempdir()}/x/S01E02.srt"))
    assert shown.message == "cannot read S01E02.srt"


def test_user_error_reaches_the_page_as_its_message(served):
    client = Client(served.local_url, verbose=False)
    assert client.predict("dustin", api_name="/answer") == "DUSTIN"
    with pytest.raises(AppError, match="season 'user' is not in the data"):
        client.predict("user", api_name="/answer")


def test_unexpected_error_shows_a_short_note_not_a_trace(served):
    client = Client(served.local_url, verbose=False)
    with pytest.raises(AppError) as info:
        client.predict("bug", api_name="/answer")
    message = str(info.value)
    assert "Probe: something went wrong (RuntimeError)" in message
    assert "secret internal detail" not in message and "Traceback" not in message


def test_streamed_replies_arrive_and_errors_after_them_are_shown(served):
    client = Client(served.local_url, verbose=False)
    job = client.submit("will", api_name="/stream")
    assert job.result() == "will"
    assert job.outputs() == ["w", "wi", "wil", "will"]
    with pytest.raises(AppError, match="stream broke after the text"):
        client.predict("late", api_name="/stream")


def test_uploads_above_the_limit_are_refused(served):
    def upload(size: int) -> int:
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
            f"Content-Type: text/plain\r\n\r\n"
        ).encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return _status(f"{served.local_url}gradio_api/upload", headers, body)

    assert upload(500) == 200
    assert upload(5000) == 413


def test_only_the_apps_own_files_are_served(served, context, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the web")
    stored = context.settings.store + "/models.json"
    with open(stored, "w") as handle:
        handle.write("{}")
    for path in (secret, stored, "/etc/passwd"):
        assert _status(f"{served.local_url}gradio_api/file={path}") == 403


def test_a_mistake_in_the_page_logs_one_line_and_no_traceback(served, capfd, caplog):
    """Issue #13.12: each mistake made in the page printed ~30 lines of traceback."""
    caplog.set_level("WARNING", logger="stnlp.runtime.ui")
    capfd.readouterr()
    client = Client(served.local_url, verbose=False)
    for value in ("user", "bug"):
        with pytest.raises(AppError):
            client.predict(value, api_name="/answer")
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    messages = [r.getMessage() for r in caplog.records if r.name == "stnlp.runtime.ui"]
    assert messages == ["user error", "callback failed"]


@pytest.mark.parametrize("variable", ["GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE"])
def test_gradio_folders_set_to_the_root_do_not_serve_the_filesystem(context, monkeypatch,
                                                                   variable):
    """Issue #13.13: ``GRADIO_TEMP_DIR=/`` made the interface serve every file."""
    import shutil

    monkeypatch.setenv(variable, "/")
    try:
        blocks = launch(context, ServeOptions(port=free_port()))
    except UserError as exc:  # not allowed to make a folder in / : refused in one line
        assert variable in str(exc)
        return
    try:
        for path in ("/etc/passwd", "/etc/hostname"):
            assert _status(f"{blocks.local_url}gradio_api/file={path}") == 403
    finally:
        blocks.close()
        private = os.environ[variable]
        assert private.startswith("/stnlp-gradio-")
        shutil.rmtree(private, ignore_errors=True)


def test_allowed_paths_from_the_environment_are_refused(context, monkeypatch):
    monkeypatch.setenv("GRADIO_ALLOWED_PATHS", "/")
    with pytest.raises(UserError, match="GRADIO_ALLOWED_PATHS"):
        launch(context, ServeOptions(port=free_port()))


def test_non_local_bind_without_login_refuses_to_start(context):
    with pytest.raises(UserError, match="STNLP_AUTH_USERNAME"):
        launch(context, ServeOptions(host="0.0.0.0", port=free_port()))


@pytest.mark.parametrize("path", ["", "config", "gradio_api/info", "gradio_api/queue/join"])
def test_pages_and_api_answer_401_without_login(served_with_login, path):
    assert _status(served_with_login.local_url + path) == 401
    wrong = {"Authorization": "Basic " + base64.b64encode(b"hopper:waffles").decode()}
    assert _status(served_with_login.local_url + path, wrong) == 401


def test_login_opens_pages_and_api(served_with_login):
    good = {"Authorization": "Basic " + base64.b64encode(b"hopper:eggos").decode()}
    assert _status(served_with_login.local_url, good) == 200
    assert _status(served_with_login.local_url + "gradio_api/info", good) == 200


def test_status_panel_shows_each_component_and_its_latest_model(context, tmp_path):
    rows = {row.component: row for row in component_status(context)}
    assert rows["probe-model"].source == "not trained yet"
    assert rows["probe-rules"].source == "no training job"
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    models = ModelRegistry(open_stores(context.settings).models)
    models.publish("probe-model", tmp_path, base_model="tiny-base", metrics={"accuracy": 0.8125})
    version = models.publish("probe-model", tmp_path, metrics={"accuracy": 0.90625, "n": 3})
    row = {row.component: row for row in component_status(context)}["probe-model"]
    assert row.version == version
    assert row.source.startswith("registry") and row.metrics == "accuracy=0.9062, n=3"
    assert row.trained.endswith("UTC")
    table = status_markdown(context)
    assert f"| probe-model | probe | probe-model | {version} |" in table
    origin = {"job": "probe-twin", "model": "probe-twin", "version": "v1"}
    models.publish("probe-model", tmp_path, extra={"same_training_as": origin})
    row = {row.component: row for row in component_status(context)}["probe-model"]
    assert row.source.endswith("a copy of probe-twin v1 (the same training)")


def test_status_panel_reads_manifests_without_fetching_artifacts(context, tmp_path, monkeypatch):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    models = ModelRegistry(open_stores(context.settings).models)
    version = models.publish("probe-model", tmp_path, metrics={"accuracy": 0.5})

    def no_fetch(*args, **kwargs):
        raise AssertionError("the status panel must not download or verify artifacts")

    monkeypatch.setattr(ModelRegistry, "fetch", no_fetch)
    row = {row.component: row for row in component_status(context)}["probe-model"]
    assert (row.version, row.metrics) == (version, "accuracy=0.5")
    manifest = models.store.path(f"models/probe-model/{version}/manifest.json")
    manifest.write_text("not json")
    row = {row.component: row for row in component_status(context)}["probe-model"]
    assert row.version == "-" and row.source.startswith("unreadable:")
