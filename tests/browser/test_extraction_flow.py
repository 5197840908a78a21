"""Route 4, use of measurement results (効果測定結果の利用), through the screens in Japanese:
the menu item, the wizard (past deliveries → view → customer set → confirmation), the
extraction job, "続行" into a spot delivery with the list as target, and the send over real
SMTP (an aiosmtpd sink) reaching exactly the customers who did not open. Screenshots of the
key steps go to docs/images/ for the user guide (OKURU_DOC_SCREENSHOTS=1)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from okuru.customers.models import View
from okuru.mailings import actions, sending, testing
from okuru.mailings.models import Delivery, Extraction, Mail, Relay
from tests.browser.conftest import doc_screenshot, log_in
from tests.extraction_setup import ELIGIBLE, make_source

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:
    doc_screenshot(page, f"route4-{name}.png", full_page=True)


@pytest.fixture
def worker_sends(monkeypatch):
    """ "Send now" only reserves: the test runs the worker itself."""
    monkeypatch.setattr(actions, "_kick", lambda delivery_id: None)


def test_route_4_in_japanese_reaches_exactly_those_who_did_not_open(
    transactional_db, member, live_server, page, worker_sends
):
    with testing.Sink() as sink:
        source = make_source()
        Relay.objects.update(port=sink.port)
        View.objects.create(name="配信可能な全顧客", fields=ELIGIBLE)
        old = Delivery.objects.create(
            mail=source["delivery"].mail, status="completed",
            started_at=source["delivery"].started_at.replace(year=2020),
        )  # fmt: skip
        member.language = "ja"
        member.save()
        page.set_viewport_size({"width": 1280, "height": 900})
        log_in(page, live_server, member)
        assert page.get_attribute("html", "lang") == "ja"

        # The menu item under メール.
        page.click("nav.main summary:has-text('メール')")
        with page.expect_navigation():
            page.click("nav.main a:has-text('効果測定結果の利用')")
        with page.expect_navigation():
            page.click("a:has-text('新しい抽出')")

        # 1. Past deliveries: the old one is disabled, with the reason.
        d = source["delivery"]
        expect(page.locator(f"#src-{old.pk}")).to_be_disabled()
        expect(page.locator("text=3か月より前の配信のため使えません")).to_be_visible()
        page.check(f"#src-{d.pk}")
        shot(page, "1-deliveries")
        with page.expect_navigation():
            page.click("#extract-sources button:has-text('次へ')")

        # 2. A delivery-eligible view.
        page.check("input[name=view]")
        shot(page, "2-view")
        with page.expect_navigation():
            page.click("#extract-view button:has-text('次へ')")

        # 3. Customer set: did not open.
        page.check("input[name=conditions][value=not_opened]")
        shot(page, "3-customer-set")
        with page.expect_navigation():
            page.click("#extract-set button:has-text('次へ')")

        # 4. Confirmation with the expected count, then extract.
        expect(page.locator("#expected-count")).to_have_text("2")
        expect(page.locator("#extract-confirm")).to_contain_text("開封しなかった")
        shot(page, "4-confirm")
        with page.expect_navigation():
            page.click("button:has-text('配信リストを抽出')")
        e = Extraction.objects.get()
        assert page.url == f"{live_server.url}/mails/extractions/{e.pk}/"
        expect(page.locator("[data-extraction-status]")).to_have_text("利用可能")
        expect(page.locator("#extraction-count")).to_have_text("2")
        shot(page, "5-ready")

        # 続行: a spot delivery on the list, duplicates ignored, and the screen says so.
        with page.expect_navigation():
            page.click("#continue")
        expect(page.locator("#from-extraction")).to_contain_text("重複を無視して配信")
        assert page.input_value("select[name=duplicate_rule]") == "ignore"
        assert page.input_value("select[name=recipient_list]") == str(e.recipient_list_id)
        page.fill("input[name=from_address]", "news@shop.example")
        page.fill("input[name=subject]", "まだご覧になっていない方へ")
        page.fill("textarea[name=text_body]", "{{ email }} 様\nセールは明日までです。")
        shot(page, "6-continue")
        with page.expect_navigation():
            page.click("form button[type=submit]:has-text('メールを作成')")
        mail = Mail.objects.get(recipient_list_id=e.recipient_list_id)
        assert (mail.kind, mail.duplicate_rule) == ("spot", "ignore")
        assert page.url == f"{live_server.url}/mails/{mail.pk}/"

        # Send now, run the worker, and see who received it.
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_navigation():
            page.click("button[name=action][value=now]")
        delivery = Delivery.objects.get(mail=mail)
        actions.start_delivery(delivery.pk)
        testing.drain(sending.Worker(), delivery)
        sink.wait_for(2)
        assert sorted(sink.received) == ["c@example.com", "f@example.com"]
        assert sink.handler.parsed(0)["Subject"] == "まだご覧になっていない方へ"

        # The list now shows the mail it fed.
        page.goto(f"{live_server.url}/mails/extractions/")
        expect(page.locator("table.list")).to_contain_text(mail.name)
        shot(page, "7-list")
