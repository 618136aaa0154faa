"""The reading-room page end to end: `qa serve` in a subprocess, driven by headless Chromium (Playwright).

Needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium) and `pip install playwright`;
Playwright's own browser download is never used. Screenshots go to $QA_SCREENSHOT_DIR (or a tmp dir).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from _api_support import QUESTION, built_index, running_server

STATIC = Path(__file__).resolve().parents[1] / "api" / "static"
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# ReDoc always shows its maker's logo from their CDN (not configurable; hidden when it fails to load).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


def harmless(msg) -> bool:
    return REDOC_LOGO in msg.text or msg.location.get("url") == REDOC_LOGO


def test_page_never_puts_text_in_as_html():
    js = (STATIC / "app.js").read_text()
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", js)
    html = (STATIC / "index.html").read_text()
    assert not re.search(r"https?://", html), "no CDN or remote assets"


@pytest.fixture(scope="module")
def server():
    with running_server(built_index()) as s:
        yield s


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1200, "height": 1600})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    p = context.new_page()
    errors: list[str] = []
    p.on("pageerror", lambda exc: errors.append(str(exc)))
    p.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" and not harmless(msg) else None)
    yield p
    context.close()
    assert not errors, errors


def shot_dir(tmp_path: Path) -> Path:
    d = Path(os.environ.get("QA_SCREENSHOT_DIR") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.mark.slow
@pytest.mark.browser
def test_ask_groups_by_viewpoint_highlights_and_copies_citation(page, server, tmp_path):
    page.goto(server.url + "/")
    page.get_by_label("Your question").fill(QUESTION)
    page.keyboard.press("Enter")
    page.wait_for_selector("section.viewpoint article.passage", timeout=60_000)

    assert page.locator("#answer-title").inner_text().endswith(("viewpoint", "viewpoints"))
    groups = page.locator("section.viewpoint")
    assert groups.count() >= 2, "passages from several viewpoints"
    for i in range(groups.count()):
        assert groups.nth(i).locator("h3 .badge").inner_text().strip()
    first = page.locator("article.passage").first
    assert first.locator("cite").first.inner_text().strip()
    assert page.locator("article.passage blockquote mark").count() >= 1, "highlighted sentences"
    assert page.locator("article.passage .holders").count() >= 1, "holders of views"

    citation = first.locator(".citation-text").inner_text()
    first.get_by_role("button", name="Copy citation").click()
    page.wait_for_function("document.querySelector('article.passage .copy-note').textContent.length > 0")
    assert first.locator(".copy-note").inner_text() == "Citation copied."
    assert page.evaluate("navigator.clipboard.readText()") == citation

    page.screenshot(path=str(shot_dir(tmp_path) / "ask.png"), full_page=True)

    first.get_by_role("link", name=re.compile(r"in context")).click()
    page.wait_for_selector("#passage .context.current", timeout=30_000)
    assert page.locator("#passage .cite .citation-text").inner_text() == citation
    page.screenshot(path=str(shot_dir(tmp_path) / "passage.png"), full_page=True)


@pytest.mark.slow
@pytest.mark.browser
def test_abstention_is_said_plainly(page, server):
    page.goto(server.url + "/#/?q=" + "What is the boiling point of mercury in kelvin?".replace(" ", "%20"))
    page.wait_for_selector("article.passage", timeout=60_000)
    assert page.locator("#answer-title").inner_text() == "The collection does not answer this. Nearest passages:"


@pytest.mark.slow
@pytest.mark.browser
def test_empty_question_is_refused_in_the_page(page, server):
    page.goto(server.url + "/")
    page.get_by_role("button", name="Ask").click()
    assert page.locator("#question-error").inner_text() == "Type a question first."
    assert page.evaluate("document.activeElement.id") == "question"


@pytest.mark.slow
@pytest.mark.browser
def test_works_page_lists_provenance_and_viewpoint(page, server, tmp_path):
    page.goto(server.url + "/#/works")
    page.wait_for_selector("#works article.work")
    works = page.locator("#works article.work")
    assert works.count() >= 5
    text = works.first.inner_text()
    for fact in ("Author", "Year", "Kind", "Origin"):
        assert fact in text
    assert works.first.locator(".badge").inner_text().strip()
    page.screenshot(path=str(shot_dir(tmp_path) / "works.png"), full_page=True)


@pytest.fixture
def offline(page, server):
    """Aborts every request that is not to the local server, as on a machine without internet; yields the
    URLs that were tried (an aborted asset also fails the page fixture's console-error check)."""
    outside: list[str] = []

    def only_local(route):
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    yield outside


@pytest.mark.slow
@pytest.mark.browser
def test_api_docs_work_offline(page, server, offline, tmp_path):
    page.goto(server.url + "/")
    page.get_by_role("link", name="API").click()
    page.wait_for_url(server.url + "/docs")
    ask = page.locator('.opblock-summary-path[data-path="/v1/ask"]')
    ask.wait_for(timeout=30_000)
    assert ask.inner_text() == "/v1/ask"
    assert page.locator(".opblock").count() >= 6, "every operation listed"
    page.screenshot(path=str(shot_dir(tmp_path) / "docs.png"), full_page=True)

    page.goto(server.url + "/redoc")
    ask = page.locator("h2", has_text="Ranked verbatim passages that answer")
    ask.wait_for(timeout=30_000)
    assert page.locator("h2", has_text="What is serving").count() == 1
    page.screenshot(path=str(shot_dir(tmp_path) / "redoc.png"))
    assert set(offline) <= {REDOC_LOGO}, offline
