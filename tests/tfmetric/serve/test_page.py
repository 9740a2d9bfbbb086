"""The upload page in a real headless browser: Debian's chromium driven by Playwright (never
``playwright install``; ``make test`` installs chromium with apt when it is missing)."""

import os

import pytest
from playwright.sync_api import sync_playwright

from tests.fixtures import MISSING_SOURCE, NO_SOURCE

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Where the screenshot goes: a temporary file, or the README's picture with
# TFMETRIC_SCREENSHOT=docs/serve_page.png.
SCREENSHOT = os.environ.get("TFMETRIC_SCREENSHOT")


@pytest.fixture(scope="module")
def browser_page(service):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium (make test does)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 720})
        yield service, page
        browser.close()


def _cards(page):
    return page.eval_on_selector_all(
        ".card",
        """cards => cards.map(c => ({
        rank: Number(c.dataset.rank), id: c.querySelector('.id').textContent,
        score: c.querySelector('.score').textContent,
        thumb: (img => img ? img.complete && img.naturalWidth > 0 : null)(c.querySelector('img.thumb')),
        placeholder: c.querySelector('.placeholder') !== null}))""",
    )


def test_pick_an_image_see_its_neighbours_switch_mode(browser_page, catalog, tmp_path):
    svc, page = browser_page
    page.goto(svc.url)
    page.wait_for_function("document.getElementById('info').textContent.includes('12 items')")
    page.fill("#k", "12")
    page.set_input_files("#file", catalog["paths"]["img-05"])
    page.wait_for_function("document.querySelectorAll('.card').length === 12")
    page.wait_for_function("""[...document.querySelectorAll('.card')].every(c => c.querySelector('.placeholder')
        || (c.querySelector('img').complete && c.querySelector('img').naturalWidth > 0))""")
    cards = _cards(page)
    status, answer = svc.search(open(catalog["paths"]["img-05"], "rb").read(), "?k=12&mode=float")
    assert [(c["rank"], c["id"]) for c in cards] == [(n["rank"], n["id"]) for n in answer["neighbours"]]
    assert [float(c["score"]) for c in cards] == [round(n["score"], 4) for n in answer["neighbours"]]
    for c in cards:  # catalog thumbnails shown through the service; grey boxes where a source is unreadable
        unreadable = c["id"] in (NO_SOURCE, MISSING_SOURCE)
        assert c["placeholder"] == unreadable and c["thumb"] is (None if unreadable else True), c
    assert page.eval_on_selector("#query", "img => img.naturalWidth") > 0
    page.screenshot(path=SCREENSHOT or str(tmp_path / "page.png"), full_page=True)

    page.select_option("#mode", "binary")
    page.wait_for_function("document.getElementById('status').textContent.includes('mode binary')")
    binary = _cards(page)
    _, expected = svc.search(open(catalog["paths"]["img-05"], "rb").read(), "?k=12&mode=binary")
    assert [(c["id"], int(c["score"])) for c in binary] == [(n["id"], n["score"]) for n in expected["neighbours"]]


def test_a_refused_image_shows_the_services_error(browser_page, tmp_path):
    svc, page = browser_page
    page.goto(svc.url)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    page.set_input_files("#file", str(bad))
    page.wait_for_function("document.getElementById('error').textContent.length > 0")
    assert page.text_content("#error").startswith("422: unusable image")
    assert page.eval_on_selector_all(".card", "cards => cards.length") == 0
