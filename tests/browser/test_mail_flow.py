"""A basic mail through the screens: compose, preview (the body's script must not run), send
now to three customers over real SMTP (an aiosmtpd sink), and the report's sent count."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from okuru.mailings import actions, ledger, sending, testing
from okuru.mailings.models import Delivery, Mail, Recipient
from tests.browser.conftest import log_in

pytestmark = pytest.mark.browser

# Scripts and handlers that would mark the page (and the parent page) if they ever ran; and a
# style of the mail's own, which the preview must still apply.
HOSTILE_HTML = (
    '<p style="color: rgb(1, 2, 3)">Hello {{ email }}</p>'
    "<script>window.pwned = 1; document.title = 'pwned';"
    " try { parent.document.title = 'pwned'; parent.pwned = 1 } catch (e) {}</script>"
    '<img src="data:," onerror="window.pwned = 2; document.title = \'pwned\'">'
)


@pytest.fixture
def sink():
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        yield sink


@pytest.fixture
def worker_sends(monkeypatch):
    """ "Send now" only reserves: the test runs the worker itself (under pytest the task would
    otherwise send inside the click's request)."""
    monkeypatch.setattr(actions, "_kick", lambda delivery_id: None)


def compose(page, live_server) -> Mail:
    page.goto(f"{live_server.url}/mails/new/?kind=basic")
    page.fill("input[name=name]", "Spring news")
    page.fill("input[name=from_address]", "news@shop.example")
    page.fill("input[name=subject]", "Hello {{ customer_id }}")
    page.fill("textarea[name=text_body]", "Hi {{ email }}")
    page.fill("textarea[name=html_body]", HOSTILE_HTML)
    with page.expect_navigation():
        page.click("form button[type=submit]:has-text('Create mail')")
    mail = Mail.objects.get(name="Spring news")
    assert page.url == f"{live_server.url}/mails/{mail.pk}/"
    return mail


def test_a_basic_mail_is_previewed_safely_sent_to_three_and_reported(
    transactional_db, member, live_server, page, sink, worker_sends
):
    testing.make_customers(3, domain="spring.example")
    log_in(page, live_server, member)
    mail = compose(page, live_server)

    with page.expect_navigation():
        page.click("a.btn:has-text('Preview')")
    frame = page.frame_locator("iframe.mail-preview")
    expect(frame.locator("p")).to_have_text("Hello user0@spring.example")
    expect(frame.locator("p")).to_have_css("color", "rgb(1, 2, 3)")
    page.wait_for_timeout(300)  # time for a script or an onerror handler, were they allowed
    assert page.evaluate("window.pwned") is None
    assert "pwned" not in page.title()
    body = page.frame(url=re.compile(r"[?&]part=html"))
    assert body.evaluate("window.pwned") is None
    assert body.evaluate("document.title") != "pwned"

    page.goto(f"{live_server.url}/mails/{mail.pk}/")
    page.once("dialog", lambda dialog: dialog.accept())  # "Send this mail now?"
    with page.expect_navigation():
        page.click("button[name=action][value=now]")
    delivery = Delivery.objects.get(mail=mail)
    assert page.url == f"{live_server.url}/mails/deliveries/{delivery.pk}/"

    ledger.start_delivery(delivery.pk)
    testing.drain(sending.Worker(), delivery)
    page.reload()

    expect(page.locator("#count-sent")).to_have_text("3")
    expect(page.locator("#count-errors")).to_have_text("0")
    expect(page.locator(".head h1 .badge")).to_have_text("Completed")
    assert sorted(sink.received) == [f"user{i}@spring.example" for i in range(3)]
    assert set(sink.received.values()) == {1}
    assert Recipient.objects.filter(delivery=delivery, status="sent").count() == 3
