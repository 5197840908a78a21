"""A real browser for the browser tests: Debian's Chromium driven by Playwright's sync API,
against pytest-django's live server."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections

from tests.conftest import PASSWORD

CHROMIUM = Path("/usr/bin/chromium")
# The user guides' screenshots come from the browser tests, taken only when asked for
# (OKURU_DOC_SCREENSHOTS=1 scripts/test tests/browser): an ordinary test run leaves docs/ alone.
DOC_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"


def doc_screenshot(page, name: str, full_page: bool = True) -> None:
    if os.environ.get("OKURU_DOC_SCREENSHOTS") != "1":
        return
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(DOC_IMAGES / name), full_page=full_page)


@pytest.fixture
def page(monkeypatch, live_server):
    if not CHROMIUM.exists():
        if os.geteuid() != 0:
            pytest.skip("Chromium is not installed (apt-get install chromium, as root)")
        pytest.fail(
            "Chromium is not installed: scripts/test installs it (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls that fixtures
    # make around it are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # The machine has no network: without these Chromium keeps trying to reach Google.
            args=["--no-sandbox", "--disable-background-networking", "--disable-gpu"],
        )
        context = browser.new_context(locale="en-US")
        context.set_default_timeout(15_000)
        # Every request the page makes waits for this handler, and the sync API runs handlers
        # only while the test is inside a Playwright call. So a page that polls (the job page)
        # never reaches the live server while the test itself uses the ORM: on SQLite both
        # use one in-memory database, which does not take concurrent use well.
        context.route("**/*", lambda route: route.continue_())
        yield context.new_page()
        context.close()
        browser.close()
        # ORM calls made inside sync_playwright() get connections of their own (Django keeps
        # them per context, and the test runs in Playwright's): Django's clean-up outside does
        # not see them, so close them here, or PostgreSQL cannot drop the test database.
        connections.close_all()


def log_in(page, live_server, user) -> None:
    page.goto(f"{live_server.url}/accounts/login/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", PASSWORD)
    with page.expect_navigation():
        page.press("input[name=password]", "Enter")
