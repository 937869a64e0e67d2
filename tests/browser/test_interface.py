"""The assembled interface in headless Chromium: every tab used as a person would, then login.

The app runs in this process on 127.0.0.1 and a free port, on a local store whose models were
trained once per module through the demo code path (``runtime.demo.train_all``, tiny presets,
local backend). Only the jobs whose models the page shows are trained (:data:`TRAINED_JOBS`);
the others stay untrained, which the status panel must say. A screenshot of each tab goes to
``test-artifacts/tab-<name>.png``.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest

from plugins.chatbot.plugin import BASES
from plugins.classifier.themes import DEFAULT_THEMES
from plugins.manager import build_plugin_manager
from runtime.auth import Credentials
from runtime.data import SAMPLE_DIR
from runtime.demo import train_all
from runtime.registry import fetch_latest
from runtime.settings import Settings
from runtime.ui import AppContext, ServeOptions, launch
from tests.extension import install_example_plugin

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
CHATBOT = next(iter(BASES))
"""The chatbot the Chat tab selects by default: the only one the page talks to."""
TRAINED_JOBS = frozenset({CHATBOT, "classifier-location", "network-characters", "example-linefit"})
"""Jobs whose models the page uses. ``classifier-theme`` is left out: its tiny preset scores a
truncated corpus, so the Themes tab scores the sample corpus live either way."""
LOCATION_TEXT = "Hawkins Lab. A fenced government facility with long corridors and guarded labs."

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _PageJobs:
    """The registry's job specs limited to :data:`TRAINED_JOBS`, for ``train_all``."""

    def __init__(self, registry):
        self.registry = registry

    def job_specs(self):
        """The registry's specs of the jobs the page needs, in the registry's order."""
        return [spec for spec in self.registry.job_specs() if spec.name in TRAINED_JOBS]


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """Every registered plugin plus the example one; the page's models trained by the demo."""
    site = install_example_plugin(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        settings = Settings(store=str(tmp_path_factory.mktemp("store")))
        registry = build_plugin_manager(settings)
        assert set(registry.jobs) >= TRAINED_JOBS, "a job the page needs is not registered"
        done = train_all(settings, _PageJobs(registry), SAMPLE_DIR)
        assert {job.job for job in done if job.action == "trained"} == TRAINED_JOBS
        yield AppContext(settings, registry)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page(context, browser):
    """A page on the app served without login."""
    blocks = launch(context, ServeOptions(port=_free_port()))
    tab = browser.new_page(viewport={"width": 1280, "height": 1000})
    tab.goto(blocks.local_url)
    tab.get_by_role("tab", name="Status").wait_for()
    yield tab
    tab.close()
    blocks.close()


def _open(page, title: str):
    page.get_by_role("tab", name=title).click()
    return page.get_by_role("tabpanel").filter(has=page.locator(":visible")).last


def _screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"tab-{name}.png"), full_page=True)


def _pick(page, panel, dropdown: str, option: str) -> None:
    panel.get_by_label(dropdown).click()
    page.get_by_role("option", name=option, exact=True).click()
    assert panel.get_by_label(dropdown).input_value() == option


def test_header_names_each_tabs_model_source(page, context):
    header = page.locator("h1", has_text="Stranger Things NLP").locator("..")
    for _, tab in context.registry.tabs:
        assert f"{tab.title}:" in header.inner_text()


# The bot bubble's text each time the chat log changes, recorded in the page.
_RECORD_REPLIES = """log => {
  window.replies = [];
  new MutationObserver(() => {
    const bots = log.querySelectorAll('[data-testid="bot"]');
    if (bots.length) window.replies.push(bots[bots.length - 1].innerText);
  }).observe(log, {subtree: true, childList: true, characterData: true});
}"""


def _sse_messages(body: str) -> list[dict]:
    return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]


def test_chat_streams_a_reply_in_the_characters_voice_from_the_trained_adapter(page, context):
    panel = _open(page, "Chat")
    version = fetch_latest(context.settings, CHATBOT).version
    assert f"{CHATBOT}: registry {CHATBOT} version {version}" in panel.inner_text()
    _pick(page, panel, "Character", "Dustin")
    panel.get_by_text("Generation settings").click()
    temperature = panel.get_by_label("number input for Temperature")
    temperature.fill("0")  # greedy decoding: the same reply on every run
    temperature.press("Tab")
    panel.get_by_role("log").evaluate(_RECORD_REPLIES)
    with page.expect_response(lambda r: "/queue/data" in r.url) as stream:
        box = panel.get_by_placeholder("Type a message...")
        box.fill("Where is Will?")
        box.press("Enter")
    stream.value.finished()
    messages = _sse_messages(stream.value.text())
    generating = [m for m in messages if m["msg"] == "process_generating"]
    completed = [m for m in messages if m["msg"] == "process_completed"]
    assert len(generating) > 2, "the reply was not streamed"
    assert completed and completed[-1]["success"], completed
    bubble = panel.locator('[data-testid="bot"]').last
    reply = bubble.inner_text().strip()
    assert reply
    seen = [text for text in dict.fromkeys(page.evaluate("window.replies")) if text.strip()]
    assert len(seen) >= 2 and len(seen[0]) < len(reply), seen
    assert "Traceback" not in page.content()
    _screenshot(page, "chat")


