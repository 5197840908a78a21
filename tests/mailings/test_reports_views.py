"""Delivery results screens: list, report, drill-downs, exports, unknown rows; rights."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.customers import filters, importer
from okuru.customers.models import Field
from okuru.mailings import reports
from okuru.mailings.ledger import refresh_counts
from okuru.mailings.models import Delivery, Recipient, TrackedLink
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery
from tests.conftest import client_for, make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture
def delivery():
    d = sent_delivery(5)
    rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    link = TrackedLink.objects.get(mail=d.mail)
    link.name = "sale page"
    link.save()
    recording.record_open(rows[0].pk)
    recording.record_click(rows[1].pk, link.pk)
    Recipient.objects.filter(pk=rows[3].pk).update(
        status="failed", error_kind="mailbox_full", sent_at=None
    )
    Recipient.objects.filter(pk=rows[4].pk).update(status="unknown", sent_at=None)
    refresh_counts(d.pk)
    Delivery.objects.filter(pk=d.pk).update(status="completed", finished_at=timezone.now())
    d.refresh_from_db()
    d.rows, d.link = rows, link
    return d


def body(r) -> str:
    return b"".join(r.streaming_content).decode("utf-8-sig") if r.streaming else r.content.decode()


def test_every_report_screen_refuses_the_outsider(outsider_client, delivery):
    d = delivery
    for url in (
        "/mails/deliveries/",
        f"/mails/deliveries/{d.pk}/",
        f"/mails/deliveries/{d.pk}/recipients/sent/",
        f"/mails/deliveries/{d.pk}/recipients/sent/export/",
        f"/mails/deliveries/{d.pk}/events.csv",
    ):
        assert outsider_client.get(url).status_code == 403, url
    r = outsider_client.post(f"/mails/deliveries/{d.pk}/unknown/", {"resend": "yes"})
    assert r.status_code == 403
    assert Recipient.objects.filter(delivery=d, status="unknown").count() == 1
    assert not OperationLog.objects.filter(action__startswith="delivery.export").exists()


def test_exports_need_the_export_right(delivery):
    analyst = client_for(make_operator("analyst", ["reports"]))
    assert analyst.get(f"/mails/deliveries/{delivery.pk}/").status_code == 200
    assert analyst.get(f"/mails/deliveries/{delivery.pk}/recipients/sent/").status_code == 200
    r = analyst.get(f"/mails/deliveries/{delivery.pk}/recipients/sent/export/")
    assert r.status_code == 403
    assert analyst.get(f"/mails/deliveries/{delivery.pk}/events.csv").status_code == 403
    r = analyst.post(f"/mails/deliveries/{delivery.pk}/unknown/", {"resend": "no"})
    assert r.status_code == 403


def test_results_list_shows_counts_and_which_can_be_a_source(member_client, delivery):
    old = sent_delivery(1, domain="old.example")
    Delivery.objects.filter(pk=old.pk).update(started_at=timezone.now() - timedelta(days=100))
    r = member_client.get("/mails/deliveries/")
    assert r.status_code == 200
    page = r.content.decode()
    assert page.count(">Sent more than 3 months ago: cannot be used<") == 1
    assert page.count(">selectable<") == 1
    assert delivery.mail.name in page and old.mail.name in page


def test_report_shows_counts_links_errors_and_chart(member_client, delivery):
    d = delivery
    r = member_client.get(f"/mails/deliveries/{d.pk}/")
    assert r.status_code == 200
    page = r.content.decode()
    assert f'<b id="count-sent"><a href="/mails/deliveries/{d.pk}/recipients/sent/">3</a>' in page
    assert f'href="/mails/deliveries/{d.pk}/recipients/errors/">1</a>' in page
    assert f'href="/mails/deliveries/{d.pk}/recipients/opened/">2</a>' in page
    assert f'href="/mails/deliveries/{d.pk}/recipients/clicked:{d.link.pk}/">1</a>' in page
    assert f'href="/mails/deliveries/{d.pk}/recipients/error:mailbox_full/">1</a>' in page
    assert "Mailbox full" in page and "sale page" in page
    assert "<svg" in page and "<polyline" in page
    assert "66.7%" in page  # 2 of 3 sent opened
    assert "Send them again" in page


def test_drill_down_lists_the_recipients_of_a_count(member_client, delivery):
    d = delivery
    r = member_client.get(f"/mails/deliveries/{d.pk}/recipients/clicked:{d.link.pk}/")
    assert r.status_code == 200
    page = r.content.decode()
    assert d.rows[1].address in page
    assert d.rows[0].address not in page
    assert member_client.get(f"/mails/deliveries/{d.pk}/recipients/bogus/").status_code == 404
    other = sent_delivery(1, domain="other.example")
    foreign = TrackedLink.objects.get(mail=other.mail)
    r = member_client.get(f"/mails/deliveries/{d.pk}/recipients/clicked:{foreign.pk}/")
    assert r.status_code == 404


def test_drill_down_pages(member_client, delivery, monkeypatch):
    monkeypatch.setattr(reports, "PAGE_SIZE", 2)
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/recipients/all/")
    assert f"?after={delivery.rows[1].pk}" in r.content.decode()
    r = member_client.get(
        f"/mails/deliveries/{delivery.pk}/recipients/all/?after={delivery.rows[1].pk}"
    )
    page = r.content.decode()
    assert delivery.rows[2].address in page and delivery.rows[0].address not in page


def test_export_a_count_as_csv_and_log_it(member_client, delivery):
    url = f"/mails/deliveries/{delivery.pk}/recipients/sent/export/?fields=email"
    r = member_client.get(url)
    assert r.status_code == 200
    assert r["Content-Type"] == "text/csv; charset=utf-8"
    assert f"delivery-{delivery.pk}-sent.csv" in r["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(body(r))))
    assert rows[0] == ["Customer ID", "PC e-mail"]
    assert [int(x[0]) for x in rows[1:]] == [row.customer_id for row in delivery.rows[:3]]
    log = OperationLog.objects.get(action="delivery.export_recipients")
    assert log.detail == {"count": "sent", "fields": ["email"], "encoding": "utf-8-sig"}


def test_export_refuses_an_unknown_field_with_a_message(member_client, delivery):
    url = f"/mails/deliveries/{delivery.pk}/recipients/sent/export/?fields=nope"
    r = member_client.get(url, follow=True)
    assert b"Unknown field: nope" in r.content
    assert not OperationLog.objects.filter(action="delivery.export_recipients").exists()


def test_export_events_as_csv(member_client, delivery):
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/events.csv")
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(body(r))))
    assert rows[0] == ["Customer ID", "Event", "Time"]
    events = [x[1] for x in rows[1:]]
    assert events.count("sent") == 3
    assert "click:sale page" in events and "error:mailbox_full" in events
    assert OperationLog.objects.filter(action="delivery.export_events").exists()


def test_the_flag_route_round_trip_through_the_screens(member_client, delivery, tmp_path):
    """Export the sent count minus the errors (route 3), add 配信フラグ, import "update
    existing only" keyed on Customer ID, then filter "has a value"."""
    Field.objects.create(key="haishin_flag", label="配信フラグ", type="text")
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/recipients/sent/export/")
    rows = list(csv.reader(io.StringIO(body(r))))
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/recipients/errors/export/")
    errored = {x[0] for x in list(csv.reader(io.StringIO(body(r))))[1:]}
    rows = [rows[0] + ["配信フラグ"]] + [x + ["spring"] for x in rows[1:] if x[0] not in errored]
    path = tmp_path / "flags.csv"
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        csv.writer(f).writerows(rows)
    result = importer.run_import(path, mode="update", key="customer_id")
    assert (result.updated, result.rejected) == (3, 0)
    tree = {"match": "all", "conditions": [{"field": "haishin_flag", "op": "has_value"}]}
    assert sorted(filters.filtered(tree).values_list("id", flat=True)) == [
        row.customer_id for row in delivery.rows[:3]
    ]


