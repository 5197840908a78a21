"""Routes 1–3 made effortless, through the screens in Japanese: the compose form's history row
offers only the chosen delivery's links and its live count includes the row; the rows and the
targeting in words fit the page at 1280 px and 390 px with long mail names and URLs; the report
names 配信対象 and 配信済み and sets a 配信フラグ on "sent minus errors" as a job.
Screenshots go to docs/images/ for the user guide (OKURU_DOC_SCREENSHOTS=1)."""

from __future__ import annotations

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from okuru.customers.models import Customer, Field
from okuru.mailings import sending, testing
from okuru.mailings.models import Delivery, Recipient
from okuru.tracking import recording
from tests.browser.conftest import doc_screenshot, log_in

pytestmark = pytest.mark.browser
LONG_NAME = "2025年 秋の大感謝セール・会員様限定のご案内" + "（特別なお知らせ）" * 8
LONG_URL = "https://shop.example/campaign/autumn/" + "very-long-path-segment/" * 12


@pytest.fixture
def sink():
    with testing.Sink() as sink:
        testing.make_relay(sink.port)
        yield sink


@pytest.fixture
def source(sink):
    Field.objects.create(key="haishin_flag", label="配信フラグ", type="text")
    testing.make_customers(4, domain="flow.example")
    mail = testing.make_mail(name="秋のセール")
    delivery = testing.start(mail)
    testing.drain(sending.Worker(), delivery)
    rows = list(Recipient.objects.filter(delivery=delivery).order_by("id"))
    recording.record_open(rows[0].pk)
    Recipient.objects.filter(pk=rows[3].pk).update(error_kind="mailbox_full")  # bounced later
    other = testing.make_mail(
        name=LONG_NAME, html_body=f'<a href="{LONG_URL}">x</a>', text_body=f"{LONG_URL}\n"
    )
    Delivery.objects.create(mail=other, status="completed", started_at=timezone.now())
    delivery.refresh_from_db()
    return delivery


def fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")


def test_routes_1_to_3_in_japanese(transactional_db, member, live_server, page, source):
    member.language = "ja"
    member.save()
    page.context.set_extra_http_headers({"Accept-Language": "ja"})
    page.set_viewport_size({"width": 1280, "height": 900})
    log_in(page, live_server, member)

    # Route 1: narrow a basic mail with the delivery history; only its links are offered.
    page.goto(f"{live_server.url}/mails/new/")
    row = page.locator("tr[data-history-row]").first
    row.locator("select[data-history-source]").select_option(f"d:{source.pk}")
    link = row.locator("select[data-history-link]")
    offered = link.evaluate("s => [...s.options].filter(o => !o.hidden).map(o => o.value)")
    own = [str(pk) for pk in source.mail.links.values_list("pk", flat=True)]
    assert sorted(v for v in offered if v) == sorted(own)
    row.locator("select[name$=event]").select_option("opened")
    expect(page.locator("#fb-status .fb-count")).to_contain_text("1")
    assert fits(page)
    page.locator("#history-rows").evaluate("e => e.scrollIntoView({block: 'end'})")
    doc_screenshot(page, "routes13-1-history-row.png", full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    assert fits(page)
    page.set_viewport_size({"width": 1280, "height": 900})

    # The report: which count is which, and the set-field shortcut from "sent minus errors".
    page.goto(f"{live_server.url}/mails/deliveries/{source.pk}/")
    expect(page.locator("#count-help")).to_contain_text("配信対象")
    page.locator("#count-actions > summary").click()
    assert fits(page)
    doc_screenshot(page, "routes13-2-report-counts.png")
    page.locator('[data-set-field="sent-errors"]').click()
    page.select_option("select[name=field]", "haishin_flag")
    page.fill("input[name=value]", "1")
    page.check("input[name=clear_others]")
    page.click("button[value=check]")
    expect(page.locator("#set-field-expected")).to_contain_text(
        "3 件の顧客に 配信フラグ を設定します"
    )
    doc_screenshot(page, "routes13-3-set-field.png")
    with page.expect_navigation():
        page.click("button[value=start]")
    expect(page.locator("body")).to_contain_text("配信先への項目設定")
    doc_screenshot(page, "routes13-4-job.png", full_page=False)
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/mails/deliveries/{source.pk}/")
    assert fits(page)
    flagged = sorted(
        c.email for c in Customer.objects.all() if c.data.get("haishin_flag") is not None
    )
    assert flagged == ["user0@flow.example", "user1@flow.example", "user2@flow.example"]
