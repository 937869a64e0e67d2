"""The assembled interface in headless Chromium: every tab used as a person would, then login.

The app runs in this process on 127.0.0.1 and a free port, on a local store whose models were
trained once per module through the demo code path (``stnlp.runtime.demo.train_all``, tiny presets,
local backend). Only the jobs whose models the page shows are trained (:data:`TRAINED_JOBS`);
the others stay untrained, which the status panel must say. A screenshot of each tab (desktop,
light) goes to ``docs/screenshots/<tab>.png``, with ``phone.png`` (390 px wide) and
``dark.png`` (the network in dark mode): the README shows them.
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
from stnlp.runtime.ui import PURPOSE, TITLE, AppContext, ServeOptions, launch
from stnlp.runtime.ui_sources import VERSION_ID, badge_text
from tests.extension import install_example_plugin
from tests.helpers import free_port

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
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
def served(context):
    """The app served without login."""
    blocks = launch(context, ServeOptions(port=free_port()))
    yield blocks
    blocks.close()


def _new_page(browser, url: str, **options):
    tab = browser.new_page(**options)
    tab.goto(url)
    tab.get_by_role("tab", name="Chat").wait_for()
    return tab


@pytest.fixture(scope="module")
def page(served, browser):
    """A desktop page (light mode) on the app."""
    tab = _new_page(browser, served.local_url, viewport={"width": 1280, "height": 1000})
    yield tab
    tab.close()


def _open(page, title: str):
    page.get_by_role("tab", name=title).click()
    return page.get_by_role("tabpanel").filter(has=page.locator(":visible")).last


def _screenshot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _pick(page, panel, dropdown: str, option: str) -> None:
    panel.get_by_label(dropdown, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    assert panel.get_by_label(dropdown, exact=True).input_value() == option


def _source(context, title: str) -> str:
    [tab] = [tab for _, tab in context.registry.tabs if tab.title == title]
    return tab.model_source(context)


def test_the_page_says_what_it_is_and_each_tab_shows_only_its_badge(page, context):
    header = page.locator("#stnlp-header")
    assert header.locator("h1").inner_text() == TITLE
    assert header.inner_text().strip().endswith(PURPOSE)
    assert VERSION_ID.search(header.inner_text()) is None
    for _, tab in context.registry.tabs:
        panel = _open(page, tab.title)
        badge = panel.locator(".stnlp-badge")
        assert badge.inner_text() == badge_text(tab.model_source(context))
        assert badge.is_visible()
        assert VERSION_ID.search(panel.inner_text()) is None, tab.title
    status = _open(page, "Status")
    assert VERSION_ID.search(status.inner_text())  # the full detail lives here


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

    model = fetch_latest(context.settings, CHATBOT)
    trained = f"registry {CHATBOT} version {model.version} (trained for Eleven)"
    verdict = judge(model.manifest, label=f"{CHATBOT} version {model.version}")
    status = _open(page, "Status").inner_text()
    if verdict.use:
        assert f"{CHATBOT}: {trained}" in status
    else:
        assert f"not using {trained}: {verdict.reason}" in status
    panel = _open(page, "Chat")
    _pick(page, panel, "Character", "Eleven")
    answering = panel.get_by_text("Answering as Eleven:").inner_text()
    assert ("trained adapter for Eleven" in answering) == verdict.use, answering
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

    model = fetch_latest(context.settings, "classifier-location")
    # the tiny preset's model loses to nearest-centroid on the same folds: Status says so
    status = _open(page, "Status").inner_text()
    assert f"registry classifier-location {model.version}'s held-out macro_f1" in status
    assert "does not beat nearest-centroid's" in status
    panel = _open(page, "Location classifier")
    assert panel.locator(".stnlp-badge").inner_text().startswith("offline fallback: nearest")
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
    assert "computed live" in panel.locator(".stnlp-badge").inner_text()  # no theme job trained
    assert "S01E02.srt" in panel.inner_text()  # the naming rule, before any upload
    # nothing placeholder before the first run: no results table or chart, no "1 2 3" columns
    headers = [h.strip() for h in panel.get_by_role("columnheader").all_inner_texts()]
    assert headers == ["Themes", "Custom themes (comma-separated)", "Sentences per window"]
    assert not panel.get_by_text("Scores per episode").is_visible()
    assert not panel.locator("#stnlp-theme-chart").is_visible()
    panel.get_by_role("button", name="Score themes").click()
    episodes = sorted(path.stem for path in (SAMPLE_DIR / "subtitles").glob("*.srt"))
    panel.get_by_text(
        re.compile(rf"Scored {len(episodes)} episode\(s\), \d+ sentences .* in \d+\.\d s: \d+ of")
    ).wait_for(timeout=120_000)
    assert "by embedding similarity (computed now)" in panel.inner_text()
    bars = panel.locator('[aria-roledescription="bar"]')
    bars.nth(len(DEFAULT_THEMES) - 1).wait_for(timeout=30_000)  # the chart draws after the text
    labels = [bar.get_attribute("aria-label") for bar in bars.all()]
    scores = dict(re.fullmatch(r"theme: (.+); score: (\S+)", label).groups() for label in labels)
    assert set(scores) == set(DEFAULT_THEMES)
    assert all(float(score) > 0 for score in scores.values()), scores
    header, *rows = panel.locator("#stnlp-theme-episodes").get_by_role("row").all()
    columns = [text.strip() for text in header.get_by_role("columnheader").all_inner_texts()]
    assert columns[:5] == ["episode", "sentences", "relevant", "top", "most distinctive"]
    assert columns[5 : 5 + len(DEFAULT_THEMES)] == list(DEFAULT_THEMES)
    cells = [row.get_by_role("gridcell").all_inner_texts() for row in rows[: len(episodes)]]
    assert [row[0] for row in cells] == episodes
    assert all(0 < int(row[2]) < int(row[1]) for row in cells), cells  # some do not vote
    assert all(float(value) > 0 for row in cells for value in row[5:]), cells
    assert len({row[4].split()[0] for row in cells}) >= 2  # the episodes differ
    _screenshot(page, "themes")


def _node_names(panel) -> list[str]:
    return panel.locator("#stnlp-network .node").evaluate_all(
        "nodes => nodes.map(n => n.dataset.name)"
    )


def test_network_tab_draws_the_trained_graph_with_details_focus_and_export(page, context):
    from stnlp.plugins.network.export import read_network

    panel = _open(page, "Character network")
    assert panel.locator(".stnlp-badge").inner_text() == "trained network"
    note = panel.get_by_text(re.compile(r"^\d+ characters, \d+ relations \(from seasons? "))
    characters = int(note.inner_text().split()[0])
    assert characters > 1 and len(_node_names(panel)) == characters
    graph, _ = read_network(fetch_latest(context.settings, "character-network").path)
    hub = max(graph, key=lambda n: (graph.nodes[n]["weighted_degree"], n))
    hover = panel.locator(f'#stnlp-network .node[data-name="{hub}"] > title').text_content()
    assert re.fullmatch(rf"{re.escape(hub)}\nmentions: \d+\ndegree: \d+\n"
                        r"co-occurrences: \d+\ncommunity: \d+", hover), hover  # fmt: skip
    # every label lies inside the picture
    boxes = panel.locator("#stnlp-network svg").evaluate(
        """svg => { const s = svg.getBoundingClientRect();
          return [...svg.querySelectorAll('text')].map(t => { const b = t.getBoundingClientRect();
            return b.left >= s.left - 1 && b.right <= s.right + 1; }); }"""
    )
    assert all(boxes), boxes
    # the centrality axis starts at 0: no bar vanishes
    axis = panel.locator('#stnlp-centrality [aria-roledescription="axis"]').filter(
        has_text=re.compile("co-occurrences")
    )
    assert re.search(r"values from 0 to", axis.get_attribute("aria-label"))
    _screenshot(page, "character-network")
    with page.expect_download() as download:
        panel.get_by_role("button", name="Download the picture (SVG)").click()
    assert download.value.suggested_filename == "character-network.svg"
    assert Path(download.value.path()).read_text().startswith("<svg")
    leaf = min(graph, key=lambda n: (graph.nodes[n]["degree"], n))
    _pick(page, panel, "Focus on a character", leaf)
    panel.get_by_text(f"around {leaf}").wait_for()
    assert set(_node_names(panel)) == {leaf, *graph.neighbors(leaf)}
    _pick(page, panel, "Focus on a character", "(everyone)")
    panel.get_by_text(re.compile(rf"^{characters} characters")).wait_for()


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
    for row in status.locator("table").last.locator("tbody tr").all():
        cells = [cell.strip() for cell in row.locator("td").all_inner_texts()]
        rows[cells[2]] = cells
    for spec in context.registry.job_specs():
        version, source = rows[spec.output_model][3:5]
        if spec.name in TRAINED_JOBS:
            assert version == fetch_latest(context.settings, spec.output_model).version
            assert source.startswith("registry (")
        else:
            assert (version, source) == ("-", "not trained yet")
    for _, tab in context.registry.tabs:  # every tab's source in full
        assert _source(context, tab.title).replace("|", "") in status.inner_text().replace("|", "")
    # headers never break inside a word: each is one line
    lines = status.locator("th").evaluate_all(
        """ths => ths.map(th => { const r = document.createRange(); r.selectNodeContents(th);
             return new Set([...r.getClientRects()].map(b => Math.round(b.top))).size; })"""
    )
    assert lines and set(lines) == {1}, lines
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
        logged_in.close()
    finally:
        blocks.close()


def _wait_for_error(page) -> str:
    toast = page.get_by_test_id("toast-body").last
    toast.wait_for(timeout=60_000)
    return toast.inner_text()


def test_upload_mistakes_name_the_file_and_the_rule_never_a_server_path(page, tmp_path):
    panel = _open(page, "Themes")
    badly_named = tmp_path / "episode-two.srt"
    badly_named.write_text("1\n00:00:01,000 --> 00:00:02,000\nHello.\n", encoding="utf-8")
    junk = tmp_path / "S01E05.srt"
    junk.write_bytes(b"not subtitles at all\x00\x01")
    cases = ((badly_named, "no season/episode tag"), (junk, "no subtitle captions"))
    for upload, expected in cases:
        panel.locator("input[type=file][accept=\".srt\"]").set_input_files(str(upload))
        # an upload while "Sample corpus" is chosen switches the corpus to the upload
        page.wait_for_function(
            "() => document.querySelector('input[value=\"Upload .srt files\"]').checked"
        )
        panel.get_by_role("button", name="Score themes").click()
        message = _wait_for_error(page)
        assert upload.name in message and expected in message, message
        if upload is badly_named:
            assert "S01E02.srt" in message, message
        assert "/tmp" not in message and str(tmp_path) not in message, message
        page.get_by_test_id("toast-close").last.click()
        panel.get_by_role("button", name="Clear").first.click()  # the file box's clear
        panel.get_by_label("Sample corpus").check()


def test_an_empty_chat_message_is_not_sent(page):
    page.reload()
    page.get_by_role("tab", name="Status").wait_for()
    panel = _open(page, "Chat")
    box = panel.get_by_placeholder("Type a message...")
    box.evaluate(_RECORD_REPLIES)
    for empty in ("", "   "):
        box.fill(empty)
        box.press("Enter")
    page.get_by_text("Type a message first.").first.wait_for()  # the hint, not a reply
    box.fill("Where is Will?")
    box.press("Enter")
    page.wait_for_function(_REPLY_DONE, timeout=120_000)
    assert panel.get_by_test_id("user").all_inner_texts() == ["Where is Will?"]
    assert panel.get_by_test_id("bot").count() == 1


def test_phone_width_never_scrolls_sideways(served, browser, context):
    phone = _new_page(browser, served.local_url, viewport={"width": 390, "height": 844})
    try:
        for title in [tab.title for _, tab in context.registry.tabs] + ["Status"]:
            trigger = phone.get_by_role("tab", name=title)
            if not trigger.is_visible():  # tabs past the width are in the overflow menu
                phone.locator(".overflow-menu button").first.click()
                trigger = phone.locator(".overflow-dropdown button", has_text=title)
            trigger.click()
            width = phone.evaluate("() => [document.documentElement.scrollWidth, innerWidth]")
            assert width[0] <= width[1], (title, width)
            if title == "Character network":
                _screenshot(phone, "phone")
    finally:
        phone.close()


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in re.findall(r"\d+", rgb)[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


_COLOURS = """svg => {
  const label = getComputedStyle(svg.querySelector('text'));
  let el = svg.parentElement, bg = 'rgba(0, 0, 0, 0)';
  while (el && (bg === 'rgba(0, 0, 0, 0)' || bg === 'transparent')) {
    bg = getComputedStyle(el).backgroundColor; el = el.parentElement; }
  return {fill: label.fill, halo: label.stroke, background: bg};
}"""


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_network_labels_read_well_in_light_and_dark_mode(served, browser, mode):
    tab = _new_page(browser, f"{served.local_url}?__theme={mode}",
                    viewport={"width": 1280, "height": 1000}, color_scheme=mode)  # fmt: skip
    try:
        panel = _open(tab, "Character network")
        panel.locator("#stnlp-network svg").wait_for()
        colours = panel.locator("#stnlp-network svg").evaluate(_COLOURS)
        assert _contrast(colours["fill"], colours["background"]) >= 4.5, colours
        assert _contrast(colours["fill"], colours["halo"]) >= 4.5, colours
        if mode == "dark":
            assert _luminance(colours["background"]) < 0.2, colours
            _screenshot(tab, "dark")
    finally:
        tab.close()