def test_operator_chooses_not_to_resend_unknown_rows(member_client, delivery):
    r = member_client.post(
        f"/mails/deliveries/{delivery.pk}/unknown/", {"resend": "no"}, follow=True
    )
    assert b"1 unknown rows will not be sent." in r.content
    row = Recipient.objects.get(pk=delivery.rows[4].pk)
    assert row.status == "unknown" and row.note == "Not sent again: an operator decided so."
    assert OperationLog.objects.get(action="delivery.resolve_unknown").detail == {
        "resend": False,
        "rows": 1,
    }


def test_operator_chooses_to_resend_unknown_rows(member_client, delivery):
    r = member_client.post(f"/mails/deliveries/{delivery.pk}/unknown/", {"resend": "yes"})
    assert r.status_code == 302
    assert Recipient.objects.get(pk=delivery.rows[4].pk).status == "queued"
    delivery.refresh_from_db()
    assert delivery.status == "running"


def test_unknown_rows_need_a_choice(member_client, delivery):
    r = member_client.post(f"/mails/deliveries/{delivery.pk}/unknown/", {}, follow=True)
    assert b"Choose whether to send the unknown rows again." in r.content


def test_a_purged_delivery_shows_its_summary_without_drill_downs(member_client, delivery):
    Delivery.objects.filter(pk=delivery.pk).update(started_at=timezone.now() - timedelta(days=200))
    reports.purge_expired()
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/")
    page = r.content.decode()
    assert "Per-recipient detail was purged" in page
    assert '<b id="count-sent">3</b>' in page
    assert "/recipients/" not in page
    assert "sale page" in page and "Mailbox full" in page
    r = member_client.get(f"/mails/deliveries/{delivery.pk}/recipients/sent/")
    assert b"was purged after the retention period" in r.content


def test_report_of_a_reservation_offers_to_cancel_it(member_client):
    from okuru.mailings import testing

    testing.make_customers(1, domain="resv.example")
    mail = testing.make_mail(name="Later")
    d = Delivery.objects.create(
        mail=mail, status="reserved", scheduled_at=timezone.now() + timedelta(days=1)
    )
    r = member_client.get(f"/mails/deliveries/{d.pk}/")
    assert r.status_code == 200
    page = r.content.decode()
    assert "Reserved" in page and "Cancel reservation" in page
    assert "Reserved: not sent yet It can be used as a source once it has started." in page
    assert "3 months" not in page


def test_report_shows_exclusions_at_freeze_and_at_send(member_client, delivery):
    Recipient.objects.filter(pk=delivery.rows[2].pk).update(
        status="excluded", exclusion="unsubscribed"
    )
    Delivery.objects.filter(pk=delivery.pk).update(
        excluded={"refused": 2, "duplicate": 1}, excluded_at_send={"unsubscribed": 1}
    )
    page = member_client.get(f"/mails/deliveries/{delivery.pk}/").content.decode()
    assert "Refusal flag" in page and "Duplicate address" in page
    assert f'href="/mails/deliveries/{delivery.pk}/recipients/excluded:unsubscribed/">1</a>' in page
