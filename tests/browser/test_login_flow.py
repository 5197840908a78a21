"""A real browser (Debian's Chromium, driven by Playwright) through log-in, the customer list,
the language switch and log-out, against pytest-django's live server."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_an_operator_logs_in_switches_to_japanese_and_logs_out(
    transactional_db, owner, live_server, page
):
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", owner.username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.press("input[name=password]", "Enter")

    assert page.url == f"{live_server.url}/"
    assert "Customers" in page.locator("h1").first.inner_text()
    assert page.get_attribute("html", "lang") == "en"

    # Language and log-out live in the operator's menu (a <details>): open it, then use them.
    page.click("details.user-menu > summary")
    with page.expect_navigation():
        page.click("form.lang button[value=ja]")
    assert page.get_attribute("html", "lang") == "ja"
    assert "顧客" in page.locator("h1").first.inner_text()

    page.click("details.user-menu > summary")
    with page.expect_navigation():
        page.click("form[action$='/accounts/logout/'] button")
    assert page.url.startswith(f"{live_server.url}/accounts/login/")
    assert page.locator("input[name=password]").count() == 1
