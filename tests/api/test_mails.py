"""The mailings API: rights on every call, mails, counts, send/reserve, reports, exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from okuru.accounts.models import OperationLog
from okuru.customers.models import Topic
from okuru.mailings import testing
from okuru.mailings.models import Delivery, Mail, Recipient
from okuru.tracking import recording
from okuru.tracking.testing import sent_delivery
from tests.api.client import api_client
from tests.conftest import make_operator

pytestmark = pytest.mark.django_db


@pytest.fixture
def member_api(member):
    return api_client(member)


@pytest.fixture
def outsider_api(outsider):
    return api_client(outsider)


@pytest.fixture
def delivery():
    d = sent_delivery(3)
    rows = list(Recipient.objects.filter(delivery=d).order_by("id"))
    recording.record_open(rows[0].pk)
    Recipient.objects.filter(pk=rows[2].pk).update(status="unknown", sent_at=None)
    from okuru.mailings.ledger import refresh_counts

    refresh_counts(d.pk)
    Delivery.objects.filter(pk=d.pk).update(status="completed")
    d.refresh_from_db()
    d.rows = rows
    return d


MAIL = {
    "name": "API mail",
    "from_address": "news@shop.example",
    "subject": "Hello {{ customer_id }}",
    "text_body": "Hi {{ email }} https://shop.example/x",
    "filter": {"match": "all", "conditions": [{"field": "email", "op": "has_value"}]},
}


def calls(mail_id: int, delivery_id: int) -> list[tuple[str, str, dict | None]]:
    d = f"/api/deliveries/{delivery_id}"
    return [
        ("get", "/api/mails", None),
        ("post", "/api/mails", MAIL),
        ("get", f"/api/mails/{mail_id}", None),
        ("patch", f"/api/mails/{mail_id}", {"name": "x"}),
        ("get", f"/api/mails/{mail_id}/counts", None),
        ("post", f"/api/mails/{mail_id}/send", {}),
        ("get", "/api/deliveries", None),
        ("get", d, None),
        ("post", f"{d}/cancel", None),
        ("post", f"{d}/unknown", {"resend": True}),
        ("get", f"{d}/recipients/sent", None),
        ("get", f"{d}/recipients/sent/export", None),
        ("get", f"{d}/events/export", None),
    ]


def call(client: Client, method: str, url: str, body: dict | None):
    if method == "get":
        return client.get(url)
    return getattr(client, method)(url, body or {}, content_type="application/json")


def test_every_call_refuses_the_outsider(outsider_api, delivery):
    for method, url, body in calls(delivery.mail_id, delivery.pk):
        r = call(outsider_api, method, url, body)
        assert r.status_code == 403, url
        assert "You do not have the right to do this" in r.json()["detail"]
    assert Mail.objects.count() == 1
    assert Delivery.objects.count() == 1
    assert Recipient.objects.filter(status="unknown").count() == 1


def test_the_outsider_gets_403_before_the_body_is_read(outsider_api, delivery):
    for method, url, _body in calls(delivery.mail_id, delivery.pk):
        if method == "get":
            continue
        r = getattr(outsider_api, method)(url, "{not json", content_type="application/json")
        assert r.status_code == 403, url


def test_every_call_needs_a_token(delivery):
    for method, url, body in calls(delivery.mail_id, delivery.pk):
        assert call(Client(), method, url, body).status_code == 401, url


def test_rights_are_those_of_the_ui(delivery):
    composer = api_client(make_operator("composer", ["mails"]))
    assert composer.get(f"/api/mails/{delivery.mail_id}").status_code == 200
    r = call(composer, "post", f"/api/mails/{delivery.mail_id}/send", {})
    assert r.status_code == 403 and "Sending" in r.json()["detail"]
    assert composer.get("/api/deliveries").status_code == 403
    analyst = api_client(make_operator("analyst", ["reports"]))
    assert analyst.get(f"/api/deliveries/{delivery.pk}").status_code == 200
    r = analyst.get(f"/api/deliveries/{delivery.pk}/recipients/sent/export")
    assert r.status_code == 403 and "Export" in r.json()["detail"]


def test_create_a_mail(member_api, member):
    Topic.objects.create(key="news", name="News")
    r = call(member_api, "post", "/api/mails", {**MAIL, "topic": "news"})
    assert r.status_code == 201, r.json()
    data = r.json()
    mail = Mail.objects.get(pk=data["id"])
    assert mail.owner == member and mail.topic.key == "news"
    assert data["links"] == [
        {"id": mail.links.get().pk, "url": "https://shop.example/x", "name": ""}
    ]
    assert OperationLog.objects.filter(action="mail.create").exists()


def test_create_refuses_an_unknown_merge_field(member_api):
    r = call(member_api, "post", "/api/mails", {**MAIL, "subject": "Hi {{ nickname }}"})
    assert r.status_code == 400
    assert r.json()["detail"] == "Unknown merge field in subject: nickname"
    assert r.json()["errors"] == {"subject": ["Unknown merge field in subject: nickname"]}
    assert not Mail.objects.exists()


def test_create_refuses_unknown_kinds_and_topics(member_api):
    r = call(member_api, "post", "/api/mails", {**MAIL, "kind": "step"})
    assert r.json()["detail"] == "Unknown kind step: use basic or spot."
    r = call(member_api, "post", "/api/mails", {**MAIL, "topic": "nope"})
    assert r.json()["detail"] == "No newsletter topic with key nope."
    assert not Mail.objects.exists()


def test_patch_refuses_targeting_changes_while_reserved(member_api):
    testing.make_customers(2)
    mail = testing.make_mail()
    Delivery.objects.create(mail=mail, status="reserved", scheduled_at=timezone.now())
    r = call(member_api, "patch", f"/api/mails/{mail.pk}", {"subject": "New {{ customer_id }}"})
    assert r.status_code == 200 and r.json()["locked"] is True
    r = call(member_api, "patch", f"/api/mails/{mail.pk}", {"duplicate_rule": "newest"})
    assert r.status_code == 400
    assert r.json()["detail"].startswith(
        "This mail has a reserved or running delivery, so its target conditions cannot be changed."
    )
    mail.refresh_from_db()
    assert mail.duplicate_rule == "ignore" and mail.subject == "New {{ customer_id }}"


def test_preview_counts(member_api):
    testing.make_customers(3)
    mail = testing.make_mail()
    r = member_api.get(f"/api/mails/{mail.pk}/counts")
    assert r.status_code == 200
    assert r.json()["matched"] == 3 and r.json()["after_duplicates"] == 3


def test_send_now_and_reserve(member_api):
    testing.make_relay(testing.free_port())
    testing.make_customers(2)
    mail = testing.make_mail()
    r = call(member_api, "post", f"/api/mails/{mail.pk}/send", {})
    assert r.status_code == 201 and r.json()["status"] == "reserved"
    at = (timezone.now() + timedelta(days=1)).isoformat()
    r = call(member_api, "post", f"/api/mails/{mail.pk}/send", {"at": at})
    assert r.status_code == 201
    d = Delivery.objects.get(pk=r.json()["id"])
    assert d.status == "reserved" and d.scheduled_at > timezone.now()
    r = call(member_api, "post", f"/api/deliveries/{d.pk}/cancel", None)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = call(member_api, "post", f"/api/deliveries/{d.pk}/cancel", None)
    assert r.status_code == 409
    assert r.json()["detail"] == (
        "This delivery is Cancelled; only a draft or a reservation can be cancelled."
    )


def test_send_refuses_a_naive_time(member_api):
    testing.make_customers(1)
    mail = testing.make_mail()
    r = call(member_api, "post", f"/api/mails/{mail.pk}/send", {"at": "2030-01-01T09:00:00"})
    assert r.status_code == 400
    assert r.json()["detail"] == "at needs a time zone offset, like 2025-04-01T09:00:00+09:00."
    assert not Delivery.objects.exists()


def test_list_deliveries_and_show_a_report(member_api, delivery):
    r = member_api.get("/api/deliveries")
    assert r.status_code == 200
    item = r.json()["items"][0]
    assert item["id"] == delivery.pk and item["selectable_as_source"] is True
    r = member_api.get(f"/api/deliveries/{delivery.pk}")
    report = r.json()
    assert report["sent"] == 2 and report["unknown"] == 1
    assert report["opens"] == {"unique": 1, "total": 1, "rate": 50.0}
    assert report["links"][0]["url"] == "https://shop.example/sale"
    assert report["series"]["unit"] == "hour"
    assert member_api.get("/api/deliveries?status=bogus").json()["detail"] == (
        "Unknown status: bogus"
    )


def test_recipients_of_a_count_page_by_page(member_api, delivery):
    r = member_api.get(f"/api/deliveries/{delivery.pk}/recipients/sent?limit=1")
    data = r.json()
    assert [i["customer_id"] for i in data["items"]] == [delivery.rows[0].customer_id]
    r = member_api.get(
        f"/api/deliveries/{delivery.pk}/recipients/sent?limit=1&after={data['next_after']}"
    )
    assert [i["customer_id"] for i in r.json()["items"]] == [delivery.rows[1].customer_id]
    assert r.json()["next_after"] is None
    r = member_api.get(f"/api/deliveries/{delivery.pk}/recipients/nonsense")
    assert r.status_code == 404 and r.json()["detail"] == "Unknown count: nonsense"


def test_export_a_count_and_the_events(member_api, delivery):
    r = member_api.get(f"/api/deliveries/{delivery.pk}/recipients/opened/export?fields=email")
    assert r.status_code == 200
    rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    assert rows == [
        ["Customer ID", "PC e-mail"],
        [str(delivery.rows[0].customer_id), delivery.rows[0].address],
    ]
    r = member_api.get(f"/api/deliveries/{delivery.pk}/events/export")
    rows = list(csv.reader(io.StringIO(b"".join(r.streaming_content).decode("utf-8-sig"))))
    assert [x[1] for x in rows[1:]] == ["sent", "open", "sent"]
    actions = set(OperationLog.objects.values_list("action", flat=True))
    assert {"delivery.export_recipients", "delivery.export_events"} <= actions
    r = member_api.get(f"/api/deliveries/{delivery.pk}/recipients/sent/export?fields=nope")
    assert r.status_code == 400 and r.json()["detail"] == "Unknown field: nope"


def test_resolve_unknown_rows(member_api, delivery):
    r = call(member_api, "post", f"/api/deliveries/{delivery.pk}/unknown", {"resend": False})
    assert r.status_code == 200 and r.json()["rows"] == 1
    row = Recipient.objects.get(pk=delivery.rows[2].pk)
    assert row.note == "Not sent again: an operator decided so."


def test_unknown_ids_are_404(member_api):
    assert member_api.get("/api/mails/999").json()["detail"] == "No mail with id 999."
    assert member_api.get("/api/deliveries/999").json()["detail"] == "No delivery with id 999."


def test_the_openapi_schema_describes_the_mailings_calls(member_api):
    r = member_api.get("/api/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/mails/{mail_id}/send" in paths
    assert "/api/deliveries/{delivery_id}/recipients/{count}/export" in paths