def test_location_classifier_shows_the_trained_models_top_types(page, context):
    from plugins.classifier.location_model import LocationClassifier

    panel = _open(page, "Location classifier")
    model = fetch_latest(context.settings, "classifier-location")
    assert f"registry: classifier-location {model.version}" in panel.inner_text()
    panel.get_by_label("Location name and description").fill(LOCATION_TEXT)
    panel.get_by_role("button", name="Classify").click()
    top = panel.get_by_test_id("label-output-value")
    top.wait_for()
    meters = panel.locator("meter")
    shown = [(m.get_attribute("aria-label"), float(m.get_attribute("value"))) for m in meters.all()]
    expected = LocationClassifier.load(model.path).predict(LOCATION_TEXT)
    ranked = sorted(expected.items(), key=lambda item: -item[1])[:5]
    assert [label for label, _ in shown] == [label for label, _ in ranked]
    assert [p for _, p in shown] == pytest.approx([p for _, p in ranked], abs=1e-5)
    assert top.inner_text() == ranked[0][0]
    percents = panel.locator("dd.confidence").all_inner_texts()
    assert percents == [f"{round(p * 100)}%" for _, p in ranked]
    _screenshot(page, "location-classifier")


def test_themes_on_the_sample_corpus_draw_the_chart_and_the_episode_table(page):
    panel = _open(page, "Themes")
    panel.get_by_role("button", name="Score themes").click()
    panel.get_by_text(re.compile(r"by embedding similarity \(computed now\)$")).wait_for(
        timeout=120_000
    )
    bars = panel.locator('[aria-roledescription="bar"]')
    labels = [bar.get_attribute("aria-label") for bar in bars.all()]
    scores = dict(re.fullmatch(r"theme: (.+); score: (\S+)", label).groups() for label in labels)
    assert set(scores) == set(DEFAULT_THEMES)
    assert all(float(score) > 0 for score in scores.values()), scores
    table = panel.locator("table").last
    header = table.locator("thead").inner_text().split()
    assert header[:2] == ["episode", "sentences"]
    rows = [row.split("\t") for row in table.locator("tbody tr").all_inner_texts()]
    episodes = sorted(path.stem for path in (SAMPLE_DIR / "subtitles").glob("*.srt"))
    assert [row[0].strip() for row in rows] == episodes
    assert all(int(row[1]) > 0 for row in rows)
    _screenshot(page, "themes")


def test_network_tab_renders_the_trained_graph(page, context):
    panel = _open(page, "Character network")
    version = fetch_latest(context.settings, "character-network").version
    assert f"registry: character-network {version}" in panel.inner_text()
    note = panel.get_by_text(re.compile(r"^\d+ characters, \d+ relations$"))
    characters = int(note.inner_text().split()[0])
    frame = panel.frame_locator("iframe")
    frame.locator("#network canvas").wait_for(state="visible", timeout=60_000)
    assert frame.locator("body").evaluate("() => nodes.length") == characters > 1
    _screenshot(page, "character-network")


def test_example_plugin_tab_answers_from_its_trained_model(page):
    _open(page, "Line length")
    page.get_by_label("Speaker").fill("Dustin")
    page.get_by_label("Speaker").press("Enter")
    answer = page.get_by_label("Typical line length")
    page.wait_for_function(
        "el => el.value.includes('characters per line')", arg=answer.element_handle()
    )
    assert answer.input_value().startswith("Dustin: about ")
    _screenshot(page, "line-length")


def test_example_plugin_tab_shows_a_clear_error_for_unknown_input(page):
    _open(page, "Line length")
    page.get_by_label("Speaker").fill("Demogorgon")
    page.get_by_label("Speaker").press("Enter")
    answer = page.get_by_label("Typical line length")
    page.wait_for_function("el => el.value.includes('unknown')", arg=answer.element_handle())
    assert "Traceback" not in page.content()


def test_status_tab_shows_trained_and_untrained_models(page, context):
    _open(page, "Status")
    page.get_by_role("button", name="Refresh").click()
    status = page.locator("#stnlp-status")
    status.get_by_text("line-length").first.wait_for()
    rows = {}
    for row in status.locator("tbody tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        rows[cells[2]] = cells
    for spec in context.registry.job_specs():
        version, source = rows[spec.output_model][3:5]
        if spec.name in TRAINED_JOBS:
            assert version == fetch_latest(context.settings, spec.output_model).version
            assert source.startswith("registry (")
        else:
            assert (version, source) == ("-", "not trained yet")
    _screenshot(page, "status")


def test_with_login_pages_and_api_answer_401_and_the_browser_gets_in_with_it(context, browser):
    creds = Credentials("hopper", "eggos", "test")
    blocks = launch(context, ServeOptions(port=_free_port(), credentials=creds))
    try:
        anonymous = browser.new_context()
        for path in ("", "config", "gradio_api/info"):
            assert anonymous.request.get(blocks.local_url + path).status == 401
        anonymous.close()
        login = {"username": "hopper", "password": "eggos"}
        logged_in = browser.new_context(http_credentials=login)
        page = logged_in.new_page()
        assert page.goto(blocks.local_url).status == 200
        page.get_by_role("tab", name="Status").click()
        page.locator("#stnlp-status").get_by_text("line-length").first.wait_for()
        _screenshot(page, "status-logged-in")
        logged_in.close()
    finally:
        blocks.close()
