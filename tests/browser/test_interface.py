"""The assembled interface in headless Chromium: every tab used as a person would, then login.

The app runs in this process on 127.0.0.1 and a free port, on a local store whose models were
trained once per session through the demo code path (every registered job's tiny preset, the
example plugin included). A screenshot of each tab goes to ``test-artifacts/``.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from plugins.manager import build_plugin_manager
from runtime.auth import Credentials
from runtime.data import SAMPLE_DIR
from runtime.demo import train_all
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

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def context(tmp_path_factory):
    """Every registered plugin plus the example one, with models trained by the demo path."""
    site = install_example_plugin(tmp_path_factory.mktemp("site"))
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(site))
        settings = Settings(store=str(tmp_path_factory.mktemp("store")))
        registry = build_plugin_manager(settings)
        train_all(settings, registry, SAMPLE_DIR)
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


def test_header_names_each_tabs_model_source(page, context):
    header = page.locator("h1", has_text="Stranger Things NLP").locator("..")
    for _, tab in context.registry.tabs:
        assert f"{tab.title}:" in header.inner_text()


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


def test_network_tab_renders_the_graph(page, context):
    titles = [tab.title for _, tab in context.registry.tabs]
    if "Character network" not in titles:
        pytest.skip("the network plugin contributes no tab yet")
    _open(page, "Character network")
    page.locator("iframe, canvas").first.wait_for(state="visible", timeout=60_000)
    _screenshot(page, "character-network")


def test_status_tab_lists_every_trained_model(page, context):
    _open(page, "Status")
    page.get_by_role("button", name="Refresh").click()
    status = page.locator("#stnlp-status")
    status.get_by_text("line-length").first.wait_for()
    for spec in context.registry.job_specs():
        if "tiny" in spec.presets:
            assert spec.output_model in status.inner_text()
    assert "not trained yet" not in status.inner_text() or not context.registry.job_specs()
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
