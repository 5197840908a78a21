"""The top bar's menus: one line at 1280 px in both languages, only the links the operator's
rights open, and usable from the keyboard."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser


def menu_links(page) -> dict[str, list[str]]:
    out = {}
    for menu in page.locator("nav.main details.menu").all():
        label = menu.locator("summary").inner_text()
        # Closed menus: text_content, as inner_text is empty for what is not rendered.
        out[label] = [t.strip() for t in menu.locator(".menu-panel a").all_text_contents()]
    return out


def test_the_top_bar_is_one_line_at_1280_px_in_both_languages(
    transactional_db, owner, live_server, page
):
    page.set_viewport_size({"width": 1280, "height": 800})
    log_in(page, live_server, owner)
    for lang in ("en", "ja"):
        page.click("details.user-menu > summary")
        with page.expect_navigation():
            page.click(f"form.lang button[value={lang}]")
        assert page.locator("header.top").bounding_box()["height"] <= 50, lang
    assert page.locator("nav.main details.menu").count() == 3


def test_menus_hold_only_what_the_rights_open(transactional_db, member, live_server, page):
    log_in(page, live_server, member)
    assert menu_links(page) == {
        "Customers": ["Customer list", "Database views", "Import", "Export"],
        "Mails": [
            "Mails",
            "Delivery results",
            "Use of measurement results",
            "Captured mail",
            "Relays",
            "DKIM keys",
            "Bounces",
            "List cleaning",
            "Bounce mailboxes",
        ],
    }
    assert page.locator("details.user-menu .menu-panel a").all_text_contents() == [
        "My profile",
        "Jobs",
        "Notices",
    ]


def test_an_operator_without_rights_gets_only_their_own_menu(
    transactional_db, outsider, live_server, page
):
    log_in(page, live_server, outsider)
    page.goto(f"{live_server.url}/accounts/profile/")
    assert page.locator("nav.main details.menu").count() == 0
    expect(page.locator("details.user-menu > summary")).to_contain_text("outsider")


def test_the_menus_work_from_the_keyboard(transactional_db, owner, live_server, page):
    log_in(page, live_server, owner)
    customers = page.locator("nav.main details.menu").nth(0)
    mails = page.locator("nav.main details.menu").nth(1)

    customers.locator("summary").focus()
    page.keyboard.press("Enter")
    expect(customers).to_have_attribute("open", "")
    page.keyboard.press("ArrowDown")
    expect(page.locator(":focus")).to_have_text("Customer list")
    page.keyboard.press("ArrowDown")
    expect(page.locator(":focus")).to_have_text("Database design")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")  # wraps round to the last link
    expect(page.locator(":focus")).to_have_text("Export")
    page.keyboard.press("Escape")
    expect(customers).not_to_have_attribute("open", "")
    expect(customers.locator("summary")).to_be_focused()

    page.keyboard.press("Enter")
    page.keyboard.press("Tab")  # into the panel
    expect(page.locator(":focus")).to_have_text("Customer list")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url == f"{live_server.url}/"

    # One menu open at a time; a click elsewhere closes it.
    page.click("nav.main details.menu >> nth=0 >> summary")
    page.click("nav.main details.menu >> nth=1 >> summary")
    expect(customers).not_to_have_attribute("open", "")
    expect(mails).to_have_attribute("open", "")
    page.click("main h1")
    expect(mails).not_to_have_attribute("open", "")
