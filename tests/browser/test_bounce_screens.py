"""The bounce screens in Chromium: a bounce received by the SMTP receiver shows in the list with
its delivery and kind; a message kept for a human is read, parsed again and discarded; list
cleaning is searched and an entry removed; a bounce mailbox is added without its password ever
coming back."""

from __future__ import annotations

import smtplib

import pytest

from okuru.bounces.models import Bounce, Mailbox
from okuru.bounces.smtpd import make_controller
from okuru.customers.models import Customer
from okuru.mailings import testing
from okuru.mailings.models import ListCleaning
from tests.bounces.inbound import UNRECOGNISED, deliver, dsn, return_path, row_of
from tests.browser.conftest import doc_screenshot, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def bounced():
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        for name in ("gone", "fine"):
            Customer.objects.create(email=f"{name}@example.com")
        delivery = deliver()
    row = row_of(delivery, "gone@example.com")
    port = testing.free_port()
    controller = make_controller("127.0.0.1", port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("", [return_path(row)], dsn(row))
            client.sendmail("someone@example.org", ["bounce@bounce.shop.example"], UNRECOGNISED)
    finally:
        controller.stop()
    return delivery, row


def test_the_bounce_screens(page, live_server, owner, bounced):
    delivery, row = bounced
    log_in(page, live_server, owner)
    page.goto(f"{live_server.url}/")
    page.get_by_role("group").filter(has_text="Mails").locator("summary").click()
    page.get_by_role("link", name="Bounces", exact=True).click()
    table = page.locator("#bounces")
    first = table.locator("tbody tr").filter(has_text="gone@example.com")
    assert (
        "Unknown user" in first.inner_text()
        and "Recorded as a delivery error" in first.inner_text()
    )
    assert f"#{delivery.pk}" in first.inner_text()
    assert "1 message is kept for a human." in page.inner_text("main")
    doc_screenshot(page, "bounces-list")

    page.get_by_role("link", name="Kept for a human").first.click()
    queued = page.locator("#queue tbody tr")
    assert queued.count() == 1 and "hello there" in queued.inner_text()
    queued.get_by_role("link").first.click()
    assert "nothing about any delivery" in page.inner_text("#raw")
    page.locator("#reparse").click()
    assert "The message stays in the queue." in page.inner_text("main")
    doc_screenshot(page, "bounces-queue-message")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#discard").click()
    assert "discarded; it is kept." in page.inner_text("main")
    assert "Nothing is waiting" in page.inner_text("#queue")
    assert Bounce.objects.get(outcome="discarded").handled_by_id == owner.pk

    page.get_by_role("link", name="List cleaning").first.click()
    ListCleaning.objects.create(address="other@example.net", reason="bad_format")
    page.fill("input[name=q]", "gone")
    page.get_by_role("button", name="Search").click()
    rows = page.locator("#list-cleaning tbody tr")
    assert rows.count() == 1 and "gone@example.com" in rows.inner_text()
    doc_screenshot(page, "bounces-list-cleaning")
    rows.locator("input[type=checkbox]").check()
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#remove").click()
    assert "1 entries removed" in page.inner_text("main")
    assert list(ListCleaning.objects.values_list("address", flat=True)) == ["other@example.net"]

    page.goto(f"{live_server.url}/bounces/mailboxes/new/")
    page.fill("input[name=name]", "Bounce box")
    page.select_option("select[name=protocol]", "imap")
    page.fill("input[name=host]", "imap.example.net")
    page.fill("input[name=port]", "993")
    page.fill("input[name=username]", "bounces")
    page.fill("input[name=new_password]", "s3cret-box")
    page.get_by_role("button", name="Save").click()
    assert "Mailbox Bounce box saved." in page.inner_text("main")
    doc_screenshot(page, "bounces-mailboxes")
    page.get_by_role("link", name="Bounce box").click()
    assert page.input_value("input[name=new_password]") == ""
    assert "s3cret-box" not in page.content()
    assert Mailbox.objects.get().password == "s3cret-box"
