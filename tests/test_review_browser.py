"""The review console in a real browser: Debian's Chromium driven by Playwright, headless.

Log in, filter by category, open an item (the clip seeks to just before the violation), confirm
it with the keyboard, the next item opens, the audit log shows the decision; hostile transcript
text stays text; a violation written by a live worker appears without a reload.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import REVIEW_USERS

CHROMIUM = os.environ.get("LIVEMOD_CHROMIUM", "/usr/bin/chromium")
SCREENSHOT = os.environ.get("LIVEMOD_SCREENSHOT")  # e.g. docs/review-item.png to refresh the docs

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file() and not os.environ.get("CI"),
        reason=f"no Chromium at {CHROMIUM} (apt-get install chromium; CI installs it)",
    ),
]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]


@pytest.fixture
def server(review_out):
    import uvicorn

    from pipeline.live.replay import free_port
    from pipeline.review.app import ReviewSettings, create_app

    port = free_port()
    app = create_app(ReviewSettings(db=str(review_out / "moderation.db")))
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "review server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        # The page's CSP forbids eval, which Playwright's wait_for_function needs; bypassing it
        # also shows hostile text is inert through escaping alone, not only thanks to the CSP.
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
        pg = context.new_page()
        pg.dialogs = []
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        yield pg
        browser.close()


def log_in(page, base: str, name: str) -> None:
    page.goto(base + "/")
    page.wait_for_url("**/login")
    page.fill("#name", name)
    page.fill("#password", REVIEW_USERS[name][1])
    page.click("button[type=submit]")
    page.wait_for_url(base + "/")
    page.wait_for_selector("#queue-rows tr")


def current_id(page) -> str:
    return page.get_attribute("#item", "data-id")


def test_moderator_reviews_with_the_keyboard(server, page, review_out):
    log_in(page, server, "mo")
    assert page.text_content("#whoami") == "mo (moderator)"

    page.select_option("#f-category", "false_claim")
    page.wait_for_function("document.querySelectorAll('#queue-rows tr').length === 2")
    labels = page.locator("#queue-rows tr td:nth-child(3)").all_text_contents()
    assert all(x.startswith("false_claim.") for x in labels)
    assert "Pending (2)" in page.text_content("#status-tabs")

    # open the fake-authority item: its clip starts 3 s before, the player seeks to 2 s before
    row = page.locator("#queue-rows tr", has_text="fake_authority")
    row.click()
    page.wait_for_function(
        "(id) => document.querySelector('#item').dataset.id === id", arg=row.get_attribute("data-id")
    )
    page.wait_for_function(
        "(() => { const p = document.querySelector('#player');"
        " return p.readyState >= 1 && Math.abs(p.currentTime - Number(p.dataset.seek)) < 0.3; })()",
        timeout=15000,
    )
    first = current_id(page)
    detail = page.evaluate(f"fetch('/api/violations/{first}').then(r => r.json())")
    current_time = page.evaluate("document.querySelector('#player').currentTime")
    assert abs(detail["clip_start"] + current_time - detail["start_s"]) <= 2.5
    assert current_time > 0  # it really seeked
    marks = page.locator("#context .utt.current mark").all_text_contents()
    assert "央视" in marks
    assert detail["basis"] in page.text_content("#facts")
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=False)
    page.screenshot(path=str(review_out / "item-view.png"))

    # j/k move; c confirms and the next item opens
    page.keyboard.press("j")
    page.wait_for_function("(id) => document.querySelector('#item').dataset.id !== id", arg=first)
    page.keyboard.press("k")
    page.wait_for_function("(id) => document.querySelector('#item').dataset.id === id", arg=first)
    page.keyboard.press("c")
    page.wait_for_function(
        "(id) => document.querySelector('#item').dataset.id !== id && "
        "document.querySelectorAll('#queue-rows tr').length === 1",
        arg=first,
    )
    assert "Pending (1)" in page.text_content("#status-tabs")
    assert "Confirmed (1)" in page.text_content("#status-tabs")

    # the confirmed item carries the decision in its audit log
    page.click("#status-tabs button[data-status=confirmed]")
    page.wait_for_function(
        "(id) => document.querySelector('#item').dataset.id === id", arg=first, timeout=10000
    )
    page.wait_for_selector("#audit li")
    audit = page.text_content("#audit")
    assert "mo (moderator) · confirm" in audit and "to: confirmed" in audit
    assert not page.dialogs


def test_hostile_transcript_text_stays_text(server, page):
    log_in(page, server, "lena")
    page.select_option("#f-stream", "hostile")
    page.wait_for_function(
        "(() => { const rows = [...document.querySelectorAll('#queue-rows tr')];"
        " return rows.length >= 2 && rows.every((r) => r.cells[0].textContent === 'hostile'); })()"
    )
    for i in range(page.locator("#queue-rows tr").count()):
        row = page.locator("#queue-rows tr").nth(i)
        row.click()
        page.wait_for_function(
            "(id) => document.querySelector('#item').dataset.id === id", arg=row.get_attribute("data-id")
        )
        page.wait_for_selector("#context .utt.current")
    page.wait_for_timeout(500)
    text = page.text_content("#queue")
    assert '<script>alert("xss")</script>' in text and "onerror=alert(1)>" in text
    assert page.evaluate("document.querySelectorAll('main img, main script').length") == 0
    assert not page.dialogs, page.dialogs
    # the lead sees personal numbers in full
    assert "13812345678" in text


def test_new_live_violations_appear_without_reload(server, page, review_out, config):
    from pipeline.records import Transcript, Utterance
    from pipeline.sinks import Database
    from pipeline.stages import ClassifyStage

    log_in(page, server, "mo")
    page.select_option("#f-category", "banned_product")
    page.wait_for_function("document.querySelector('#page-info').textContent.includes('0 items')")
    clf = ClassifyStage(config)
    clf.setup()
    t = Transcript(
        Utterance("live-1", 0, 30.0, 34.0), "家人们这款电子烟今天五十一支，私信发货", asr_model="test"
    )
    violations = clf.process([t], source="rtmp://127.0.0.1/live/1")
    assert any(v.label.code == "banned_product.tobacco" for v in violations)
    db = Database(review_out / "moderation.db")
    db.add([t], violations)
    db.close()
    page.wait_for_selector("#queue-rows tr:has-text('tobacco')", timeout=10000)
    assert "new violations" in page.text_content("#live-note")
