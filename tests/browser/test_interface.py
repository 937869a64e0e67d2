"""The assembled interface in headless Chromium: every tab used as a person would, then login.

The app runs in this process on 127.0.0.1 and a free port, on a local store whose models were
trained once per module through the demo code path (``stnlp.runtime.demo.train_all``, tiny presets,
local backend). Only the jobs whose models the page shows are trained (:data:`TRAINED_JOBS`);
the others stay untrained, which the status panel must say. A screenshot of each tab goes to
``test-artifacts/tab-<name>.png``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stnlp.common.settings import Settings
from stnlp.plugins.chatbot.plugin import BASES
from stnlp.plugins.classifier.themes import DEFAULT_THEMES
from stnlp.plugins.manager import build_plugin_manager
from stnlp.runtime.auth import Credentials
from stnlp.runtime.data import SAMPLE_DIR
from stnlp.runtime.demo import train_all
from stnlp.runtime.registry import fetch_latest
from stnlp.runtime.ui import AppContext, ServeOptions, launch
from tests.extension import install_example_plugin
from tests.helpers import free_port

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
        done = train_all(settings, _PageJobs(registry), SAMPLE_DIR, presets=("tiny",))
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
    blocks = launch(context, ServeOptions(port=free_port()))
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
    panel.get_by_label(dropdown, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    assert panel.get_by_label(dropdown, exact=True).input_value() == option


def test_header_names_each_tabs_model_source(page, context):
    header = page.locator("h1", has_text="Stranger Things NLP").locator("..")
    for _, tab in context.registry.tabs:
        assert f"{tab.title}:" in header.inner_text()


# Each time the page changes: the last bot bubble's text (null before there is one) and whether
# the chat is still busy (the message box disabled or the stop button shown).
_RECORD_REPLIES = """box => {
  window.replies = [];
  new MutationObserver(() => {
    const bots = document.querySelectorAll('[data-testid="bot"]');
    const text = bots.length ? bots[bots.length - 1].innerText : null;
    const busy = box.disabled || !!document.querySelector('[data-testid="stop-button"]');
    window.replies.push({text, busy});
  }).observe(document.body, {subtree: true, childList: true, characterData: true,
               attributes: true});
}"""
_REPLY_DONE = "() => window.replies.some(r => r.text !== null) && !window.replies.at(-1).busy"


def test_chat_with_a_character_streams_a_reply_from_the_source_the_numbers_pick(page, context):
    """The adapter answers only where its recorded judge score beats the untuned base's; the
    page says which source answers and why."""
    import torch

    from stnlp.plugins.chatbot.infer import dataset_folder, offline_responder
    from stnlp.runtime.baseline import judge

    panel = _open(page, "Chat")
    model = fetch_latest(context.settings, CHATBOT)
    trained = f"registry {CHATBOT} version {model.version} (trained for Eleven)"
    verdict = judge(model.manifest, label=f"{CHATBOT} version {model.version}")
    if verdict.use:
        assert f"{CHATBOT}: {trained}" in panel.inner_text()
    else:
        assert f"not using {trained}: {verdict.reason}" in panel.inner_text()
    _pick(page, panel, "Character", "Eleven")
    box = panel.get_by_placeholder("Type a message...")
    box.evaluate(_RECORD_REPLIES)
    torch.manual_seed(0)  # the app samples in this process: the same reply on every run
    box.fill("Where is Will?")
    box.press("Enter")
    page.wait_for_function(_REPLY_DONE, timeout=120_000)
    reply = panel.get_by_test_id("bot").last.inner_text().strip()
    assert reply and "Traceback" not in page.content()
    if verdict.use:
        texts = [r["text"] for r in page.evaluate("window.replies") if r["busy"] and r["text"]]
        partial = [text for text in dict.fromkeys(texts) if text.strip() != reply]
        assert partial, "the reply was not streamed: no partial reply was shown before the last"
        assert all(len(text.strip()) < len(reply) for text in partial), partial
    else:
        folders = [dataset_folder(context.settings, n) for n in ("transcripts", "characters")]
        assert reply == offline_responder(*folders, "Eleven").reply("Where is Will?")
    _screenshot(page, "chat")


def test_another_character_answers_with_its_own_line_offline(page, context):
    from stnlp.plugins.chatbot.infer import dataset_folder, offline_responder

    page.reload()  # a fresh chat
    page.get_by_role("tab", name="Status").wait_for()
    panel = _open(page, "Chat")
    _pick(page, panel, "Character", "Dustin Henderson")
    box = panel.get_by_placeholder("Type a message...")
    box.evaluate(_RECORD_REPLIES)
    box.fill("Where is Will?")
    box.press("Enter")
    page.wait_for_function(_REPLY_DONE, timeout=120_000)
    reply = panel.get_by_test_id("bot").last.inner_text().strip()
    folders = [dataset_folder(context.settings, n) for n in ("transcripts", "characters")]
    dustin = offline_responder(*folders, "Dustin")
    assert reply == dustin.reply("Where is Will?")
    assert reply in {turn.reply for turn in dustin.turns}


def test_location_classifier_shows_the_fallback_and_why_when_the_trained_model_loses(page, context):
    from stnlp.plugins.classifier import location_tab

    panel = _open(page, "Location classifier")
    model = fetch_latest(context.settings, "classifier-location")
    # the tiny preset's model loses to nearest-centroid on the same folds: the tab says so
    shown_source = panel.inner_text()
    assert "offline fallback: nearest centroid" in shown_source
    assert f"registry classifier-location {model.version}'s held-out macro_f1" in shown_source
    assert "does not beat nearest-centroid's" in shown_source
    panel.get_by_label("Location name and description").fill(LOCATION_TEXT)
    panel.get_by_role("button", name="Classify").click()
    top = panel.get_by_test_id("label-output-value")
    top.wait_for()
    meters = panel.locator("meter")
    shown = [(m.get_attribute("aria-label"), float(m.get_attribute("value"))) for m in meters.all()]
    expected = location_tab.load_source(context.settings).classifier.predict(LOCATION_TEXT)
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
    panel.get_by_text(re.compile(r"by embedding similarity \(computed now\)\. \d+ of")).wait_for(
        timeout=120_000
    )
    bars = panel.locator('[aria-roledescription="bar"]')
    bars.nth(len(DEFAULT_THEMES) - 1).wait_for(timeout=30_000)  # the chart draws after the text
    labels = [bar.get_attribute("aria-label") for bar in bars.all()]
    scores = dict(re.fullmatch(r"theme: (.+); score: (\S+)", label).groups() for label in labels)
    assert set(scores) == set(DEFAULT_THEMES)
    assert all(float(score) > 0 for score in scores.values()), scores
    header, *rows = panel.get_by_role("row").all()  # the per-episode table's rows
    columns = [text.strip() for text in header.get_by_role("columnheader").all_inner_texts()]
    assert columns[:5] == ["episode", "sentences", "relevant", "top", "most distinctive"]
    assert columns[5 : 5 + len(DEFAULT_THEMES)] == list(DEFAULT_THEMES)
    episodes = sorted(path.stem for path in (SAMPLE_DIR / "subtitles").glob("*.srt"))
    # the first table; the second (scores minus the series') follows it
    cells = [row.get_by_role("gridcell").all_inner_texts() for row in rows[: len(episodes)]]
    assert [row[0] for row in cells] == episodes
    assert all(0 < int(row[2]) < int(row[1]) for row in cells), cells  # some do not vote
    assert all(float(value) > 0 for row in cells for value in row[5:]), cells
    assert len({row[4].split()[0] for row in cells}) >= 2  # the episodes differ
    _screenshot(page, "themes")


def test_network_tab_renders_the_trained_graph(page, context):
    panel = _open(page, "Character network")
    version = fetch_latest(context.settings, "character-network").version
    assert f"registry: character-network {version}" in panel.inner_text()
    note = panel.get_by_text(re.compile(r"^\d+ characters, \d+ relations$"))
    characters = int(note.inner_text().split()[0])
    frame = panel.frame_locator("iframe")
    frame.locator("#network canvas").wait_for(state="visible", timeout=60_000)
    assert characters > 1
    assert frame.locator("body").evaluate("() => nodes.length") == characters
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
    blocks = launch(context, ServeOptions(port=free_port(), credentials=creds))
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
