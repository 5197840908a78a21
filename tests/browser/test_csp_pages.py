"""Every page an owner can reach, in Chromium, under the Content-Security-Policy: the page
fixture fails the test on any violation (tests/browser/conftest.py). The pages are the ones
that tests/test_csp.py finds by following links; the API docs and a mail preview are checked
for what they must still show."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.test_csp import MAIL_FRAME, html_pages, seed

pytestmark = pytest.mark.browser


def test_no_page_an_owner_reaches_breaks_the_policy(
    transactional_db, owner, owner_client, live_server, page
):
    seed(owner)
    paths = [p for p in html_pages(owner_client, ["/"]) if not MAIL_FRAME.search(p)]
    log_in(page, live_server, owner)
    for path in paths:
        page.goto(f"{live_server.url}{path}")
        page.wait_for_load_state("load")
    assert len(paths) > 40


def test_the_api_docs_work_under_the_policy(transactional_db, live_server, page):
    page.goto(f"{live_server.url}/api/docs")
    expect(page.locator("#swagger-ui .info .title")).to_contain_text("Okuru API")
    expect(page.locator("#swagger-ui .opblock").first).to_be_visible()


def test_a_captured_mail_keeps_its_styles_and_remote_images(
    transactional_db, owner, live_server, page
):
    from okuru.capture.models import CapturedMessage
    from tests.capture.test_capture_box import make_mail

    html = (
        '<style>p.big { font-size: 31px }</style><p class="big" style="color: rgb(4, 5, 6)">Hi</p>'
        f'<img alt="logo" src="{live_server.url}/static/okuru.css?as-image">'
        "<script>document.body.dataset.ran = 'yes'</script>"
    )
    raw = make_mail("Styled", html=html).as_bytes()
    message = CapturedMessage.capture("a@example.com", ["b@example.com"], raw)
    log_in(page, live_server, owner)
    with page.expect_request(lambda r: "as-image" in r.url):  # a remote image is fetched
        page.goto(f"{live_server.url}/capture/{message.pk}/")
    frame = page.frame_locator("iframe.mail-html")
    expect(frame.locator("p.big")).to_have_css("color", "rgb(4, 5, 6)")
    expect(frame.locator("p.big")).to_have_css("font-size", "31px")
    assert frame.locator("body").get_attribute("data-ran") is None
