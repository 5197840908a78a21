"""Routes 5 and 6 through the screens in Japanese, each ending with the mail at a real SMTP
server (aiosmtpd): resend a delivery into a draft, narrow it and send it; re-deliver to the
non-openers with a new subject, with live counts and the confirmation step for a repeat.
Screenshots of the key steps go to docs/images/ for the user guide (OKURU_DOC_SCREENSHOTS=1)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from okuru.mailings import actions, sending, testing
from okuru.mailings.models import Delivery, Mail, Recipient
from okuru.tracking import recording
from tests.browser.conftest import doc_screenshot, log_in

pytestmark = pytest.mark.browser
DOMAIN = "flow.example"


@pytest.fixture
def sink():
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        yield sink


@pytest.fixture
def worker_sends(monkeypatch):
    monkeypatch.setattr(actions, "_kick", lambda delivery_id: None)


@pytest.fixture
def source(sink):
    testing.make_customers(3, domain=DOMAIN)
    mail = testing.make_mail(name="秋のセール")
    delivery = testing.start(mail)
    testing.drain(sending.Worker(), delivery)
    recording.record_open(Recipient.objects.filter(delivery=delivery).order_by("id").first().pk)
    sink.handler.messages.clear()
    sink.handler.received.clear()
    delivery.refresh_from_db()
    return delivery


def shot(page, name: str) -> None:
    doc_screenshot(page, name, full_page=False)


def test_resend_and_redeliver_through_the_screens_in_japanese(
    transactional_db, member, live_server, page, sink, source, worker_sends
):
    member.language = "ja"
    member.save()
    page.context.set_extra_http_headers({"Accept-Language": "ja"})
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server, member)

    # Route 6: Re-deliver to the non-openers with a new subject.
    page.goto(f"{live_server.url}/mails/deliveries/{source.pk}/")
    expect(page.locator("#redeliver-link")).to_have_text("再配信")
    shot(page, "redeliver-report.png")
    with page.expect_navigation():
        page.click("#redeliver-link")
    expect(page.locator("#rd-after-duplicates")).to_have_text("2")
    page.check("input[name=audience][value=opened]")
    expect(page.locator("#redeliver-form")).to_have_attribute("data-counted", "opened")
    expect(page.locator("#rd-after-duplicates")).to_have_text("1")
    page.check("input[name=audience][value=not_opened]")
    expect(page.locator("#rd-after-duplicates")).to_have_text("2")
    page.fill("input[name=subject]", "まだご覧になっていない方へ")
    shot(page, "redeliver-wizard.png")
    with page.expect_navigation():
        page.click("#redeliver-submit")
    new = Delivery.objects.exclude(pk=source.pk).get()
    actions.start_delivery(new.pk)
    testing.drain(sending.Worker(), new)
    assert sorted(sink.received) == [f"user1@{DOMAIN}", f"user2@{DOMAIN}"]
    assert {sink.handler.parsed(i)["Subject"] for i in range(2)} == {"まだご覧になっていない方へ"}
    page.reload()
    expect(page.locator("#lineage-from")).to_contain_text(f"配信 #{source.pk} の再配信")

    # The same audience again asks first.
    page.goto(f"{live_server.url}/mails/deliveries/{source.pk}/redeliver/")
    page.click("#redeliver-submit")
    expect(page.locator("#redeliver-repeat")).to_be_visible()
    shot(page, "redeliver-confirm.png")
    assert Delivery.objects.count() == 2

    # Route 5: Resend into a draft, then send it.
    sink.handler.received.clear()
    page.goto(f"{live_server.url}/mails/deliveries/{source.pk}/")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("#resend-button")
    draft = Mail.objects.get(resend_of_delivery=source, resend_audience="")
    assert page.url == f"{live_server.url}/mails/{draft.pk}/edit/"
    assert draft.name == "秋のセール（再送信）"
    shot(page, "resend-draft.png")
    page.goto(f"{live_server.url}/mails/{draft.pk}/")
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("button[name=action][value=now]")
    resent = Delivery.objects.get(mail=draft)
    actions.start_delivery(resent.pk)
    testing.drain(sending.Worker(), resent)
    assert sorted(sink.received) == [f"user{i}@{DOMAIN}" for i in range(3)]
